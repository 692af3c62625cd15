package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// Access is who may read the stats listener: clients in Allow (none: any),
// and, when User is set, only with HTTP basic authentication as User with
// the password whose bcrypt hash is PasswordHash.
type Access struct {
	Allow        []netip.Prefix
	User         string
	PasswordHash []byte
}

// Server is the stats listener's HTTP server. Make it with NewServer.
type Server struct {
	src    *Source
	access Access
	log    zerolog.Logger
	http   http.Server

	authMu sync.Mutex
	authOK map[[32]byte]time.Time // passwords that matched, by SHA-256: bcrypt is slow
}

// NewServer serves src's metrics to access.
func NewServer(src *Source, access Access, log zerolog.Logger) *Server {
	s := &Server{src: src, access: access, log: log, authOK: map[[32]byte]time.Time{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /stats.json", s.statsJSON)
	mux.HandleFunc("GET /{$}", s.page)
	s.http = http.Server{
		Handler:           s.guard(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          nil,
	}
	return s
}

// Serve answers on ln until it is closed or Stop is called.
func (s *Server) Serve(ln net.Listener) {
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Error().Err(err).Msg("stats listener failed")
	}
}

// Stop closes the idle connections, and the others once their request is
// answered, waiting up to ctx's deadline; the listener was closed.
func (s *Server) Stop(ctx context.Context) {
	s.http.SetKeepAlivesEnabled(false)
	_ = s.http.Shutdown(ctx)
}

// guard lets in the clients access allows.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.access.Allow) > 0 && !s.allowed(r.RemoteAddr) {
			http.Error(w, "forbidden: your address is not in stats.allow", http.StatusForbidden)
			return
		}
		if s.access.User != "" && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="lb stats", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) allowed(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.access.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// authCache is how long a password that matched is taken without bcrypt
// again: a scrape every few seconds would otherwise cost a bcrypt each.
const authCache = 5 * time.Minute

func (s *Server) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(s.access.User)) != 1 {
		return false
	}
	now, sum := time.Now(), sha256.Sum256([]byte(pass))
	s.authMu.Lock()
	at, hit := s.authOK[sum]
	s.authMu.Unlock()
	if hit && now.Sub(at) < authCache {
		return true
	}
	if bcrypt.CompareHashAndPassword(s.access.PasswordHash, []byte(pass)) != nil {
		return false
	}
	s.authMu.Lock()
	if len(s.authOK) > 16 {
		clear(s.authOK)
	}
	s.authOK[sum] = now
	s.authMu.Unlock()
	return true
}

// Doc is /stats.json: every series, grouped by what it describes.
type Doc struct {
	Generation int      `json:"generation"`
	Pid        int      `json:"pid"`
	Time       float64  `json:"time"` // unix seconds
	Process    Values   `json:"process"`
	Frontends  []Object `json:"frontends"`
	Backends   []Object `json:"backends"`
	Servers    []Object `json:"servers"`
}

// Object is a frontend, a backend or a server and its series, named
// without the "lb_frontend_" (and so on) prefix; a series by status class
// is an object of classes, a histogram one of "count", "sum" and the
// cumulative "buckets" by upper bound in seconds.
type Object struct {
	Frontend string `json:"frontend,omitempty"`
	Backend  string `json:"backend,omitempty"`
	Server   string `json:"server,omitempty"`
	Values   Values `json:"values"`
}

// Values are series by short name.
type Values map[string]any

// Snapshot returns what /stats.json shows.
func (src *Source) Snapshot() Doc {
	d := Doc{Generation: src.Process.Generation, Pid: src.Process.Pid, Time: float64(time.Now().UnixNano()) / 1e9, Process: Values{}}
	objects := map[string]*Object{}
	var order []string
	src.totals(func(s *sample) {
		var o *Object
		var prefix string
		switch {
		case strings.HasPrefix(s.name, "lb_frontend_"):
			prefix = "lb_frontend_"
		case strings.HasPrefix(s.name, "lb_backend_"):
			prefix = "lb_backend_"
		case strings.HasPrefix(s.name, "lb_server_"):
			prefix = "lb_server_"
		}
		var code string
		if prefix != "" {
			var f, b, sv string
			for i := 0; i+1 < len(s.labels); i += 2 {
				switch s.labels[i] {
				case "frontend":
					f = s.labels[i+1]
				case "backend":
					b = s.labels[i+1]
				case "server":
					sv = s.labels[i+1]
				case "code":
					code = s.labels[i+1]
				}
			}
			id := prefix + "\x00" + f + "\x00" + b + "\x00" + sv
			if o = objects[id]; o == nil {
				o = &Object{Frontend: f, Backend: b, Server: sv, Values: Values{}}
				objects[id] = o
				order = append(order, id)
			}
		}
		vals := d.Process
		name := s.name
		if o != nil {
			vals, name = o.Values, strings.TrimPrefix(s.name, prefix)
		}
		switch {
		case s.kind == histogram:
			buckets := make(map[string]uint64, len(les))
			for i, le := range les {
				buckets[le] = s.hist.Cumulative[i]
			}
			vals[name] = map[string]any{"count": s.hist.Count, "sum": s.hist.Sum, "buckets": buckets}
		case code != "":
			m, _ := vals[name].(map[string]float64)
			if m == nil {
				m = map[string]float64{}
				vals[name] = m
			}
			m[code] = s.value
		default:
			vals[name] = s.value
		}
	})
	for _, id := range order {
		o := objects[id]
		switch {
		case strings.HasPrefix(id, "lb_frontend_"):
			d.Frontends = append(d.Frontends, *o)
		case strings.HasPrefix(id, "lb_backend_"):
			d.Backends = append(d.Backends, *o)
		default:
			d.Servers = append(d.Servers, *o)
		}
	}
	return d
}

func (s *Server) statsJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(s.src.Snapshot())
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("lb stats: /metrics (Prometheus), /stats.json\n"))
}
