package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"lb/admin"
	"lb/config"
	"lb/listener"
	"lb/metrics"
	"lb/proxy"
	"lb/reload"
	"lb/servers"
	"lb/stats"
	"lb/tlsconf"
)

// joinWait bounds how long a new generation waits for older generations to
// close their listening sockets before it joins their SO_REUSEPORT groups.
const joinWait = 10 * time.Second

// envGeneration is how a generation started on SIGHUP learns its number.
const envGeneration = "LB_GENERATION"

// launchTimeout bounds how long -D, and a reload by signal, wait for the new
// generation to become ready.
const launchTimeout = 5 * time.Minute

// queryTimeout bounds one exchange with an old generation's admin socket.
const queryTimeout = 2 * time.Second

// Generation states, as "show info" reports them.
const (
	stateStarting int32 = iota
	stateServing
	stateDraining
)

var stateNames = [...]string{"starting", "serving", "draining"}

// Generation is this lb process: it binds or takes over the listeners,
// replaces the old generations, serves, and drains when a newer one
// replaces it. Set the exported fields, then call Run once.
type Generation struct {
	Opts    Options
	Cfg     *config.Config
	Proxy   *proxy.Proxy
	Log     zerolog.Logger
	Ready   *reload.Readiness // nil when lb was started directly
	LogFile *os.File          // global.log_file, or nil when logs go to stderr
	Syslog  bool              // the logs go to syslog too
	FDs     FDs               // the file descriptor limit and what the configuration needs
	// Host does what the generation does to other processes and the
	// system; nil: the real one, OS.
	Host Host
	// Signals are the signals the generation acts on; nil: this process's
	// SIGINT, SIGTERM, SIGUSR1, SIGHUP and SIGUSR2.
	Signals <-chan os.Signal
	// OnNumber, when set, hears the generation's number as soon as it is
	// known, for the logs; unset, the generation's own log lines say it.
	OnNumber func(int)
	// Lock is the reload lock, when the caller took it (LockReload) before
	// it read the configuration; nil: Run takes it. It is held until the
	// old generations are signalled.
	Lock *reload.Lock

	self   reload.Self
	number int
	start  time.Time
	state  atomic.Int32
	lns    []*boundListener
	admin  *admin.Socket
	// oldAdmin is the admin socket where the serving generation handed its
	// state over, and hands its listeners over; "" when none did.
	oldAdmin    string
	saver       *saver           // writes state_file as the state changes
	tookOver    bool             // the listening sockets were taken over from oldAdmin
	tickets     *tlsconf.Tickets // the TLS frontends' session ticket keys; nil without TLS
	releaseOnce sync.Once        // closeGiven
	given       atomic.Bool      // the listeners were handed to a newer generation
	srv         *servers.Set     // health checks and server state
	fromLive    bool             // the state came from a serving generation
	ledger      stats.Ledger     // what the other generations counted
	stats       *metrics.Source  // the counters as the stats listener and admin socket show them
	history     metrics.History  // the backends' recent rates, for the stats page
	statsSrv    *metrics.Server  // the stats listener's server; nil without [stats]
	exiting     atomic.Bool      // exit began: this generation counts no more
	released    atomic.Bool      // a newer generation took the counters over (_release)
	stopReports context.CancelFunc
}

// boundListener is one listening address of a frontend.
type boundListener struct {
	f      *proxy.Frontend
	bind   string
	ln     *net.TCPListener
	joined *listener.Joined // nil when taken over from the old generation
	done   chan struct{}    // closed when its accept loop has ended
}

// run is the life of a generation, in the order that keeps a failed reload
// harmless: everything that can fail happens before the old generations are
// signalled, which is the point of no return.
func (g *Generation) Run(ctx context.Context) error {
	g.self, g.start = reload.LookupSelf(), g.host().Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := g.Signals
	if sigs == nil {
		c := make(chan os.Signal, 8)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGUSR2)
		defer signal.Stop(c)
		sigs = c
	}

	pidFile, err := g.prepare()
	if err != nil {
		return g.fail(err)
	}
	// From here until the old generations are signalled, this launch holds
	// the reload lock: launches that overlap take turns.
	defer g.Lock.Release()
	if err := g.lockReload(ctx); err != nil {
		if pidFile != nil {
			pidFile.Abort()
		}
		return g.fail(err)
	}
	saved, source := g.previousState()
	if g.OnNumber != nil {
		g.OnNumber(g.number)
	} else {
		g.Log = g.Log.With().Int("generation", g.number).Logger()
	}
	if on, err := listener.MigrateReq(); err == nil {
		g.Log.Info().Bool("tcp_migrate_req", on).Msg("starting")
	} else {
		g.Log.Info().Str("tcp_migrate_req", "unknown: "+err.Error()).Msg("starting")
	}
	g.logDescriptors()
	g.srv = servers.New(g.Proxy, g.Log)
	g.srv.SetUp(ctx, saved, source, g.Cfg.Global.StartupTimeout.D())
	g.setUpCounters(saved.Counters, g.fromLive, saved.Live)
	g.setUpTables(saved)
	if err := g.setUpTickets(saved); err != nil {
		if pidFile != nil {
			pidFile.Abort()
		}
		return g.fail(err)
	}
	if err := g.bindAll(ctx); err != nil {
		if pidFile != nil {
			pidFile.Abort()
		}
		return g.abort(ctx, err, false)
	}
	for _, l := range g.lns {
		if l.f != nil {
			go g.acceptLoop(ctx, l)
		}
	}
	for _, l := range g.lns {
		if l.joined != nil {
			if err := l.joined.SteerSelf(); err != nil {
				g.Log.Warn().Err(err).Str("address", l.bind).Msg("cannot steer new connections to this generation: a reload may reset a few")
			}
		}
	}
	if pidFile != nil {
		if err := pidFile.Commit(g.self.Pid); err != nil {
			return g.abort(ctx, err, true)
		}
	}
	// Before this generation's admin socket replaces the old one's path.
	g.releaseOld()
	g.startStats(ctx)
	// Last before the signal: from here on the admin path leads here, so
	// nothing that can fail may come after it.
	if g.admin != nil {
		if err := g.admin.Publish(); err != nil {
			g.Log.Error().Err(err).Msg("admin socket")
		}
		go g.serveAdmin(ctx)
	}
	// systemd learns the new main pid before the old one exits, or it
	// would take the old one's exit for the service's.
	if err := g.host().Notify(fmt.Sprintf("READY=1\nMAINPID=%d", g.self.Pid)); err != nil {
		g.Log.Warn().Err(err).Msg("cannot notify systemd")
	}
	g.replaceOld()
	// Serving before the next launch may take the lock: it will ask this
	// generation for its sockets.
	g.state.Store(stateServing)
	g.Lock.Release()
	g.srv.StartChecks(ctx)
	go g.watchLedger(ctx)
	go g.sweepTables(ctx)
	g.startSaving(ctx)
	if g.tickets != nil {
		go g.rotateTickets(ctx)
	}
	g.logStart()
	g.announceReady()
	return g.loop(ctx, sigs)
}

// pidPath is the pid file's path: -p, else global.pid_file; "" for none.
func (g *Generation) pidPath() string {
	if g.Opts.PidFile != "" {
		return g.Opts.PidFile
	}
	return g.Cfg.Global.PidFile
}

// loop handles signals until the generation exits.
func (g *Generation) loop(ctx context.Context, sigs <-chan os.Signal) error {
	var drained <-chan struct{}
	var hardStop <-chan time.Time
	var next *succession // the successor being started, if any
	superseded := g.watchPidFile(ctx)
	stop := func() {
		drained = g.softStop(ctx)
		if d := g.Cfg.Global.HardStopAfter.D(); d > 0 {
			hardStop = time.After(d)
		}
	}
	for {
		select {
		case pid := <-superseded:
			superseded = nil
			if drained == nil {
				g.Log.Warn().Int("new_pid", pid).Str("pid_file", g.pidPath()).
					Msg("superseded: the pid file names another serving lb, which did not signal this generation; soft-stopping")
				stop()
			}
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM:
				g.Log.Info().Str("signal", sig.String()).Int64("connections", g.connections()).Msg("stopping now")
				return g.exit(next)
			case syscall.SIGUSR1:
				if drained != nil {
					continue
				}
				stop()
			case syscall.SIGHUP, syscall.SIGUSR2:
				next = g.reloadSignal(ctx, sig, next)
			}
		case <-next.ended():
			g.endSuccession(next)
			next = nil
		case <-drained:
			g.Log.Info().Msg("drained: every connection has ended")
			return g.exit(next)
		case <-ctx.Done():
			g.Log.Info().Int64("connections", g.connections()).Msg("stopping now: the caller is done")
			return g.exit(next)
		case <-hardStop:
			g.Log.Warn().Int64("connections", g.connections()).Dur("hard_stop_after", g.Cfg.Global.HardStopAfter.D()).
				Msg("hard stop: closing the connections that are left")
			return g.exit(next)
		}
	}
}

// softStop stops taking connections without losing any the kernel already
// queued, and returns a channel closed once every connection has ended.
func (g *Generation) softStop(ctx context.Context) <-chan struct{} {
	g.state.Store(stateDraining)
	// A draining generation no longer checks: the new one does, from the
	// state it took over.
	g.srv.StopChecks()
	g.stopSaving()
	grace := g.Cfg.Global.HandshakeGrace.D()
	if on, _ := listener.MigrateReq(); on {
		grace = 0 // the kernel moves queued and half-open connections on close
	}
	// Listeners handed to a newer generation that released this one
	// (_release) are closed already. Those it took without releasing
	// drain the same way as others: the socket stays open in the newer
	// process, so closing loses nothing, and draining also covers a newer
	// generation that took the sockets and then failed to start.
	g.Log.Info().Int64("connections", g.connections()).Bool("listeners_handed_over", g.given.Load()).
		Dur("handshake_grace", grace).Msg("soft stop: draining")
	for _, l := range g.lns {
		go func() { _ = listener.Drain(ctx, l.ln, grace) }()
	}
	// HTTP frontends finish the requests in flight, then close their
	// connections; idle ones over close_spread_time.
	for _, f := range g.Proxy.Frontends {
		f.SoftStop(g.Cfg.Global.CloseSpreadTime.D())
	}
	rctx, cancel := context.WithCancel(ctx)
	g.stopReports = cancel
	go g.reportWhileDraining(rctx)
	done := make(chan struct{})
	go g.waitDrained(done)
	return done
}

// waitDrained closes done once the listeners are closed and every
// connection has ended.
func (g *Generation) waitDrained(done chan<- struct{}) {
	for _, l := range g.lns {
		<-l.done
	}
	g.Log.Info().Int64("connections", g.connections()).Msg("listeners closed")
	for _, f := range g.Proxy.Frontends {
		f.Wait()
	}
	close(done)
}

// exit releases what the generation owns in the file system. A successor
// this generation started (next, when not nil) replaces it long before its
// launch times out, so waiting for the launch only delays the exit until
// its outcome is logged.
func (g *Generation) exit(next *succession) error {
	if next != nil {
		<-next.done
		g.endSuccession(next)
	}
	g.exiting.Store(true)
	if g.stopReports != nil {
		g.stopReports()
	}
	if g.state.Load() == stateServing {
		g.srv.StopChecks()
		g.stopSaving()
	} else {
		g.finalReport()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	for _, l := range g.lns {
		if l.f == nil {
			_ = l.ln.Close() // the stats listener: its server stops (serveStats)
		}
	}
	if path := g.pidPath(); path != "" && g.state.Load() == stateServing {
		reload.RemovePidFile(path, g.self.Pid)
	}
	g.Log.Info().Dur("uptime", time.Since(g.start)).Msg("exiting")
	return nil
}

// connections returns the number of connections being served.
func (g *Generation) connections() int64 {
	var n int64
	for _, f := range g.Proxy.Frontends {
		n += f.Active()
	}
	return n
}

// serveAdmin answers the admin socket until ctx is done.
func (g *Generation) serveAdmin(ctx context.Context) {
	var s admin.Server
	s.Handle("show info", ": pid, generation, version, uptime, state, connections, reloads, draining generations, descriptors", admin.HandlerFunc(g.showInfo))
	s.Handle("show sess", ": the connections in flight: frontend, client, server, age in seconds, bytes in and out", admin.HandlerFunc(g.showSess))
	s.Handle("clear counters", "[all]: forget the maximum connections of every server; with all, set every counter to zero, the older generations' included",
		admin.HandlerFunc(g.clearCounters))
	g.srv.Register(&s)
	s.Handle("show table", "[NAME [KEY]]: the stick tables, or the entries of one (or of one key): expiry, server, figures", admin.HandlerFunc(g.showTable))
	s.Handle("clear table", "NAME [KEY]: remove every entry of a stick table, or the one of KEY", admin.HandlerFunc(g.clearTable))
	s.Handle("_getsocks", "", admin.HandlerFunc(g.giveListeners))
	s.Handle("_getstate", "", admin.HandlerFunc(g.getState))
	s.Handle("_gettables", "", admin.HandlerFunc(g.getTables))
	s.Handle("_release", "", admin.HandlerFunc(g.release))
	s.Handle("_report", "", admin.HandlerFunc(g.takeReport))
	s.Serve(ctx, g.admin.Listener)
}

// showInfo answers "show info".
func (g *Generation) showInfo(w io.Writer, _ *admin.Request) error {
	fmt.Fprintf(w, "pid: %d\ngeneration: %d\nversion: %s\nuptime: %s\nstate: %s\nconnections: %d\nlisteners: %d\n",
		g.self.Pid, g.number, g.Opts.Version, time.Since(g.start).Round(time.Millisecond), stateNames[g.state.Load()],
		g.connections(), len(g.lns))
	var draining, conns int64
	for _, r := range g.ledger.Live() {
		if r.Pid != g.self.Pid {
			draining++
			conns += r.Connections
		}
	}
	reloads := g.ledger.Sum()[stats.Key("lb_reloads_total")]
	if g.stats != nil && g.stats.Process.Reloaded {
		reloads++
	}
	fmt.Fprintf(w, "reloads: %.0f\ndraining_generations: %d\ndraining_connections: %d\nfd_limit: %d\nfds_open: %d\n",
		reloads, draining, conns, g.FDs.limit.Int(), openFDs())
	return nil
}

// showSess answers "show sess": one line per connection in flight.
func (g *Generation) showSess(w io.Writer, _ *admin.Request) error {
	fmt.Fprintln(w, "# frontend client server age bytes_in bytes_out")
	now := time.Now()
	for _, f := range g.Proxy.Frontends {
		f.Sessions(func(s proxy.Session) {
			srv := s.Server
			if srv == "" {
				srv = "-"
			}
			fmt.Fprintf(w, "%s %s %s %.1f %d %d\n", s.Frontend, s.Client, srv, now.Sub(s.Since).Seconds(), s.In, s.Out)
		})
	}
	return nil
}

// clearCounters answers "clear counters" (the maxima) and "clear counters
// all" (every counter, in every generation's count: Prometheus sees a
// counter reset).
func (g *Generation) clearCounters(w io.Writer, r *admin.Request) error {
	all := len(r.Args) == 1 && r.Args[0] == "all"
	if len(r.Args) > 0 && !all {
		return errors.New("usage: clear counters [all]")
	}
	for _, b := range g.Proxy.Backends {
		for _, srv := range b.Pool.Servers {
			if all {
				srv.ResetCounters()
			} else {
				srv.ResetMax()
			}
		}
		if all {
			b.Counts.Reset()
		}
	}
	if !all {
		_, err := io.WriteString(w, "cleared the maximum connections of every server\n")
		return err
	}
	for _, f := range g.Proxy.Frontends {
		f.Counts.Reset()
	}
	g.ledger.Clear()
	g.Log.Warn().Msg("clear counters all: every counter is zero again")
	_, err := io.WriteString(w, "cleared every counter\n")
	return err
}

// supersedeCheck is how often a serving generation reads its pid file to
// learn whether a newer generation replaced it without signalling it.
const supersedeCheck = time.Second

// watchPidFile returns a channel that yields the pid of another running lb
// once the pid file names it instead of this generation: a newer
// generation took over (the pid file is only ever written by a generation
// that serves), and this one should stop. Nil, which never yields, without
// a pid file.
func (g *Generation) watchPidFile(ctx context.Context) <-chan int {
	path := g.pidPath()
	if path == "" {
		return nil
	}
	c := make(chan int, 1)
	go g.watchPid(ctx, path, c)
	return c
}

// watchPid is watchPidFile's goroutine.
func (g *Generation) watchPid(ctx context.Context, path string, c chan<- int) {
	every(ctx, supersedeCheck, func(time.Time) bool {
		if g.state.Load() != stateServing {
			return false
		}
		if pid := reload.ReadPid(path); pid != 0 && pid != g.self.Pid && g.host().CheckLB(g.self, pid) == nil {
			c <- pid
			return false
		}
		return true
	})
}

// every calls f each period until ctx is done or f returns false: the
// loop of the generation's periodic goroutines.
func every(ctx context.Context, period time.Duration, f func(now time.Time) bool) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !f(now) {
				return
			}
		}
	}
}

// openFDs counts this process's open file descriptors; -1 when it cannot.
func openFDs() int {
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(d)
}
