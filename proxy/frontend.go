// Package proxy is lb's data path: frontends accept TCP connections and hand
// each to their handler. A TCP-mode frontend's handler (TCP) picks a server
// of its backend and copies bytes both ways until either side is done; an
// HTTP-mode one is package httpproxy's. Both connect to servers with
// Backend.Connect, the one loop that picks, queues and retries.
//
// The copy runs on bare *net.TCPConn values so that Linux moves the bytes
// with splice(2); idle timeouts are kept with socket deadlines rather than
// with a wrapper around the connection.
package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"lb/fdlimit"
	"lb/listener"
	"lb/sock"
	"lb/stats"
)

// Frontend accepts connections on its listeners and hands each one to its
// Handler. Set its fields before the first Serve; a Frontend may serve
// several listeners at once.
type Frontend struct {
	// Name is the frontend's name in the configuration.
	Name string
	// Binds are the configured listening addresses.
	Binds []string
	// Backend is the frontend's default backend, as logs name it; the
	// Handler decides where each connection goes.
	Backend *Backend
	// MaxConn bounds the connections served at once; beyond it, new
	// connections wait in the kernel's accept queue. 0 means no limit
	// here; lb gives a frontend that sets none a default derived from the
	// file descriptor limit (package fdlimit).
	MaxConn int
	// Descriptors, when set, is the budget of file descriptors that the
	// connections of every frontend share: each holds DescriptorsPerConn
	// of it while it is served, and while too few are left the frontend
	// does not accept, so new connections wait in the kernel's accept
	// queue rather than being accepted and then failing.
	Descriptors *fdlimit.Budget
	// DescriptorsPerConn is what one connection takes from Descriptors;
	// less than 1 means 1.
	DescriptorsPerConn int
	// Log receives the frontend's errors. The zero value logs nothing.
	Log zerolog.Logger
	// Handler serves each connection: a *TCP in TCP mode, an HTTP
	// frontend in HTTP mode. Nil closes every connection at once.
	Handler ConnHandler
	// Counts are the frontend's counters.
	Counts stats.Frontend
	// Policy, when set, is applied to each connection before Handler
	// serves it (see ConnInfo).
	Policy *Policy

	slotsOnce sync.Once
	slots     chan struct{}
	stalls    stallLog
	conns     sync.WaitGroup
	active    atomic.Int64
	sessions  [sessShards]sessShard
	nextShard atomic.Uint32
}

// ConnHandler serves accepted connections. It owns each Conn it is given:
// it closes it when the connection ends, then calls its Done, once. That
// may be long after ServeConn returned: a handler that parks an idle
// connection (package park) lets the goroutine that ServeConn runs in go.
type ConnHandler interface {
	ServeConn(c *Conn)
}

// Conn is an accepted connection, as the frontend hands it to its handler:
// the connection is counted (Active, Wait, MaxConn, the descriptor budget)
// until Done.
type Conn struct {
	*net.TCPConn
	f     *Frontend
	slots chan struct{}
	fds   int // descriptors taken from f.Descriptors
	done  atomic.Bool
	links sessLinks
	info  *ConnInfo // nil without a Policy
}

// NewConn makes c a Conn of f, counted until Done. Serve does this for
// every connection it accepts; tests and handlers that take a connection
// over use it too.
func (f *Frontend) NewConn(c *net.TCPConn) *Conn {
	f.conns.Add(1)
	f.active.Add(1)
	f.Counts.Conns.Add(1)
	conn := &Conn{TCPConn: c, f: f}
	f.register(conn)
	return conn
}

// Detach closes the connection's *net.TCPConn and returns its socket as a
// bare descriptor (sock.Detach), for a connection that stays idle long:
// until Attach, the Conn has no TCPConn (nil), and only the goroutine
// that owns the connection may call either. On an error nothing changed.
func (c *Conn) Detach() (int, error) {
	fd, err := sock.Detach(c.TCPConn)
	if err != nil {
		return -1, err
	}
	c.TCPConn = nil
	return fd, nil
}

// Attach gives the Conn a *net.TCPConn over fd, a descriptor Detach
// returned, which it closes (sock.Attach). On an error the socket is
// closed: the caller calls Done.
func (c *Conn) Attach(fd int) error {
	tc, err := sock.Attach(fd)
	if err != nil {
		return err
	}
	c.TCPConn = tc
	return nil
}

// Done says the connection has ended (the handler closed it): it is no
// longer counted, and its MaxConn slot and descriptors are given back.
// Calls after the first do nothing.
func (c *Conn) Done() {
	if c.f == nil || !c.done.CompareAndSwap(false, true) {
		return
	}
	f := c.f
	if c.info != nil {
		c.info.end()
	}
	c.unregister()
	f.active.Add(-1)
	if c.slots != nil {
		<-c.slots
	}
	if c.fds > 0 {
		f.Descriptors.Give(c.fds)
	}
	f.conns.Done()
}

// SoftStopper is a ConnHandler that can wind its connections down when the
// generation is told to stop: finish what is in flight, then close.
type SoftStopper interface {
	SoftStop(spread time.Duration)
}

// SoftStop tells the frontend's handler, if it can wind down (it is a
// SoftStopper), that the generation is stopping; spread is the time over
// which to close idle connections. A TCP handler has nothing to do: its
// connections end when their peers end them.
func (f *Frontend) SoftStop(spread time.Duration) {
	if s, ok := f.Handler.(SoftStopper); ok {
		s.SoftStop(spread)
	}
}

// Active returns the number of connections being served now.
func (f *Frontend) Active() int64 { return f.active.Load() }

// Wait blocks until every connection accepted so far has ended.
func (f *Frontend) Wait() { f.conns.Wait() }

// connSlots returns the semaphore that enforces MaxConn, or nil without a
// limit.
func (f *Frontend) connSlots() chan struct{} {
	f.slotsOnce.Do(func() {
		if f.MaxConn > 0 {
			f.slots = make(chan struct{}, f.MaxConn)
		}
	})
	return f.slots
}

// Serve accepts connections on ln until ctx is done or ln is closed, and
// serves each in its own goroutine. It closes ln when ctx is done. It does
// not wait for the connections it started; see Wait.
//
// Before each accept it takes a slot under MaxConn and the connection's
// descriptors from the Descriptors budget; while either is spent it does not
// accept, so new connections wait in the kernel's accept queue. An accept
// that fails (out of descriptors or memory) leaves the connection in the
// queue too: Serve waits and tries again, and established connections are
// not touched. Either stall is logged at most once a second per frontend,
// with counts, and the end of it once.
func (f *Frontend) Serve(ctx context.Context, ln *net.TCPListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := f.connSlots()
	fds, per := f.Descriptors, max(f.DescriptorsPerConn, 1)
	var backoff time.Duration
	stalled := false // since the last connection accepted
	for {
		if slots != nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
		}
		if fds != nil {
			ok, waited := f.takeDescriptors(ctx, ln, fds, per)
			if !ok {
				if slots != nil {
					<-slots
				}
				return nil
			}
			stalled = stalled || waited
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			if slots != nil {
				<-slots
			}
			if fds != nil {
				fds.Give(per)
			}
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or memory: accept4 failed and left the
			// connection in the kernel's queue. Wait until resources
			// may be back: a while, or until a connection ends.
			stalled = true
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			f.acceptFailed(ln, err, backoff)
			if !pause(ctx, backoff, fds) {
				return nil
			}
			continue
		}
		if stalled {
			stalled = false
			f.acceptResumed(ln)
		}
		backoff = 0
		conn := f.NewConn(c)
		conn.slots = slots
		if fds != nil {
			conn.fds = per
		}
		go f.serveConn(conn)
	}
}

// maxAcceptBackoff bounds the wait after a failed accept; a connection
// that ends cuts it short.
const maxAcceptBackoff = 100 * time.Millisecond

// stallEvery is the least time between two lines about a frontend's
// stalled accepts.
const stallEvery = time.Second

// takeDescriptors takes a connection's n descriptors from b, waiting while
// too few are left. Meanwhile new connections wait in the accept queue, and
// the log says so once a second. It reports whether it took them (false:
// ctx is done or ln was closed) and whether it had to wait.
func (f *Frontend) takeDescriptors(ctx context.Context, ln *net.TCPListener, b *fdlimit.Budget, n int) (ok, waited bool) {
	ok, wake := b.Take(n)
	if ok {
		return true, false
	}
	since := time.Now()
	if !f.budgetSpent(ln, b, since) {
		return false, true
	}
	tick := time.NewTicker(stallEvery)
	defer tick.Stop()
	for {
		select {
		case <-wake:
		case <-tick.C:
			if !f.budgetSpent(ln, b, since) {
				return false, true
			}
		case <-ctx.Done():
			return false, true
		}
		if ok, wake = b.Take(n); ok {
			return true, true
		}
	}
}

// pause waits for d, or until a connection ends and gives its descriptors
// back to fds (nil: no budget), and reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration, fds *fdlimit.Budget) bool {
	var wake <-chan struct{}
	if fds != nil {
		wake = fds.Wake()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-ctx.Done():
		return false
	}
	return true
}

// stallLog keeps what a frontend's accept loops say about their stalls to
// one line a second, with counts, however often accepts fail: a loop out of
// descriptors would otherwise log hundreds of lines a second. The zero value
// is ready; the frontend's accept loops share it.
type stallLog struct {
	mu    sync.Mutex
	last  time.Time // when the last stall line was written
	start time.Time // when the current stall began; zero when there is none
	told  bool      // a stall line was written since start
	// failed counts the failed accepts not yet counted in a line.
	failed int
}

// failure counts a failed accept at now. It reports whether a line is due,
// and the failed accepts it counts.
func (s *stallLog) failure(now time.Time) (n int, due bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed++
	if !s.dueLocked(now) {
		return 0, false
	}
	n, s.failed = s.failed, 0
	return n, true
}

// spent notes, at now, that the descriptor budget holds accepts back. It
// reports whether a line is due.
func (s *stallLog) spent(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dueLocked(now)
}

func (s *stallLog) dueLocked(now time.Time) bool {
	if s.start.IsZero() {
		s.start = now
	}
	if !s.last.IsZero() && now.Sub(s.last) < stallEvery {
		return false
	}
	s.last, s.told = now, true
	return true
}

// resumed notes, at now, that a connection was accepted after a stall. It
// reports whether the line that says so is due (a stall line was written),
// with the failed accepts not yet counted and how long the stall lasted.
// Failed accepts of a stall that was not told are counted in the next line.
func (s *stallLog) resumed(now time.Time) (n int, stalled time.Duration, due bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		return 0, 0, false
	}
	stalled, due = now.Sub(s.start), s.told
	s.start, s.told = time.Time{}, false
	if due {
		n, s.failed = s.failed, 0
	}
	return n, stalled, due
}

// acceptFailed logs a failed accept, if a line is due: what failed, how
// often since the last line, and what to do.
func (f *Frontend) acceptFailed(ln *net.TCPListener, err error, retry time.Duration) {
	n, due := f.stalls.failure(time.Now())
	if !due {
		return
	}
	e := f.Log.Error()
	if e == nil {
		return
	}
	q, _ := queued(ln)
	e = e.Str("frontend", f.Name).Str("address", ln.Addr().String()).Err(err).Int("failed", n).Int("queued", q).Dur("retry_in", retry)
	const wait = "new connections wait in the accept queue, established ones go on"
	switch {
	case errors.Is(err, syscall.EMFILE):
		e.Uint64("fd_limit", fdlimit.Current()).
			Msg("accept failed: out of file descriptors: " + wait + "; raise the file descriptor limit " +
				"(LimitNOFILE= in the systemd unit, ulimit -n, docker run --ulimit nofile=N:N) or lower maxconn")
	case errors.Is(err, syscall.ENFILE):
		e.Msg("accept failed: the system's file table is full: " + wait + "; raise fs.file-max (sysctl) or find the process that holds the files")
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		e.Msg("accept failed: out of kernel memory: " + wait + "; check the machine's free memory and net.ipv4.tcp_mem")
	default:
		e.Msg("accept failed: " + wait + "; retrying")
	}
}

// budgetSpent logs, if a line is due, that the descriptor budget holds
// accepts back since since. It reports false when ln is closed: there is
// nothing to wait for.
func (f *Frontend) budgetSpent(ln *net.TCPListener, b *fdlimit.Budget, since time.Time) bool {
	q, open := queued(ln)
	if !open {
		return false
	}
	if f.stalls.spent(time.Now()) {
		f.Log.Warn().Str("frontend", f.Name).Str("address", ln.Addr().String()).Int("queued", q).
			Int64("active", f.Active()).Int("fd_budget", b.Size()).Uint64("fd_limit", fdlimit.Current()).
			Dur("waited", time.Since(since)).
			Msg("out of file descriptors: lb's connections hold every descriptor the limit leaves them (fd_budget), " +
				"so lb stops accepting until some end: new connections wait in the accept queue, established ones go on; " +
				"raise the file descriptor limit (LimitNOFILE= in the systemd unit, ulimit -n, docker run --ulimit nofile=N:N) or lower maxconn")
	}
	return true
}

// acceptResumed logs, after a stall that was logged, that accepts go on.
func (f *Frontend) acceptResumed(ln *net.TCPListener) {
	if n, d, due := f.stalls.resumed(time.Now()); due {
		f.Log.Info().Str("frontend", f.Name).Str("address", ln.Addr().String()).Int("failed", n).Dur("stalled", d).
			Msg("accepting again")
	}
}

// queued returns the number of connections in ln's accept queue (-1 when
// unknown), and false when ln is closed.
func queued(ln *net.TCPListener) (n int, open bool) {
	n, err := listener.QueueLen(ln)
	switch {
	case errors.Is(err, net.ErrClosed):
		return 0, false
	case err != nil:
		return -1, true
	}
	return n, true
}

// serveConn hands one accepted connection to the handler, which counts
// it until Done.
func (f *Frontend) serveConn(c *Conn) {
	if f.Handler == nil {
		_ = c.Close()
		c.Done()
		return
	}
	if f.Policy != nil && !f.admit(c) {
		return
	}
	f.Handler.ServeConn(c)
}
