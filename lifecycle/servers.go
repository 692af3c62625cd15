package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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
func (g *Generation) setUpServers(ctx context.Context, saved state.Doc, source string) {
	ix := saved.Index()
	byServer := map[*balancer.Server]*health.Target{}
	targets := make([]health.Target, len(g.Proxy.Checks))
	for i, c := range g.Proxy.Checks {
		targets[i] = health.Target{Backend: c.Backend.Name(), Pool: c.Backend.Pool, Server: c.Server,
			Settings: c.Settings, Start: health.State{Up: true}}
		byServer[c.Server] = &targets[i]
	}
	known := 0
	for _, b := range g.Proxy.Backends {
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
	g.srv = &servers{checker: health.New(targets, g.Log)}
	if known < len(targets) {
		cctx, cancel := context.WithTimeout(ctx, g.Cfg.Global.StartupTimeout.D())
		g.srv.checker.ColdStart(cctx)
		cancel()
	}
	g.Log.Info().Str("source", source).Int("servers_taken_over", known).Int("servers_checked_at_start", len(targets)-known).
		Msg("server state")
	for _, b := range g.Proxy.Backends {
		b.Observer = g.srv.checker
	}
}

// previousState fetches what the previous generation knew: over the
// serving generation's admin socket when this generation replaces one,
// else from the state file. It says where the state came from, and sets
// the generation number: one more than the newest number any source
// gives, so that numbers only increase.
func (g *Generation) previousState() (state.Doc, string) {
	live, liveOK := g.fetchLive()
	file, fileOK := g.readStateFile()
	g.number = max(live.Generation, file.Generation) + 1
	if n, err := strconv.Atoi(g.host().Getenv(envGeneration)); err == nil && n > g.number {
		g.number = n // the predecessor that started this one on SIGHUP
	}
	os.Unsetenv(envGeneration)
	switch {
	case liveOK:
		return live, "the old generation"
	case fileOK:
		return file, "state file " + g.Cfg.Global.StateFile
	}
	return state.Doc{}, "none: checking every server once"
}

// readStateFile reads state_file, if there is one and lb trusts it.
func (g *Generation) readStateFile() (state.Doc, bool) {
	path := g.Cfg.Global.StateFile
	if path == "" {
		return state.Doc{}, false
	}
	d, err := state.ReadFile(path)
	switch {
	case err == nil:
		return d, true
	case errors.Is(err, state.ErrUntrusted):
		// Whoever could write it could put every server in maint.
		g.Log.Warn().Err(err).Str("state_file", path).
			Msg("not using the state file: lb does not trust it (the error says why and what to fix); not taking its server state or generation number")
	default:
		g.Log.Info().Err(err).Msg("no server state from the state file")
	}
	return state.Doc{}, false
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
func (g *Generation) snapshot() state.Doc {
	var out []state.Server
	for _, b := range g.Proxy.Backends {
		for _, s := range b.Pool.Servers {
			sn, checked := g.srv.checker.State(s)
			out = append(out, state.Server{
				Backend: b.Name(), Server: s.Name, Address: s.Addr, ConfigWeight: s.Weight,
				Checked: checked, Up: sn.State.Up, Count: sn.State.Count,
				Admin: s.Admin().String(), Weight: s.RuntimeWeight(),
			})
		}
	}
	d := state.New(g.number, out)
	d.Pid, d.Live = g.self.Pid, g.liveParts()
	return d
}

// savePeriod is how often a serving generation looks for changes of its
// server state to write to state_file: changes within it are coalesced.
const savePeriod = time.Second

// saver writes state_file when the server state changes, and never over a
// newer generation's file.
type saver struct {
	mu      sync.Mutex
	servers []byte // the servers as last written
	written fileID // the file as last written
	stop    context.CancelFunc
	done    chan struct{}
}

// fileID tells whether a file was changed since it was last looked at.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = st.Dev, st.Ino
	}
	return id
}

// startSaving writes state_file now, with this generation's number, then
// again whenever the server state changes, until softStop or exit.
func (g *Generation) startSaving(ctx context.Context) {
	if g.Cfg.Global.StateFile == "" {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	g.saver = &saver{stop: cancel, done: make(chan struct{})}
	g.saveState(false)
	go g.saveLoop(ctx)
}

// saveLoop is the saver's goroutine.
func (g *Generation) saveLoop(ctx context.Context) {
	defer close(g.saver.done)
	tick := time.NewTicker(savePeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.saveState(false)
		}
	}
}

// stopSaving stops the saver and writes the state one last time.
func (g *Generation) stopSaving() {
	if g.saver == nil {
		return
	}
	g.saver.stop()
	<-g.saver.done
	g.saveState(true)
}

// saveState writes the state file if the server state changed since the
// last write, or the file did, unless a newer generation wrote it: the
// newest generation's state wins. last says this is the generation's last
// write, which is logged.
func (g *Generation) saveState(last bool) {
	path := g.Cfg.Global.StateFile
	if path == "" || g.srv == nil || g.saver == nil {
		return
	}
	sv := g.saver
	sv.mu.Lock()
	defer sv.mu.Unlock()
	doc := g.snapshot()
	servers, err := json.Marshal(doc.Servers)
	if err != nil {
		g.Log.Error().Err(err).Msg("cannot save the server state")
		return
	}
	id := statID(path)
	if bytes.Equal(servers, sv.servers) && id == sv.written {
		return
	}
	if id != sv.written && id != (fileID{}) {
		if d, err := state.ReadFile(path); err == nil && d.Generation > g.number {
			g.Log.Debug().Int("file_generation", d.Generation).Msg("not saving the server state: a newer generation wrote the state file")
			sv.written = id
			return
		}
	}
	if err := state.WriteFile(path, doc); err != nil {
		g.Log.Error().Err(err).Msg("cannot save the server state")
		return
	}
	sv.servers, sv.written = servers, statID(path)
	ev := g.Log.Debug()
	if last {
		ev = g.Log.Info()
	}
	ev.Str("state_file", path).Msg("saved the server state")
}

// findServer returns a server by backend and name, or nil.
func (g *Generation) findServer(backend, server string) *balancer.Server {
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

func (g *Generation) findBackend(name string) *proxy.Backend {
	for _, b := range g.Proxy.Backends {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// showServersState answers "show servers state".
func (g *Generation) showServersState(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server address health admin weight effective_weight checks reason")
	for _, b := range g.Proxy.Backends {
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
func (g *Generation) showStat(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# backend server health admin active total errors bytes_in bytes_out")
	for _, b := range g.Proxy.Backends {
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
func (g *Generation) setServer(w io.Writer, r *admin.Request) error {
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
		g.Log.Info().Str("backend", bname).Str("server", sname).Str("admin", a.String()).Msg("server admin state set")
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
		g.Log.Info().Str("backend", bname).Str("server", sname).Int("weight", n).Msg("server weight set")
		fmt.Fprintf(w, "server %s/%s weight is now %d\n", bname, sname, n)
	default:
		return fmt.Errorf("%s", usage)
	}
	return nil
}
