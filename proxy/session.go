package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
	"lb/park"
	"lb/proxyproto"
	"lb/table"
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
	EndProxyRefused      // a peer not in accept_proxy sent a PROXY protocol header
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
	EndProxyRefused:  "proxy_refused",
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

// session is one proxied connection: its two flows (flow.go) move the
// bytes, and the last one to end logs the connection and gives it back.
// Sessions are pooled.
type session struct {
	f      *TCP
	be     *Backend
	conn   *Conn // the client's, as the frontend counts it
	client *net.TCPConn
	server *net.TCPConn
	srv    *balancer.Server
	start  time.Time
	peer   netip.AddrPort

	// dial is the way to the server: the servers tried, and why the last
	// one failed.
	dial Connecting

	// timeouts are each side's idle timeout.
	timeouts [2]time.Duration
	// last is when bytes last moved either way, in ns since start.
	last  atomic.Int64
	flows [2]flow // indexed by the side bytes come from
	// live counts the flows still running or parked.
	live atomic.Int32

	// mu guards parked: a flow parks or wakes, the session aborts.
	mu     sync.Mutex
	parked [2]*park.Parked

	end     atomic.Uint32
	aborted atomic.Bool
	bytes   [2]int64 // bytes read from each side, each counted by its flow
}

var sessions = sync.Pool{New: func() any { return new(session) }}

func newSession(f *TCP, c *Conn) *session {
	s := sessions.Get().(*session)
	s.f, s.be, s.conn, s.client, s.start = f, f.Backend, c, c.TCPConn, time.Now()
	s.peer = c.Client()
	if c.info != nil && c.info.Backend != nil {
		s.be = c.info.Backend
	}
	s.timeouts = [2]time.Duration{f.ClientTimeout, s.be.ServerTimeout}
	return s
}

// freeSession puts s back in the pool. Its flows keep their callbacks,
// which are bound to them.
func freeSession(s *session) {
	flows := s.flows
	for i := range flows {
		flows[i].reset()
	}
	*s = session{flows: flows}
	sessions.Put(s)
}

// run connects the client to a server and starts the flows; the last flow
// to end calls finish. It returns when the connection ended (no server) or
// when the flow it runs parks.
func (s *session) run() {
	if !s.connect() {
		s.logEnd()
		_ = s.client.Close()
		s.conn.Done()
		freeSession(s)
		return
	}
	s.last.Store(s.since())
	if s.flows[clientSide].bind(s, clientSide, s.client, s.server) != nil ||
		s.flows[serverSide].bind(s, serverSide, s.server, s.client) != nil {
		s.abort(EndClientError) // a connection closed under lb: no flow to run
		s.finish()
		return
	}
	s.live.Store(2)
	go s.flows[clientSide].run()
	s.flows[serverSide].run()
}

// flowDone ends a flow; the last one finishes the session.
func (s *session) flowDone() {
	if s.live.Add(-1) == 0 {
		s.finish()
	}
}

// finish ends the session once both flows have: the connections close,
// the server's counters and passive check hear how it went, the log line
// goes out, and the frontend stops counting the connection.
func (s *session) finish() {
	_ = s.server.Close()
	in, out := s.bytes[clientSide], s.bytes[serverSide]
	s.srv.CountBytes(in, out)
	s.be.Counts.Bytes(in, out)
	s.conn.f.Counts.Bytes(in, out)
	if ci := s.conn.info; ci != nil {
		ci.CountBytes(in, out, time.Now())
	}
	switch End(s.end.Load()) {
	case EndServerError, EndServerTimeout:
		s.srv.CountError()
		s.srv.Counts.ResponseErrors.Add(1)
		s.be.Counts.ResponseErrors.Add(1)
		s.be.Observe(s.srv, serverFailure(End(s.end.Load())))
	}
	s.srv.Release()
	s.logEnd()
	_ = s.client.Close()
	conn := s.conn
	freeSession(s)
	conn.Done()
}

// serverFailure is what the passive health check hears of a connection
// that ended for e on the server's side.
func serverFailure(e End) error {
	if e == EndServerTimeout {
		return ErrServerTimeout
	}
	return ErrServerReset
}

// connect dials a server, trying up to Retries more servers after a
// failure. It reports whether a server is connected.
func (s *session) connect() bool {
	s.dial.Hash = balancer.HashAddr(s.peer.Addr())
	var stick *table.Entry
	if t := s.be.Stick; t != nil {
		var key [64]byte
		if stick = t.Acquire(s.peer.Addr().Unmap().AppendTo(key[:0]), s.start); stick != nil {
			if name := stick.Server(); name != "" {
				s.dial.Sticky = s.be.Pool.Lookup(name)
			}
			defer stick.Release()
		}
	}
	if end := s.be.Connect(&s.dial, s, s.f.Name, &s.f.Log); end != EndNone {
		s.end.Store(uint32(end))
		return false
	}
	s.srv = s.dial.Server
	s.conn.SetServer(s.srv)
	if stick != nil {
		stick.SetServer(s.srv.Name)
	}
	return true
}

// DialServer implements Dialer: a bare connection, which the passive
// check hears of at once.
func (s *session) DialServer(srv *balancer.Server) error {
	c, err := s.be.Dial(srv)
	if err != nil {
		return err
	}
	if s.be.SendProxy != 0 {
		if err := s.be.WriteProxyHeader(c, s.proxyHeader()); err != nil {
			_ = c.Close()
			return err
		}
	}
	s.be.Observe(srv, nil)
	s.server = c
	return nil
}

// proxyHeader is the PROXY protocol header that tells a server about the
// client: its address and the one it connected to, and the TLS facts a
// PROXY protocol header from a load balancer in front gave.
func (s *session) proxyHeader() proxyproto.Header {
	h := proxyproto.Header{Source: s.peer, Dest: s.conn.Local()}
	if ci := s.conn.info; ci != nil && ci.Proxied {
		h.ALPN, h.Authority, h.TLS, h.TLSVersion = ci.Proxy.ALPN, ci.Proxy.Authority, ci.Proxy.TLS, ci.Proxy.TLSVersion
	}
	return h
}

// moved records n bytes moved from side from: they count for the log and
// the server's counters, and the connection is not idle.
// It returns when, as since does: the one clock read a relay makes.
func (s *session) moved(from side, n int) int64 {
	s.bytes[from] += int64(n)
	if from == clientSide {
		s.conn.CountBytes(int64(n), 0)
	} else {
		s.conn.CountBytes(0, int64(n))
	}
	now := s.since()
	s.last.Store(now)
	return now
}

// idleSide returns a side that has been idle for longer than its timeout:
// no byte moved either way for that long.
func (s *session) idleSide() (side, bool) {
	idle := s.since() - s.last.Load()
	for _, sd := range [...]side{clientSide, serverSide} {
		if t := s.timeouts[sd]; t > 0 && idle >= int64(t) {
			return sd, true
		}
	}
	return 0, false
}

// idleDeadline is when the connection times out if no byte moves: the
// shortest idle timeout after the last move; zero without timeouts.
func (s *session) idleDeadline() time.Time {
	var m time.Duration
	for _, t := range s.timeouts {
		if t > 0 && (m == 0 || t < m) {
			m = t
		}
	}
	if m == 0 {
		return time.Time{}
	}
	return s.start.Add(time.Duration(s.last.Load()) + m)
}

// abort ends the connection for reason: the first abort wins over any clean
// close. A parked flow is taken out of the poller before the connections
// close (its descriptor must not be reused while it is in the set) and
// wakes to end; a running one fails on the closed connections.
func (s *session) abort(reason End) {
	if !s.aborted.CompareAndSwap(false, true) {
		return
	}
	s.end.Store(uint32(reason))
	s.mu.Lock()
	for _, pk := range s.parked {
		if pk != nil {
			pk.Cancel()
		}
	}
	s.mu.Unlock()
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
	if s.dial.Attempts > 1 {
		e = e.Int("retries", s.dial.Attempts-1)
	}
	if s.dial.Err != nil && s.srv == nil {
		e = e.Err(s.dial.Err)
	}
	e.Int64("bytes_in", s.bytes[clientSide]).Int64("bytes_out", s.bytes[serverSide]).
		Dur("duration", time.Since(s.start)).Str("end", end.String()).Msg("connection")
}
