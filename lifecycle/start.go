package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"lb/admin"
	"lb/listener"
	"lb/reload"
)

// prepare creates the admin socket (under a temporary name) and the pid
// file's temporary file, so that a bad path fails the start before
// anything is bound.
func (g *Generation) prepare() (PidFile, error) {
	if path := g.adminSocketPath(); path != "" {
		s, err := admin.Listen(path)
		if err != nil {
			return nil, err
		}
		g.admin = s
	}
	path := g.pidPath()
	if path == "" {
		return nil, nil
	}
	p, err := g.host().PreparePidFile(path)
	if err != nil {
		if g.admin != nil {
			g.admin.Close()
		}
		return nil, err
	}
	return p, nil
}

// bindAll gets a listening socket for every bind address: taken over from
// the old generation with -x, or bound anew in the address's SO_REUSEPORT
// group, with new connections kept on the old socket until Steer.
func (g *Generation) bindAll(ctx context.Context) error {
	taken := g.takeOver()
	for i, f := range g.Proxy.Frontends {
		for _, addr := range f.Binds {
			l := &boundListener{f: f, bind: addr, done: make(chan struct{})}
			if ln, ok := taken[addr]; ok {
				l.ln = ln
				delete(taken, addr)
			} else {
				if err := g.refuseJoin(addr); err != nil {
					return fmt.Errorf("%s: frontend %q: %w", g.Cfg.Frontends[i].Pos.Key("bind"), f.Name, err)
				}
				j, err := listener.Join(ctx, addr, joinWait+g.Cfg.Global.HandshakeGrace.D())
				if err != nil {
					return fmt.Errorf("%s: frontend %q: %w", g.Cfg.Frontends[i].Pos.Key("bind"), f.Name, bindError(addr, err))
				}
				if j.Crowded {
					g.Log.Warn().Str("address", addr).Msg("older generations still listen on this address after waiting for them: steering may be imprecise")
				}
				l.ln, l.joined = j.Listener, j
			}
			g.lns = append(g.lns, l)
		}
	}
	if addr := g.Cfg.Stats.Bind; addr != "" {
		l := &boundListener{bind: addr, done: make(chan struct{})}
		if ln, ok := taken[addr]; ok {
			l.ln = ln
			delete(taken, addr)
		} else {
			if err := g.refuseJoin(addr); err != nil {
				return fmt.Errorf("%s: stats: %w", g.Cfg.StatsPos("bind"), err)
			}
			j, err := listener.Join(ctx, addr, joinWait+g.Cfg.Global.HandshakeGrace.D())
			if err != nil {
				return fmt.Errorf("%s: stats: %w", g.Cfg.StatsPos("bind"), bindError(addr, err))
			}
			l.ln, l.joined = j.Listener, j
		}
		g.lns = append(g.lns, l)
	}
	for addr, ln := range taken {
		g.Log.Info().Str("address", addr).Msg("closing a listener taken over from the old generation: no frontend binds it any more")
		ln.Close()
	}
	return nil
}

// abort undoes a start that failed after some listeners joined their
// groups: new connections go back to the old sockets, and whatever reached
// this generation's sockets meanwhile is served before it exits. accepting
// says whether the accept loops already run.
func (g *Generation) abort(ctx context.Context, cause error, accepting bool) error {
	var wg sync.WaitGroup
	for _, l := range g.lns {
		if l.joined != nil && l.joined.Index > 0 {
			_ = l.joined.SteerBack()
		}
		if !accepting {
			go g.acceptLoop(ctx, l)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = listener.Drain(ctx, l.ln, g.Cfg.Global.HandshakeGrace.D())
		}()
	}
	wg.Wait()
	for _, f := range g.Proxy.Frontends {
		f.Wait()
	}
	return g.fail(cause)
}

// fail ends a start that did not succeed: the old generations were not
// touched.
func (g *Generation) fail(cause error) error {
	g.Lock.Release()
	if g.admin != nil {
		g.admin.Close()
	}
	g.Log.Error().Err(cause).Msg("cannot start: the old generation, if any, keeps serving")
	return &ExitError{Code: ExitFailure, Msg: cause.Error()}
}

// acceptLoop serves one listener until it is closed.
func (g *Generation) acceptLoop(ctx context.Context, l *boundListener) {
	if l.f == nil {
		g.serveStats(l)
		return
	}
	defer close(l.done)
	if err := l.f.Serve(ctx, l.ln); err != nil {
		g.Log.Error().Err(err).Str("frontend", l.f.Name).Str("address", l.bind).Msg("listener failed")
	}
}

// replaceOld signals the old generations named by -sf and -st, after
// checking that each one really is lb.
func (g *Generation) replaceOld() {
	for _, s := range []struct {
		pids []int
		sig  syscall.Signal
		how  string
	}{{g.Opts.Stop.Soft, syscall.SIGUSR1, "soft stop"}, {g.Opts.Stop.Hard, syscall.SIGTERM, "hard stop"}} {
		for _, pid := range s.pids {
			if err := g.host().CheckLB(g.self, pid); err != nil {
				g.Log.Warn().Int("old_pid", pid).Str("reason", err.Error()).Msg("not signalling an old pid")
				continue
			}
			if err := g.host().Signal(pid, s.sig); err != nil {
				g.Log.Warn().Int("old_pid", pid).Err(err).Msg("cannot signal an old generation")
				continue
			}
			g.Log.Info().Int("old_pid", pid).Str("signal", s.how).Msg("told the old generation to stop")
		}
	}
}

// announceReady tells whoever started this generation that it serves: the
// -D launcher or a predecessor, through the readiness pipe.
func (g *Generation) announceReady() {
	daemon := g.Ready.Daemon()
	if daemon && !reload.StderrIsJournal() && g.LogFile == nil && !g.Syslog {
		// Said on the launcher's stderr, the last thing it shows.
		g.Log.Warn().Msg("this daemon's logs are discarded from now on: there is no log_file, and no syslog (global.syslog unset, and no /dev/log here); set global.log_file or global.syslog")
	}
	if err := g.Ready.Ready(); err != nil {
		g.Log.Warn().Err(err).Msg("cannot report readiness")
	}
	if daemon && !reload.StderrIsJournal() {
		// The launcher has exited: let its stderr go. Panics and the like
		// go to the log file when there is one, else to /dev/null.
		if err := reload.DetachStderr(g.LogFile); err != nil {
			g.Log.Warn().Err(err).Msg("cannot detach stderr")
		}
	}
}

// bindError explains a bind failure in an operator's words.
func bindError(addr string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("cannot bind %s: %w", addr, err)
	}
	switch errno {
	case syscall.EADDRINUSE:
		return fmt.Errorf("cannot bind %s: address already in use (another program listens there: see 'ss -ltnp')", addr)
	case syscall.EACCES:
		return fmt.Errorf("cannot bind %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)", addr)
	case syscall.EADDRNOTAVAIL:
		return fmt.Errorf("cannot bind %s: address not available (no interface of this machine has it)", addr)
	}
	return fmt.Errorf("cannot bind %s: %w", addr, errno)
}

// logStart writes the start-up line that names every listener and backend.
func (g *Generation) logStart() {
	fronts := zerolog.Arr()
	for _, f := range g.Proxy.Frontends {
		addrs := zerolog.Arr()
		for _, l := range g.lns {
			if l.f == f {
				addrs.Str(l.ln.Addr().String())
			}
		}
		fronts.Dict(zerolog.Dict().Str("name", f.Name).Array("bind", addrs).
			Str("backend", f.Backend.Name()).Int("maxconn", f.MaxConn))
	}
	backs := zerolog.Arr()
	for _, b := range g.Proxy.Backends {
		servers := zerolog.Arr()
		for _, s := range b.Pool.Servers {
			d := zerolog.Dict().Str("name", s.Name).Str("address", s.Addr).Int("weight", s.Weight)
			if s.MaxConn > 0 {
				d.Int64("maxconn", s.MaxConn)
			}
			if s.Backup {
				d.Bool("backup", true)
			}
			servers.Dict(d)
		}
		backs.Dict(zerolog.Dict().Str("name", b.Name()).Str("balance", b.Pool.Algorithm).Array("servers", servers))
	}
	g.Log.Info().Str("version", g.Opts.Version).Array("frontends", fronts).Array("backends", backs).Msg("lb started")
}
