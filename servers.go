package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"lb/admin"
	"lb/balancer"
	"lb/health"
	"lb/proxy"
	"lb/state"
)

// servers is what a generation knows of its backend servers: their health
// checks, and what it took over from the previous generation.
type servers struct {
	checker *health.Checker
	stop    context.CancelFunc // stops the checks
	done    sync.WaitGroup     // the checks have stopped
}

// setUpServers gives every server the state the previous generation left
// (over its admin socket, else in the state file), runs one round of checks
// on the servers nobody knew about, so that none known dead gets traffic,
// and turns passive checks on. It runs before this generation binds
// anything: the old one serves meanwhile.
func (g *generation) setUpServers(ctx context.Context, saved state.Doc, source string) {
	ix := saved.Index()
	byServer := map[*balancer.Server]*health.Target{}
	targets := make([]health.Target, len(g.proxy.Checks))
	for i, c := range g.proxy.Checks {
		targets[i] = health.Target{Backend: c.Backend.Name(), Pool: c.Backend.Pool, Server: c.Server,
			Settings: c.Settings, Start: health.State{Up: true}}
		byServer[c.Server] = &targets[i]
	}
	known := 0
	for _, b := range g.proxy.Backends {
		for _, s := range b.Pool.Servers {
			st, ok := ix.Lookup(b.Name(), s.Name)
			if !ok || st.Address != s.Addr {
				continue // new, or moved: its own checks decide
			}
			// What operators set holds: the admin state always, the
			// runtime weight unless the configured weight changed (then
			// the new configuration says what the weight is).
			if a, err := balancer.ParseAdmin(st.Admin); err == nil {
				s.SetAdmin(a)
			}
			if st.ConfigWeight == s.Weight {
				_ = s.SetWeight(st.Weight)
			}
			if t := byServer[s]; t != nil && st.Checked {
				t.Start, t.Known = health.State{Up: st.Up, Count: st.Count}, true
				known++
			}
		}
		b.Pool.Refresh()
	}
	g.srv = &servers{checker: health.New(targets, g.log)}
	if known < len(targets) {
		cctx, cancel := context.WithTimeout(ctx, g.cfg.Global.StartupTimeout.D())
		g.srv.checker.ColdStart(cctx)
		cancel()
	}
	g.log.Info().Str("source", source).Int("servers_taken_over", known).Int("servers_checked_at_start", len(targets)-known).
		Msg("server state")
	for _, b := range g.proxy.Backends {
		b.Observer = g.srv.checker
	}
}

// previousState fetches what the previous generation knew: over its admin
// socket when -sf or -st names one, else from the state file. It says where
// the state came from.
func (g *generation) previousState() (state.Doc, string) {
	if path := g.adminPath(); path != "" && !g.opts.stop.Empty() {
		d, err := fetchState(path)
		if err == nil {
			return d, "the old generation"
		}
		g.log.Warn().Err(err).Str("socket", path).Msg("cannot take the server state over from the old generation")
	}
	if path := g.cfg.Global.StateFile; path != "" {
		d, err := state.ReadFile(path)
		switch {
		case err == nil:
			return d, "state file " + path
		case errors.Is(err, state.ErrUntrusted):
			// Whoever could write it could put every server in maint.
			g.log.Warn().Err(err).Str("state_file", path).
				Msg("not using the state file: lb does not trust it (the error says why and what to fix); checking every server once, and not taking its generation number")
		default:
			g.log.Info().Err(err).Msg("no server state from the state file")
		}
	}
	return state.Doc{}, "none: checking every server once"
}

func fetchState(path string) (state.Doc, error) {
	c, err := admin.Dial(path, queryTimeout)
	if err != nil {
		return state.Doc{}, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "_getstate\n"); err != nil {
		return state.Doc{}, err
	}
	return state.Decode(c)
}

// startChecks runs the health checks until stopChecks.
func (s *servers) startChecks(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	s.done.Add(1)
	go s.runChecks(ctx)
}

// runChecks is the checks' goroutine.
func (s *servers) runChecks(ctx context.Context) {
	defer s.done.Done()
	s.checker.Run(ctx)
}

// stopChecks stops the health checks and waits for them.
func (s *servers) stopChecks() {
	if s.stop != nil {
		s.stop()
	}
	s.done.Wait()
}

// snapshot is the state of every server, for the next generation.
func (g *generation) snapshot() state.Doc {
	var out []state.Server
	for _, b := range g.proxy.Backends {
		for _, s := range b.Pool.Servers {
			sn, checked := g.srv.checker.State(s)
			out = append(out, state.Server{
				Backend: b.Name(), Server: s.Name, Address: s.Addr, ConfigWeight: s.Weight,
				Checked: checked, Up: sn.State.Up, Count: sn.State.Count,
				Admin: s.Admin().String(), Weight: s.RuntimeWeight(),
			})
		}
	}
	return state.New(g.number, out)
}

// saveState writes the state file, when there is one.
func (g *generation) saveState() {
	path := g.cfg.Global.StateFile
	if path == "" || g.srv == nil {
		return
	}
	if err := state.WriteFile(path, g.snapshot()); err != nil {
		g.log.Error().Err(err).Msg("cannot save the server state")
		return
	}
	g.log.Info().Str("state_file", path).Msg("saved the server state")
}

// findServer returns a server by backend and name, or nil.
func (g *generation) findServer(backend, server string) *balancer.Server {
	b := g.findBackend(backend)
	if b == nil {
		return nil
	}
	for _, s := range b.Pool.Servers {
		if s.Name == server {
			return s
		}
	}
	return nil
}

func (g *generation) findBackend(name string) *proxy.Backend {
	for _, b := range g.proxy.Backends {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// getState answers "_getstate": the server state, for lb -sf/-st.
func (g *generation) getState(w io.Writer, _ *admin.Request) error {
	return state.Encode(w, g.snapshot())
}

// showServersState answers "show servers state".
func (g *generation) showServersState(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server address health admin weight effective_weight checks reason")
	for _, b := range g.proxy.Backends {
		for _, s := range b.Pool.Servers {
			h, checks, reason := "up", "none", "-"
			if !s.Up() {
				h = "down"
			}
			if sn, ok := g.srv.checker.State(s); ok {
				checks = sn.Checks
				if checks == "" {
					checks = "-"
				}
				if sn.LastReason != "" {
					reason = strconv.Quote(sn.LastReason)
				}
			}
			fmt.Fprintf(w, "%s %s %s %s %s %d %d %s %s\n", b.Name(), s.Name, s.Addr, h, s.Admin(),
				s.RuntimeWeight(), s.EffectiveWeight(), checks, reason)
		}
	}
	return nil
}

// showStat answers "show stat": each server's counters.
func (g *generation) showStat(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server health admin active total errors bytes_in bytes_out")
	for _, b := range g.proxy.Backends {
		for _, s := range b.Pool.Servers {
			h := "up"
			if !s.Up() {
				h = "down"
			}
			st := s.Stats()
			fmt.Fprintf(w, "%s %s %s %s %d %d %d %d %d\n", b.Name(), s.Name, h, s.Admin(),
				st.Active, st.Total, st.Errors, st.BytesIn, st.BytesOut)
		}
	}
	return nil
}

// setServer answers "set server BACKEND/SERVER state ready|drain|maint" and
// "set server BACKEND/SERVER weight N".
func (g *generation) setServer(w io.Writer, r *admin.Request) error {
	const usage = "usage: set server BACKEND/SERVER state ready|drain|maint, or set server BACKEND/SERVER weight 0-256"
	if len(r.Args) != 3 {
		return fmt.Errorf("%s", usage)
	}
	bname, sname, ok := strings.Cut(r.Args[0], "/")
	if !ok {
		return fmt.Errorf("%q is not BACKEND/SERVER: %s", r.Args[0], usage)
	}
	b := g.findBackend(bname)
	if b == nil {
		return fmt.Errorf("no backend %q", bname)
	}
	s := g.findServer(bname, sname)
	if s == nil {
		names := make([]string, len(b.Pool.Servers))
		for i, x := range b.Pool.Servers {
			names[i] = x.Name
		}
		return fmt.Errorf("no server %q in backend %q (servers: %s)", sname, bname, strings.Join(names, ", "))
	}
	switch r.Args[1] {
	case "state":
		a, err := balancer.ParseAdmin(r.Args[2])
		if err != nil {
			return err
		}
		s.SetAdmin(a)
		g.log.Info().Str("backend", bname).Str("server", sname).Str("admin", a.String()).Msg("server admin state set")
		fmt.Fprintf(w, "server %s/%s is now %s\n", bname, sname, a)
	case "weight":
		n, err := strconv.Atoi(r.Args[2])
		if err != nil {
			return fmt.Errorf("weight %q is not a number", r.Args[2])
		}
		if err := s.SetWeight(n); err != nil {
			return err
		}
		b.Pool.Refresh()
		g.log.Info().Str("backend", bname).Str("server", sname).Int("weight", n).Msg("server weight set")
		fmt.Fprintf(w, "server %s/%s weight is now %d\n", bname, sname, n)
	default:
		return fmt.Errorf("%s", usage)
	}
	return nil
}
