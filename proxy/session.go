package proxy

import (
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"lb/balancer"
	"lb/config"
)

// End says why a proxied connection ended.
type End uint32

// Reasons a connection ends. A clean close by one side is replaced by a
// timeout or an error that ends the connection later.
const (
	EndNone          End = iota
	EndClientClosed      // the client closed its side first
	EndServerClosed      // the server closed its side first
	EndClientTimeout     // the client side stayed idle for timeout.client
	EndServerTimeout     // the server side stayed idle for timeout.server
	EndClientError       // the client connection failed (reset, ...)
	EndServerError       // the server connection failed (reset, ...)
	EndConnectFailed     // no server could be connected to
	EndNoServer          // no server was available to try
	EndQueueTimeout      // every server stayed full for timeout.queue
)

var endNames = [...]string{
	EndNone:          "none",
	EndClientClosed:  "client_closed",
	EndServerClosed:  "server_closed",
	EndClientTimeout: "client_timeout",
	EndServerTimeout: "server_timeout",
	EndClientError:   "client_error",
	EndServerError:   "server_error",
	EndConnectFailed: "connect_failed",
	EndNoServer:      "no_server",
	EndQueueTimeout:  "queue_timeout",
}

// String returns the reason as it appears in logs.
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}

// side is one end of a proxied connection.
type side uint8

const (
	clientSide side = iota
	serverSide
)

func (sd side) other() side { return 1 - sd }

func (sd side) closed() End  { return [...]End{EndClientClosed, EndServerClosed}[sd] }
func (sd side) timeout() End { return [...]End{EndClientTimeout, EndServerTimeout}[sd] }
func (sd side) failed() End  { return [...]End{EndClientError, EndServerError}[sd] }

// chunk bounds one splice round when timeouts are on, so that activity is
// recorded at least that often during a long transfer.
const chunk = 1 << 20

// minTick is the finest granularity of idle-timeout checks.
const minTick = 10 * time.Millisecond

// session is one proxied connection. Sessions are pooled.
type session struct {
	f      *Frontend
	be     *Backend
	client *net.TCPConn
	server *net.TCPConn
	srv    *balancer.Server
	start  time.Time
	peer   netip.AddrPort

	req      balancer.Request // kept here: a pick's Request escapes to the heap
	tried    [2 * (config.MaxRetries + 1)]*balancer.Server
	attempts int
	connErr  error

	// timeouts and the idle-check tick derived from them.
	timeouts [2]time.Duration
	tick     time.Duration
	// seen holds, per side, when bytes last moved, in ns since start.
	seen [2]atomic.Int64

	end     atomic.Uint32
	aborted atomic.Bool
	bytes   [2]int64 // bytes read from each side
	done    sync.WaitGroup
}

var sessions = sync.Pool{New: func() any { return new(session) }}

func newSession(f *Frontend, c *net.TCPConn) *session {
	s := sessions.Get().(*session)
	s.f, s.be, s.client, s.start = f, f.Backend, c, time.Now()
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		s.peer = a.AddrPort()
	}
	s.timeouts = [2]time.Duration{f.ClientTimeout, f.Backend.ServerTimeout}
	s.tick = idleTick(s.timeouts)
	return s
}

func freeSession(s *session) {
	*s = session{}
	sessions.Put(s)
}

// idleTick is how often a blocked copy wakes to check the idle timeouts: a
// quarter of the shortest one, so a timeout fires at most 25% late.
func idleTick(t [2]time.Duration) time.Duration {
	m := time.Duration(0)
	for _, d := range t {
		if d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	if m == 0 {
		return 0
	}
	return max(m/4, minTick)
}

// run proxies the connection to its end and logs it.
func (s *session) run() {
	defer s.client.Close()
	if !s.connect() {
		s.logEnd()
		return
	}
	s.pipe()
	s.server.Close()
	s.srv.CountBytes(s.bytes[clientSide], s.bytes[serverSide])
	switch End(s.end.Load()) {
	case EndServerError, EndServerTimeout:
		s.srv.CountError()
		s.be.Observe(s.srv, serverFailure(End(s.end.Load())))
	}
	s.srv.Release()
	s.logEnd()
}

// Errors the passive health check hears for failures after connecting.
var (
	errServerReset   = errors.New("server connection failed")
	errServerTimeout = errors.New("server timed out")
)

func serverFailure(e End) error {
	if e == EndServerTimeout {
		return errServerTimeout
	}
	return errServerReset
}

// connect dials a server, trying up to Retries more servers after a
// failure. It reports whether a server is connected.
func (s *session) connect() bool {
	req := &s.req
	req.Hash, req.Tried = balancer.HashAddr(s.peer.Addr()), s.tried[:0]
	for s.attempts <= s.be.Retries {
		srv := s.be.Pool.Pick(req)
		if srv == nil && s.attempts == 0 && s.be.QueueTimeout > 0 && s.be.Pool.Available() {
			// Every server that could take it is full: wait in the queue.
			if srv = s.be.Pool.Wait(req, time.Now().Add(s.be.QueueTimeout), nil); srv == nil {
				s.end.Store(uint32(EndQueueTimeout))
				return false
			}
		}
		if srv == nil {
			break
		}
		s.attempts++
		c, err := s.be.Dial(srv)
		s.be.Observe(srv, err)
		if err == nil {
			s.server, s.srv = c, srv
			return true
		}
		srv.CountError()
		srv.Release()
		s.connErr = err
		req.Tried = append(req.Tried, srv)
		s.f.Log.Warn().Str("frontend", s.f.Name).Str("backend", s.be.Name()).Str("server", srv.Name).
			Str("address", srv.Addr).Err(err).Int("attempt", s.attempts).Msg("connect failed")
	}
	if s.attempts == 0 {
		s.end.Store(uint32(EndNoServer))
	} else {
		s.end.Store(uint32(EndConnectFailed))
	}
	return false
}

// pipe copies both ways until both directions are done or one fails.
func (s *session) pipe() {
	now := s.since()
	s.seen[clientSide].Store(now)
	s.seen[serverSide].Store(now)
	s.done.Add(1)
	go s.upload()
	s.download()
	s.done.Wait()
}

// upload copies the client's bytes to the server.
func (s *session) upload() {
	defer s.done.Done()
	s.copy(s.server, s.client, clientSide)
}

// download copies the server's bytes to the client.
func (s *session) download() {
	s.copy(s.client, s.server, serverSide)
}

// copy moves bytes from src (the from side) to dst until src is done. It
// calls dst.ReadFrom on the bare connections so that Linux splices; with
// idle timeouts on, each round is bounded by a read deadline of one tick,
// after which it checks whether either side has been idle too long.
func (s *session) copy(dst, src *net.TCPConn, from side) {
	to := from.other()
	lr := io.LimitedReader{R: src, N: math.MaxInt64}
	for {
		var writeBy time.Time
		if s.tick > 0 {
			now := time.Now()
			_ = src.SetReadDeadline(now.Add(s.tick))
			if t := s.timeouts[to]; t > 0 {
				writeBy = now.Add(t)
				_ = dst.SetWriteDeadline(writeBy)
			}
			lr.N = chunk
		}
		n, err := dst.ReadFrom(&lr)
		s.bytes[from] += n
		if n > 0 {
			now := s.since()
			s.seen[from].Store(now)
			s.seen[to].Store(now)
		}
		switch {
		case err == nil && lr.N > 0: // src sent FIN
			s.end.CompareAndSwap(uint32(EndNone), uint32(from.closed()))
			_ = dst.CloseWrite()
			return
		case err == nil: // chunk done
			continue
		case s.aborted.Load():
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !writeBy.IsZero() && !time.Now().Before(writeBy) {
				s.abort(to.timeout())
				return
			}
			if n > 0 {
				continue
			}
			if idle, ok := s.idleSide(); ok {
				s.abort(idle.timeout())
				return
			}
		case errors.Is(err, syscall.EPIPE):
			s.abort(to.failed())
			return
		default:
			s.abort(from.failed())
			return
		}
	}
}

// idleSide returns a side that has been idle for longer than its timeout.
func (s *session) idleSide() (side, bool) {
	now := s.since()
	for _, sd := range [...]side{clientSide, serverSide} {
		if t := s.timeouts[sd]; t > 0 && now-s.seen[sd].Load() >= int64(t) {
			return sd, true
		}
	}
	return 0, false
}

// abort ends the connection for reason: the first abort wins over any clean
// close, and closing both connections wakes the other direction.
func (s *session) abort(reason End) {
	if !s.aborted.CompareAndSwap(false, true) {
		return
	}
	s.end.Store(uint32(reason))
	_ = s.client.Close()
	_ = s.server.Close()
}

// since returns the nanoseconds since the session started, on the monotonic
// clock.
func (s *session) since() int64 { return int64(time.Since(s.start)) }

// logEnd writes the connection's log line.
func (s *session) logEnd() {
	end := End(s.end.Load())
	e := s.f.Log.Info()
	if end == EndConnectFailed || end == EndNoServer || end == EndQueueTimeout {
		e = s.f.Log.Warn()
	}
	if e == nil {
		return
	}
	var buf [64]byte
	e = e.Bytes("client", s.peer.AppendTo(buf[:0])).Str("frontend", s.f.Name).Str("backend", s.be.Name())
	if s.srv != nil {
		e = e.Str("server", s.srv.Name)
	}
	if s.attempts > 1 {
		e = e.Int("retries", s.attempts-1)
	}
	if s.connErr != nil && s.srv == nil {
		e = e.Err(s.connErr)
	}
	e.Int64("bytes_in", s.bytes[clientSide]).Int64("bytes_out", s.bytes[serverSide]).
		Dur("duration", time.Since(s.start)).Str("end", end.String()).Msg("connection")
}
