package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io"
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

	"lb/balancer"
)

// Access is who may read the stats listener: clients in Allow (none: any),
// and, when User is set, only with HTTP basic authentication as User with
// the password whose bcrypt hash is PasswordHash.
type Access struct {
	Allow        []netip.Prefix
	User         string
	PasswordHash []byte
	// Admin turns the stats page's actions on (drain, ready, maint,
	// weight); it takes a User.
	Admin bool
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
	mux.HandleFunc("GET /history.json", s.historyJSON)
	mux.HandleFunc("GET /{$}", s.index)
	mux.Handle("GET /page/", http.FileServerFS(pageFS))
	if access.Admin && access.User != "" && src.Act != nil {
		mux.HandleFunc("POST /action", s.action)
	}
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
	Time       float64  `json:"time"`  // unix seconds
	Start      float64  `json:"start"` // unix seconds
	Admin      bool     `json:"admin"` // the page's actions are on
	Process    Values   `json:"process"`
	Frontends  []Object `json:"frontends"`
	Backends   []Object `json:"backends"`
	Servers    []Object `json:"servers"`
	Tables     []Object `json:"tables,omitempty"`
}

// Object is a frontend, a backend or a server and its series, named
// without the "lb_frontend_" (and so on) prefix; a series by status class
// is an object of classes, a histogram one of "count", "sum" and the
// cumulative "buckets" by upper bound in seconds.
type Object struct {
	Frontend string `json:"frontend,omitempty"`
	Backend  string `json:"backend,omitempty"`
	Server   string `json:"server,omitempty"`
	Table    string `json:"table,omitempty"`
	Values   Values `json:"values"`
	// State is a server's state, as the stats page shows it.
	State *ServerState `json:"state,omitempty"`
}

// ServerState is a server's state beyond its numbers.
type ServerState struct {
	// Status is up, down, rising (down, passing checks), falling (up,
	// failing checks), drain or maint.
	Status  string `json:"status"`
	Address string `json:"address"`
	Backup  bool   `json:"backup,omitempty"`
	Checked bool   `json:"checked"`
	// Checks is the progress toward the next change, such as "1/2".
	Checks string `json:"checks,omitempty"`
	// Reason says why the server is down, or why its last check failed.
	Reason string `json:"reason,omitempty"`
	// LastCheck and Changed are unix seconds: the last active check, and
	// the last change of health in this process; 0 for none.
	LastCheck float64 `json:"last_check,omitempty"`
	Changed   float64 `json:"changed,omitempty"`
}

// Values are series by short name.
type Values map[string]any

// Snapshot returns what /stats.json shows.
func (src *Source) Snapshot() Doc {
	d := Doc{Generation: src.Process.Generation, Pid: src.Process.Pid, Time: unixSeconds(time.Now()), Start: unixSeconds(src.Start),
		Process: Values{}}
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
		case strings.HasPrefix(s.name, "lb_table_"):
			prefix = "lb_table_"
		}
		var code string
		if prefix != "" {
			var f, b, sv, tb string
			for i := 0; i+1 < len(s.labels); i += 2 {
				switch s.labels[i] {
				case "table":
					tb = s.labels[i+1]
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
			id := objectID(prefix, f, b, sv, tb)
			if o = objects[id]; o == nil {
				o = &Object{Frontend: f, Backend: b, Server: sv, Table: tb, Values: Values{}}
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
	src.addStates(objects)
	for _, id := range order {
		o := objects[id]
		switch {
		case strings.HasPrefix(id, "lb_frontend_"):
			d.Frontends = append(d.Frontends, *o)
		case strings.HasPrefix(id, "lb_backend_"):
			d.Backends = append(d.Backends, *o)
		case strings.HasPrefix(id, "lb_table_"):
			d.Tables = append(d.Tables, *o)
		default:
			d.Servers = append(d.Servers, *o)
		}
	}
	return d
}

func (s *Server) statsJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	d := s.src.Snapshot()
	d.Admin = s.access.Admin && s.access.User != "" && s.src.Act != nil
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(d)
}

// unixSeconds is t in unix seconds; 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// addStates sets the state of the server objects.
// objectID names an object of Snapshot: its series' prefix, and its
// frontend, backend, server and table.
func objectID(prefix, frontend, backend, server, table string) string {
	return prefix + "\x00" + frontend + "\x00" + backend + "\x00" + server + "\x00" + table
}

func (src *Source) addStates(objects map[string]*Object) {
	if src.Proxy == nil {
		return
	}
	for _, b := range src.Proxy.Backends {
		for _, srv := range b.Pool.Servers {
			o := objects[objectID("lb_server_", "", b.Name(), srv.Name, "")]
			if o == nil {
				continue
			}
			st := &ServerState{Address: srv.Addr, Backup: srv.Backup, Status: "up"}
			if !srv.Up() {
				st.Status = "down"
			}
			if src.Health != nil {
				if h, ok := src.Health(srv); ok {
					st.Checked, st.Checks, st.Reason = true, h.Checks, h.LastReason
					st.LastCheck, st.Changed = unixSeconds(h.LastCheck), unixSeconds(h.Changed)
					if h.Checks != "" {
						st.Status = map[bool]string{true: "falling", false: "rising"}[h.State.Up]
					}
				}
			}
			switch srv.Admin() {
			case balancer.AdminDrain:
				st.Status = "drain"
			case balancer.AdminMaint:
				st.Status = "maint"
			}
			o.State = st
		}
	}
}

func (s *Server) historyJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	doc := struct {
		Step     float64            `json:"step_seconds"`
		Backends map[string][]Point `json:"backends"`
	}{Step: DefaultHistoryStep.Seconds(), Backends: map[string][]Point{}}
	if h := s.src.History; h != nil {
		doc.Backends = h.Points()
		if h.Step > 0 {
			doc.Step = h.Step.Seconds()
		}
	}
	_ = json.NewEncoder(w).Encode(doc)
}

//go:embed page
var pageFS embed.FS

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	page, err := pageFS.ReadFile("page/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
	w.Header().Set("X-Frame-Options", "DENY")
	_, _ = w.Write(page)
}

// actionRequest is a stats page action: what is "state" (value ready,
// drain or maint) or "weight" (value 0 to 256).
type actionRequest struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	What    string `json:"what"`
	Value   string `json:"value"`
}

// action changes a server from the stats page. It takes a JSON body and
// the X-LB-Action header, which a page of another site cannot send
// without the browser asking this one first (CORS), and lb never agrees.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-LB-Action") != "1" {
		http.Error(w, "an action needs the header X-LB-Action: 1", http.StatusForbidden)
		return
	}
	var a actionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&a); err != nil {
		http.Error(w, "bad action: "+err.Error(), http.StatusBadRequest)
		return
	}
	msg, err := s.src.Act(a.Backend, a.Server, a.What, a.Value)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	user, _, _ := r.BasicAuth()
	s.log.Info().Str("user", user).Str("client", r.RemoteAddr).Str("backend", a.Backend).Str("server", a.Server).
		Str("what", a.What).Str("value", a.Value).Msg("stats page action")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, msg+"\n")
}
