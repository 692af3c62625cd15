package servers

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"lb/admin"
	"lb/balancer"
	"lb/proxy"
	"lb/stats"
)

// Register adds the commands that show and change the servers to an
// admin server.
func (s *Set) Register(a *admin.Server) {
	a.Handle("show servers state", ": each server's health, admin state, weights and check progress", admin.HandlerFunc(s.showServersState))
	a.Handle("show stat", ": each server's counters (this generation's): connections, errors, bytes, HTTP responses", admin.HandlerFunc(s.showStat))
	a.Handle("set server", "BACKEND/SERVER state ready|drain|maint, or weight 0-256", admin.HandlerFunc(s.setServer))
}

// findServer returns a server by backend and name, or nil.
func (s *Set) findServer(backend, server string) *balancer.Server {
	b := s.findBackend(backend)
	if b == nil {
		return nil
	}
	for _, srv := range b.Pool.Servers {
		if srv.Name == server {
			return srv
		}
	}
	return nil
}

func (s *Set) findBackend(name string) *proxy.Backend {
	for _, b := range s.proxy.Backends {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// showServersState answers "show servers state".
func (s *Set) showServersState(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server address health admin weight effective_weight checks reason")
	for _, b := range s.proxy.Backends {
		for _, srv := range b.Pool.Servers {
			h, checks, reason := "up", "none", "-"
			if !srv.Up() {
				h = "down"
			}
			if sn, ok := s.checker.State(srv); ok {
				checks = sn.Checks
				if checks == "" {
					checks = "-"
				}
				if sn.LastReason != "" {
					reason = strconv.Quote(sn.LastReason)
				}
			}
			fmt.Fprintf(w, "%s %s %s %s %s %d %d %s %s\n", b.Name(), srv.Name, srv.Addr, h, srv.Admin(),
				srv.RuntimeWeight(), srv.EffectiveWeight(), checks, reason)
		}
	}
	return nil
}

// showStat answers "show stat": each server's counters.
func (s *Set) showStat(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server health admin active max total errors bytes_in bytes_out 2xx 4xx 5xx response_errors")
	for _, b := range s.proxy.Backends {
		for _, srv := range b.Pool.Servers {
			h := "up"
			if !srv.Up() {
				h = "down"
			}
			st, c := srv.Stats(), &srv.Counts
			fmt.Fprintf(w, "%s %s %s %s %d %d %d %d %d %d %d %d %d %d\n", b.Name(), srv.Name, h, srv.Admin(),
				st.Active, srv.MaxActive(), st.Total, st.Errors, st.BytesIn, st.BytesOut,
				c.Responses[stats.Class2xx].Load(), c.Responses[stats.Class4xx].Load(), c.Responses[stats.Class5xx].Load(),
				c.ResponseErrors.Load())
		}
	}
	return nil
}

// setServer answers "set server BACKEND/SERVER state ready|drain|maint" and
// "set server BACKEND/SERVER weight N".
func (s *Set) setServer(w io.Writer, r *admin.Request) error {
	if len(r.Args) != 3 {
		return fmt.Errorf("%s", setUsage)
	}
	bname, sname, ok := strings.Cut(r.Args[0], "/")
	if !ok {
		return fmt.Errorf("%q is not BACKEND/SERVER: %s", r.Args[0], setUsage)
	}
	msg, err := s.Set(bname, sname, r.Args[1], r.Args[2])
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, msg)
	return err
}

const setUsage = "usage: set server BACKEND/SERVER state ready|drain|maint, or set server BACKEND/SERVER weight 0-256"

// Set changes a server as an operator asks, what being "state" (value
// ready, drain or maint) or "weight" (value 0 to 256), logs it, and says
// what it did: for the admin socket and the stats page.
func (s *Set) Set(bname, sname, what, value string) (string, error) {
	b := s.findBackend(bname)
	if b == nil {
		return "", fmt.Errorf("no backend %q", bname)
	}
	srv := s.findServer(bname, sname)
	if srv == nil {
		names := make([]string, len(b.Pool.Servers))
		for i, x := range b.Pool.Servers {
			names[i] = x.Name
		}
		return "", fmt.Errorf("no server %q in backend %q (servers: %s)", sname, bname, strings.Join(names, ", "))
	}
	switch what {
	case "state":
		a, err := balancer.ParseAdmin(value)
		if err != nil {
			return "", err
		}
		srv.SetAdmin(a)
		s.log.Info().Str("backend", bname).Str("server", sname).Str("admin", a.String()).Msg("server admin state set")
		return fmt.Sprintf("server %s/%s is now %s", bname, sname, a), nil
	case "weight":
		n, err := strconv.Atoi(value)
		if err != nil {
			return "", fmt.Errorf("weight %q is not a number", value)
		}
		if err := srv.SetWeight(n); err != nil {
			return "", err
		}
		b.Pool.Refresh()
		s.log.Info().Str("backend", bname).Str("server", sname).Int("weight", n).Msg("server weight set")
		return fmt.Sprintf("server %s/%s weight is now %d", bname, sname, n), nil
	}
	return "", fmt.Errorf("%s", setUsage)
}
