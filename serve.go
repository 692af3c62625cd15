package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"lb/admin"
	"lb/config"
	"lb/listener"
	"lb/proxy"
	"lb/reload"
	"lb/tlsconf"
)

// joinWait bounds how long a new generation waits for older generations to
// close their listening sockets before it joins their SO_REUSEPORT groups.
const joinWait = 10 * time.Second

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

// generation is this lb process: it binds or takes over the listeners,
// replaces the old generations, serves, and drains when a newer one
// replaces it.
type generation struct {
	opts    options
	cfg     *config.Config
	proxy   *proxy.Proxy
	log     zerolog.Logger
	ready   *reload.Readiness
	logFile *os.File // global.log_file, or nil when logs go to stderr
	fds     descriptors

	self   reload.Self
	number int
	start  time.Time
	state  atomic.Int32
	lns    []*boundListener
	admin  *admin.Socket
	lock   *reload.Lock // the reload lock, held until the old generations are signalled
	// oldAdmin is the admin socket where the serving generation handed its
	// state over, and hands its listeners over; "" when none did.
	oldAdmin    string
	saver       *saver           // writes state_file as the state changes
	tookOver    bool             // the listening sockets were taken over from oldAdmin
	tickets     *tlsconf.Tickets // the TLS frontends' session ticket keys; nil without TLS
	releaseOnce sync.Once        // closeGiven
	given       atomic.Bool      // the listeners were handed to a newer generation
	srv         *servers         // health checks and server state
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
func (g *generation) run(ctx context.Context) error {
	g.self, g.start = reload.LookupSelf(), time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	pidFile, err := g.prepare()
	if err != nil {
		return g.fail(err)
	}
	// From here until the old generations are signalled, this launch holds
	// the reload lock: launches that overlap take turns.
	defer g.lock.Release()
	if err := g.lockReload(ctx); err != nil {
		if pidFile != nil {
			pidFile.Abort()
		}
		return g.fail(err)
	}
	saved, source := g.previousState()
	g.log = g.log.With().Int("generation", g.number).Logger()
	if on, err := listener.MigrateReq(); err == nil {
		g.log.Info().Bool("tcp_migrate_req", on).Msg("starting")
	} else {
		g.log.Info().Str("tcp_migrate_req", "unknown: "+err.Error()).Msg("starting")
	}
	g.logDescriptors()
	g.setUpServers(ctx, saved, source)
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
		go g.acceptLoop(ctx, l)
	}
	for _, l := range g.lns {
		if l.joined != nil {
			if err := listener.Steer(l.ln, l.joined.Index); err != nil {
				g.log.Warn().Err(err).Str("address", l.bind).Msg("cannot steer new connections to this generation: a reload may reset a few")
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
	// Last before the signal: from here on the admin path leads here, so
	// nothing that can fail may come after it.
	if g.admin != nil {
		if err := g.admin.Publish(); err != nil {
			g.log.Error().Err(err).Msg("admin socket")
		}
		go g.serveAdmin(ctx)
	}
	// systemd learns the new main pid before the old one exits, or it
	// would take the old one's exit for the service's.
	if err := reload.Notify(fmt.Sprintf("READY=1\nMAINPID=%d", g.self.Pid)); err != nil {
		g.log.Warn().Err(err).Msg("cannot notify systemd")
	}
	g.replaceOld()
	g.lock.Release()
	g.state.Store(stateServing)
	g.srv.startChecks(ctx)
	g.startSaving(ctx)
	if g.tickets != nil {
		go g.rotateTickets(ctx)
	}
	g.logStart()
	g.announceReady()
	return g.loop(ctx, sigs)
}

// pidPath is the pid file's path: -p, else global.pid_file; "" for none.
func (g *generation) pidPath() string {
	if g.opts.pidFile != "" {
		return g.opts.pidFile
	}
	return g.cfg.Global.PidFile
}

// prepare creates the admin socket (under a temporary name) and the pid
// file's temporary file, so that a bad path fails the start before
// anything is bound.
func (g *generation) prepare() (*reload.PidFile, error) {
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
	p, err := reload.PreparePidFile(path)
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
func (g *generation) bindAll(ctx context.Context) error {
	taken := g.takeOver()
	for i, f := range g.proxy.Frontends {
		for _, addr := range f.Binds {
			l := &boundListener{f: f, bind: addr, done: make(chan struct{})}
			if ln, ok := taken[addr]; ok {
				l.ln = ln
				delete(taken, addr)
			} else {
				if err := g.refuseJoin(addr); err != nil {
					return fmt.Errorf("%s: frontend %q: %w", g.cfg.Frontends[i].Pos.Key("bind"), f.Name, err)
				}
				j, err := listener.Join(ctx, addr, joinWait+g.cfg.Global.HandshakeGrace.D())
				if err != nil {
					return fmt.Errorf("%s: frontend %q: %w", g.cfg.Frontends[i].Pos.Key("bind"), f.Name, bindError(addr, err))
				}
				if j.Crowded {
					g.log.Warn().Str("address", addr).Msg("older generations still listen on this address after waiting for them: steering may be imprecise")
				}
				l.ln, l.joined = j.Listener, j
			}
			g.lns = append(g.lns, l)
		}
	}
	for addr, ln := range taken {
		g.log.Info().Str("address", addr).Msg("closing a listener taken over from the old generation: no frontend binds it any more")
		ln.Close()
	}
	return nil
}

// takeOver receives the serving generation's listening sockets over the
// admin socket where it handed its state over (-x, or the configuration's
// admin socket). When it cannot, it says why and lb binds anew.
func (g *generation) takeOver() map[string]*net.TCPListener {
	if g.oldAdmin == "" {
		return nil
	}
	named, err := fetchListeners(g.oldAdmin)
	if err != nil {
		g.warnLauncher(fmt.Sprintf("cannot take the listening sockets over from the old generation (admin socket %s): %v: binding new ones",
			g.oldAdmin, err))
		return nil
	}
	taken := make(map[string]*net.TCPListener, len(named))
	for _, n := range named {
		taken[n.Bind] = n.Listener
	}
	g.tookOver = true
	g.log.Info().Int("listeners", len(named)).Str("socket", g.oldAdmin).Msg("took the listening sockets over from the old generation")
	return taken
}

func fetchListeners(path string) ([]listener.Named, error) {
	c, err := admin.Dial(path, queryTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "_getsocks\n"); err != nil {
		return nil, err
	}
	return listener.Receive(c)
}

// abort undoes a start that failed after some listeners joined their
// groups: new connections go back to the old sockets, and whatever reached
// this generation's sockets meanwhile is served before it exits. accepting
// says whether the accept loops already run.
func (g *generation) abort(ctx context.Context, cause error, accepting bool) error {
	var wg sync.WaitGroup
	for _, l := range g.lns {
		if l.joined != nil && l.joined.Index > 0 {
			_ = listener.Steer(l.ln, 0)
		}
		if !accepting {
			go g.acceptLoop(ctx, l)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = listener.Drain(ctx, l.ln, g.cfg.Global.HandshakeGrace.D())
		}()
	}
	wg.Wait()
	for _, f := range g.proxy.Frontends {
		f.Wait()
	}
	return g.fail(cause)
}

// fail ends a start that did not succeed: the old generations were not
// touched.
func (g *generation) fail(cause error) error {
	g.lock.Release()
	if g.admin != nil {
		g.admin.Close()
	}
	g.log.Error().Err(cause).Msg("cannot start: the old generation, if any, keeps serving")
	return &exitError{code: exitFailure, msg: cause.Error()}
}

// acceptLoop serves one listener until it is closed.
func (g *generation) acceptLoop(ctx context.Context, l *boundListener) {
	defer close(l.done)
	if err := l.f.Serve(ctx, l.ln); err != nil {
		g.log.Error().Err(err).Str("frontend", l.f.Name).Str("address", l.bind).Msg("listener failed")
	}
}

// replaceOld signals the old generations named by -sf and -st, after
// checking that each one really is lb.
func (g *generation) replaceOld() {
	for _, s := range []struct {
		pids []int
		sig  syscall.Signal
		how  string
	}{{g.opts.stop.Soft, syscall.SIGUSR1, "soft stop"}, {g.opts.stop.Hard, syscall.SIGTERM, "hard stop"}} {
		for _, pid := range s.pids {
			if err := g.self.CheckLB(pid); err != nil {
				g.log.Warn().Int("old_pid", pid).Str("reason", err.Error()).Msg("not signalling an old pid")
				continue
			}
			if err := reload.Signal(pid, s.sig); err != nil {
				g.log.Warn().Int("old_pid", pid).Err(err).Msg("cannot signal an old generation")
				continue
			}
			g.log.Info().Int("old_pid", pid).Str("signal", s.how).Msg("told the old generation to stop")
		}
	}
}

// announceReady tells whoever started this generation that it serves: the
// -D launcher or a predecessor, through the readiness pipe.
func (g *generation) announceReady() {
	daemon := g.ready.Daemon()
	if err := g.ready.Ready(); err != nil {
		g.log.Warn().Err(err).Msg("cannot report readiness")
	}
	if daemon && !reload.StderrIsJournal() {
		// The launcher has exited: let its stderr go. Panics and the like
		// go to the log file when there is one, else to /dev/null.
		if err := reload.DetachStderr(g.logFile); err != nil {
			g.log.Warn().Err(err).Msg("cannot detach stderr")
		}
	}
}

// loop handles signals until the generation exits.
func (g *generation) loop(ctx context.Context, sigs <-chan os.Signal) error {
	var drained <-chan struct{}
	var hardStop <-chan time.Time
	var next *succession // the successor being started, if any
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM:
				g.log.Info().Str("signal", sig.String()).Int64("connections", g.connections()).Msg("stopping now")
				return g.exit(next)
			case syscall.SIGUSR1:
				if drained != nil {
					continue
				}
				drained = g.softStop(ctx)
				if d := g.cfg.Global.HardStopAfter.D(); d > 0 {
					hardStop = time.After(d)
				}
			case syscall.SIGHUP, syscall.SIGUSR2:
				next = g.reloadSignal(ctx, sig, next)
			}
		case <-next.ended():
			g.endSuccession(next)
			next = nil
		case <-drained:
			g.log.Info().Msg("drained: every connection has ended")
			return g.exit(next)
		case <-hardStop:
			g.log.Warn().Int64("connections", g.connections()).Dur("hard_stop_after", g.cfg.Global.HardStopAfter.D()).
				Msg("hard stop: closing the connections that are left")
			return g.exit(next)
		}
	}
}

// succession is the start of the next generation on SIGHUP or SIGUSR2.
// The loop runs at most one at a time, and coalesces the reload signals
// that arrive meanwhile into it.
type succession struct {
	done      chan struct{} // closed once the successor serves or has failed
	coalesced int           // reload signals received while it started
}

// ended returns a channel closed once the successor serves or has failed;
// nil, which never gets ready in a select, when s is nil.
func (s *succession) ended() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.done
}

// reloadSignal handles SIGHUP and SIGUSR2, given the successor being
// started (nil: none), and returns the successor being started after it.
func (g *generation) reloadSignal(ctx context.Context, sig os.Signal, next *succession) *succession {
	switch {
	case next != nil:
		next.coalesced++
		return next
	case g.state.Load() != stateServing:
		g.log.Warn().Str("signal", sig.String()).
			Msg("reload signal ignored: this generation is stopping; send it to the serving generation (the pid file's)")
		return nil
	}
	next = &succession{done: make(chan struct{})}
	go g.startSuccessor(ctx, sig, next.done)
	return next
}

// endSuccession says, once the successor serves or has failed, how many
// reload signals were coalesced into its start. Go's signal channel and
// the kernel merge a signal sent while the same one is pending, so more
// may have been sent than lb received.
func (g *generation) endSuccession(s *succession) {
	if s.coalesced > 0 {
		g.log.Info().Int("signals", s.coalesced).
			Msg("reload: more SIGHUP/SIGUSR2 signals arrived while the next generation was starting: coalesced into this reload " +
				"(signals: how many lb received, at least; if the configuration changed after the reload began, reload again)")
	}
}

// softStop stops taking connections without losing any the kernel already
// queued, and returns a channel closed once every connection has ended.
func (g *generation) softStop(ctx context.Context) <-chan struct{} {
	g.state.Store(stateDraining)
	// A draining generation no longer checks: the new one does, from the
	// state it took over.
	g.srv.stopChecks()
	g.stopSaving()
	grace := g.cfg.Global.HandshakeGrace.D()
	if on, _ := listener.MigrateReq(); on {
		grace = 0 // the kernel moves queued and half-open connections on close
	}
	// Listeners handed to a newer generation that released this one
	// (_release) are closed already. Those it took without releasing
	// drain the same way as others: the socket stays open in the newer
	// process, so closing loses nothing, and draining also covers a newer
	// generation that took the sockets and then failed to start.
	g.log.Info().Int64("connections", g.connections()).Bool("listeners_handed_over", g.given.Load()).
		Dur("handshake_grace", grace).Msg("soft stop: draining")
	for _, l := range g.lns {
		go func() { _ = listener.Drain(ctx, l.ln, grace) }()
	}
	// HTTP frontends finish the requests in flight, then close their
	// connections; idle ones over close_spread_time.
	for _, f := range g.proxy.Frontends {
		f.SoftStop(g.cfg.Global.CloseSpreadTime.D())
	}
	done := make(chan struct{})
	go g.waitDrained(done)
	return done
}

// waitDrained closes done once the listeners are closed and every
// connection has ended.
func (g *generation) waitDrained(done chan<- struct{}) {
	for _, l := range g.lns {
		<-l.done
	}
	g.log.Info().Int64("connections", g.connections()).Msg("listeners closed")
	for _, f := range g.proxy.Frontends {
		f.Wait()
	}
	close(done)
}

// exit releases what the generation owns in the file system. A successor
// this generation started (next, when not nil) replaces it long before its
// launch times out, so waiting for the launch only delays the exit until
// its outcome is logged.
func (g *generation) exit(next *succession) error {
	if next != nil {
		<-next.done
		g.endSuccession(next)
	}
	if g.state.Load() == stateServing {
		g.srv.stopChecks()
		g.stopSaving()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	if path := g.pidPath(); path != "" && g.state.Load() == stateServing {
		reload.RemovePidFile(path, g.self.Pid)
	}
	g.log.Info().Dur("uptime", time.Since(g.start)).Msg("exiting")
	return nil
}

// connections returns the number of connections being served.
func (g *generation) connections() int64 {
	var n int64
	for _, f := range g.proxy.Frontends {
		n += f.Active()
	}
	return n
}

// startSuccessor starts the next generation with this one's arguments plus
// -sf and this pid, from the same executable path, so that a new binary
// there is picked up. The successor signals this generation once ready.
// It closes done once the successor serves or has failed.
func (g *generation) startSuccessor(ctx context.Context, sig os.Signal, done chan<- struct{}) {
	defer close(done)
	path, err := selfPath()
	if err != nil {
		g.log.Error().Err(err).Msg("reload: cannot find lb's executable")
		return
	}
	// The successor takes over through this generation's own admin socket,
	// whatever -x said when this one started.
	own := ""
	if g.admin != nil {
		own = g.adminSocketPath()
	}
	args := append(reload.WithTakeover(reload.WithoutStopPids(g.opts.rawArgs), own), "-sf", strconv.Itoa(g.self.Pid))
	env := []string{"LB_GENERATION=" + strconv.Itoa(g.number+1)}
	g.log.Info().Str("signal", sig.String()).Str("executable", path).Strs("args", args).Msg("reload: starting the next generation")
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	if g.opts.daemon {
		// The successor daemonizes itself; its launcher exits with the
		// outcome.
		out, err := reload.RunLauncher(ctx, path, args, env)
		if err != nil {
			g.log.Error().Err(err).Str("output", strings.TrimSpace(string(out))).Msg("reload failed: this generation keeps serving")
			return
		}
		g.log.Info().Msg("reload: the next generation is serving")
		return
	}
	pid, err := reload.Launch{Path: path, Args: args, Env: env}.Run(ctx)
	if err != nil {
		g.log.Error().Err(err).Int("new_pid", pid).Msg("reload failed: this generation keeps serving")
		return
	}
	g.log.Info().Int("new_pid", pid).Msg("reload: the next generation is serving")
}

// launchDaemon is lb -D: start lb again as a daemon and wait until it
// serves or fails. Its errors reach this process's stderr.
func launchDaemon(ctx context.Context, o options) error {
	path, err := selfPath()
	if err != nil {
		return &exitError{code: exitFailure, msg: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	_, err = reload.Launch{Path: path, Args: o.rawArgs, Daemon: true, Stderr: os.Stderr}.Run(ctx)
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		// The daemon said why on stderr.
		return &exitError{code: ee.ExitCode()}
	}
	return &exitError{code: exitFailure, msg: "daemon " + err.Error()}
}

// selfPath is the executable as it was started (not /proc/self/exe, which
// names the old file after a binary upgrade), made absolute.
var selfPath = sync.OnceValues(func() (string, error) {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		return exec.LookPath(arg0)
	}
	return filepath.Abs(arg0)
})

// serveAdmin answers the admin socket until ctx is done.
func (g *generation) serveAdmin(ctx context.Context) {
	var s admin.Server
	s.Handle("show info", admin.HandlerFunc(g.showInfo))
	s.Handle("show servers state", admin.HandlerFunc(g.showServersState))
	s.Handle("show stat", admin.HandlerFunc(g.showStat))
	s.Handle("set server", admin.HandlerFunc(g.setServer))
	s.Handle("_getsocks", admin.HandlerFunc(g.giveListeners))
	s.Handle("_getstate", admin.HandlerFunc(g.getState))
	s.Handle("_release", admin.HandlerFunc(g.release))
	s.Serve(ctx, g.admin.Listener)
}

// showInfo answers "show info".
func (g *generation) showInfo(w io.Writer, _ *admin.Request) error {
	fmt.Fprintf(w, "pid: %d\ngeneration: %d\nversion: %s\nuptime: %s\nstate: %s\nconnections: %d\nlisteners: %d\n",
		g.self.Pid, g.number, version, time.Since(g.start).Round(time.Millisecond), stateNames[g.state.Load()],
		g.connections(), len(g.lns))
	return nil
}

// giveListeners answers "_getsocks": it hands this generation's listening
// sockets to a new generation (lb -x).
func (g *generation) giveListeners(_ io.Writer, r *admin.Request) error {
	if g.state.Load() != stateServing {
		return errors.New("this generation is draining: its listeners are closing")
	}
	named := make([]listener.Named, len(g.lns))
	for i, l := range g.lns {
		named[i] = listener.Named{Bind: l.bind, Listener: l.ln}
	}
	// Set first: the newer generation may ask for "_release" on another
	// connection as soon as it has the sockets.
	g.given.Store(true)
	if err := listener.Send(r.Conn, named); err != nil {
		return err
	}
	g.log.Info().Int("listeners", len(named)).Msg("handed the listening sockets to a new generation")
	return nil
}

// releaseOld tells the generation whose listening sockets this one took
// over to stop accepting on them: from here on this generation alone
// accepts. It comes after everything that can fail, since the old
// generation no longer serves new connections afterwards.
func (g *generation) releaseOld() {
	if !g.tookOver {
		return
	}
	c, err := admin.Dial(g.oldAdmin, queryTimeout)
	if err == nil {
		defer c.Close()
		_, err = io.WriteString(c, "_release\n")
	}
	var reply []byte
	if err == nil {
		reply, err = io.ReadAll(c)
	}
	if err == nil && string(reply) != "released\n" {
		err = fmt.Errorf("reply %q", reply)
	}
	if err != nil {
		g.log.Warn().Err(err).Str("socket", g.oldAdmin).
			Msg("cannot tell the old generation to stop accepting: it does so on the soft stop signal instead")
	}
}

// release answers "_release": a newer generation that took this one's
// listening sockets over serves, so this one stops accepting on its
// copies of them at once. Closing a copy loses nothing: the socket and its
// queue live on in the newer process.
func (g *generation) release(w io.Writer, _ *admin.Request) error {
	if !g.given.Load() {
		return errors.New("this generation did not hand its listening sockets over: it keeps accepting")
	}
	g.closeGiven()
	_, err := io.WriteString(w, "released\n")
	return err
}

// closeGiven closes this generation's copies of the listening sockets it
// handed over, once.
func (g *generation) closeGiven() {
	g.releaseOnce.Do(func() {
		for _, l := range g.lns {
			_ = l.ln.Close()
		}
		g.log.Info().Msg("stopped accepting: the new generation accepts on the listening sockets it took over")
	})
}

// newLogger returns lb's logger: JSON lines on w, or readable console output
// when w is a terminal.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	zerolog.DurationFieldUnit = time.Millisecond
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Int("pid", os.Getpid()).Logger(), nil
}

// openLog opens global.log_file for appending; with no path it returns a
// nil file, and logs go to stderr. "/dev/stdout" and "/dev/stderr" are
// this process's own stdout and stderr, duplicated rather than opened
// again through /proc/self/fd, which fails on a socket (systemd's journal,
// some container log drivers). "/dev/null" discards the logs. Any other
// path must be a regular file, or
// not exist yet: a root lb must not append to whatever file a symbolic
// link planted there names, nor block on a FIFO.
func openLog(path string) (*os.File, error) {
	switch path {
	case "":
		return nil, nil
	case "/dev/stdout":
		return dupLog(path, 1)
	case "/dev/stderr":
		return dupLog(path, 2)
	case os.DevNull:
		// A device nobody can plant: logs are discarded.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("log_file: %w", err)
		}
		return f, nil
	}
	// O_NONBLOCK keeps the open from waiting for a reader when path is a
	// FIFO; it changes nothing for a regular file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o640)
	if err != nil {
		return nil, logOpenError(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log_file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegularLog(path, fi.Mode())
	}
	return f, nil
}

// dupLog returns a duplicate of this process's descriptor fd, for
// log_file "/dev/stdout" or "/dev/stderr".
func dupLog(path string, fd int) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("log_file %s: lb's own file descriptor %d: %w", path, fd, err)
	}
	return os.NewFile(uintptr(nfd), path), nil
}

// logOpenError explains why log_file could not be opened.
func logOpenError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		// Or too many links in the directories above it.
		target, lerr := os.Readlink(path)
		if lerr != nil {
			break
		}
		return fmt.Errorf("log_file %s is a symbolic link (to %q): lb does not follow a symbolic link there, "+
			"so that whoever can write %s cannot make lb append to another file; set log_file to the file itself, "+
			"or replace the link with a regular file (\"/dev/stdout\" and \"/dev/stderr\" are allowed: lb writes to its own)",
			path, target, filepath.Dir(path))
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENXIO):
		// A directory, or a FIFO with no reader or a socket.
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
			return notRegularLog(path, fi.Mode())
		}
	}
	return fmt.Errorf("log_file: %w", err)
}

// notRegularLog refuses a log_file that is not a regular file.
func notRegularLog(path string, m os.FileMode) error {
	return fmt.Errorf("log_file %s is %s, not a regular file: lb appends its logs to a regular file only "+
		"(or to its own stdout or stderr: log_file = \"/dev/stdout\" or \"/dev/stderr\"); set log_file to a file's path",
		path, fileType(m))
}

// fileType names the type of a file that is not a regular file.
func fileType(m os.FileMode) string {
	switch m.Type() {
	case os.ModeDir:
		return "a directory"
	case os.ModeNamedPipe:
		return "a named pipe (FIFO)"
	}
	return fmt.Sprintf("a device, socket or other special file (mode %v)", m)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
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

// logDescriptors says what the file descriptor limit is, what the
// configuration needs and the maxconn each frontend gets, and warns when the
// limit does not cover the need.
func (g *generation) logDescriptors() {
	d := g.fds
	if d.err != nil {
		g.log.Warn().Err(d.err).Int("fd_limit_planned", d.need.Limit).
			Msg("cannot read or raise the file descriptor limit: lb plans for fd_limit_planned descriptors; set the limit where lb " +
				"starts (LimitNOFILE= in the systemd unit, ulimit -n, docker run --ulimit nofile=N:N)")
	}
	fronts := zerolog.Arr()
	for _, f := range d.need.Frontends {
		fronts.Dict(zerolog.Dict().Str("name", f.Name).Int("maxconn", f.MaxConn).Bool("derived", f.Derived).Int("fds_per_conn", f.PerConn))
	}
	g.log.Info().Uint64("fd_limit", d.limit.Soft).Uint64("fd_hard_limit", d.limit.Hard).Int("fd_need", d.need.Need).
		Int("fd_fixed", d.need.Fixed).Int("fd_budget", d.need.Budget).Array("frontends", fronts).Msg("file descriptors")
	if d.need.Covered() {
		return
	}
	g.log.Warn().Int("fd_limit", d.need.Limit).Int("fd_need", d.need.Need).Int("fd_budget", d.need.Budget).Str("fix", d.need.Fix()).
		Msg("file descriptor limit too low for maxconn: once its connections hold fd_budget descriptors, lb stops accepting " +
			"and new connections wait in the accept queue; raise the limit to fd_need or more (see fix), or lower maxconn")
}

// logStart writes the start-up line that names every listener and backend.
func (g *generation) logStart() {
	fronts := zerolog.Arr()
	for _, f := range g.proxy.Frontends {
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
	for _, b := range g.proxy.Backends {
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
	g.log.Info().Str("version", version).Array("frontends", fronts).Array("backends", backs).Msg("lb started")
}
