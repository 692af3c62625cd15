// Package servers is what a generation knows of its backend servers: the
// state it took over from the previous generation, their health checks,
// the snapshot it hands to the next one, and the admin commands that show
// and change them ("show servers state", "show stat", "set server"), which
// it registers itself.
package servers

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
	"lb/health"
	"lb/proxy"
	"lb/state"
)

// Set is the servers of one generation's backends. Make it with New; call
// SetUp before the generation serves.
type Set struct {
	proxy   *proxy.Proxy
	log     zerolog.Logger
	checker *health.Checker
	stop    context.CancelFunc // stops the checks
	done    sync.WaitGroup     // the checks have stopped
}

// New returns the servers of p's backends.
func New(p *proxy.Proxy, log zerolog.Logger) *Set {
	return &Set{proxy: p, log: log}
}

// SetUp gives every server the state the previous generation left
// (over its admin socket, else in the state file), runs one round of checks
// on the servers nobody knew about, so that none known dead gets traffic,
// and turns passive checks on. It runs before this generation binds
// anything: the old one serves meanwhile.
func (s *Set) SetUp(ctx context.Context, saved state.Doc, source string, startupTimeout time.Duration) {
	ix := saved.Index()
	byServer := map[*balancer.Server]*health.Target{}
	targets := make([]health.Target, len(s.proxy.Checks))
	for i, c := range s.proxy.Checks {
		targets[i] = health.Target{Backend: c.Backend.Name(), Pool: c.Backend.Pool, Server: c.Server,
			Settings: c.Settings, Start: health.State{Up: true}}
		byServer[c.Server] = &targets[i]
	}
	known := 0
	for _, b := range s.proxy.Backends {
		for _, srv := range b.Pool.Servers {
			st, ok := ix.Lookup(b.Name(), srv.Name)
			if !ok || st.Address != srv.Addr {
				continue // new, or moved: its own checks decide
			}
			// What operators set holds: the admin state always, the
			// runtime weight unless the configured weight changed (then
			// the new configuration says what the weight is).
			if a, err := balancer.ParseAdmin(st.Admin); err == nil {
				srv.SetAdmin(a)
			}
			if st.ConfigWeight == srv.Weight {
				_ = srv.SetWeight(st.Weight)
			}
			if t := byServer[srv]; t != nil && st.Checked {
				t.Start, t.Known, t.Changed = health.State{Up: st.Up, Count: st.Count}, true, st.Changed
				known++
			}
		}
		b.Pool.Refresh()
	}
	s.checker = health.New(targets, s.log)
	if known < len(targets) {
		cctx, cancel := context.WithTimeout(ctx, startupTimeout)
		s.checker.ColdStart(cctx)
		cancel()
	}
	s.log.Info().Str("source", source).Int("servers_taken_over", known).Int("servers_checked_at_start", len(targets)-known).
		Msg("server state")
	for _, b := range s.proxy.Backends {
		b.Observer = s.checker
	}
}

// StartChecks runs the health checks until StopChecks.
func (s *Set) StartChecks(ctx context.Context) {
	ctx, s.stop = context.WithCancel(ctx)
	s.done.Add(1)
	go s.runChecks(ctx)
}

// runChecks is the checks' goroutine.
func (s *Set) runChecks(ctx context.Context) {
	defer s.done.Done()
	s.checker.Run(ctx)
}

// StopChecks stops the health checks and waits for them.
func (s *Set) StopChecks() {
	if s.stop != nil {
		s.stop()
	}
	s.done.Wait()
}

// Snapshot is the state of every server, for the next generation.
func (s *Set) Snapshot() []state.Server {
	var out []state.Server
	for _, b := range s.proxy.Backends {
		for _, srv := range b.Pool.Servers {
			sn, checked := s.checker.State(srv)
			out = append(out, state.Server{
				Backend: b.Name(), Server: srv.Name, Address: srv.Addr, ConfigWeight: srv.Weight,
				Checked: checked, Up: sn.State.Up, Count: sn.State.Count, Changed: sn.Changed,
				Admin: srv.Admin().String(), Weight: srv.RuntimeWeight(),
			})
		}
	}
	return out
}

// Health returns the health check state of srv, and false when it has no
// check (or the checks are not set up yet).
func (s *Set) Health(srv *balancer.Server) (health.Snapshot, bool) {
	if s == nil || s.checker == nil {
		return health.Snapshot{}, false
	}
	return s.checker.State(srv)
}
