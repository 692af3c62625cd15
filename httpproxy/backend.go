package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"lb/sock"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lb/balancer"
	"lb/h2pool"
	"lb/proxy"
	"lb/proxyproto"
	"lb/rules"
)

// Backend is an HTTP-mode backend: the TCP backend's pool, connect and
// queue timeouts, retries and passive checks, plus what HTTP adds. Make it
// with NewBackend.
type Backend struct {
	*proxy.Backend
	// TunnelTimeout is how long an Upgrade tunnel may stay idle; 0 means
	// no limit.
	TunnelTimeout time.Duration
	// Hash says what balance = "hash" hashes.
	Hash HashKey
	// Cookie is the name of the persistence cookie; empty means none.
	Cookie string
	// ReqRules and RespRules are the backend's header rules.
	ReqRules, RespRules []*rules.HeaderRule
	// Stick, when its table is set, keeps each client (by the table's
	// key) on the server it got first.
	Stick   proxy.Track
	servers map[*balancer.Server]*upstream
	// h2 says the servers are spoken to in HTTP/2 (UseHTTP2).
	h2 bool
}

// upstream is what the backend keeps per server: its idle connections, and
// how to speak TLS to it (nil: plain TCP).
type upstream struct {
	idle idlePool
	tls  *tls.Config
	// h2 holds the HTTP/2 connections of a backend that speaks HTTP/2.
	h2 *h2pool.Pool
}

// HashKey is what a hash backend hashes.
type HashKey struct {
	// Kind is the part of the request hashed; HashClient for algorithms
	// other than hash.
	Kind HashKind
	// Name is the header's or the cookie's name.
	Name string
}

// HashKind is the part of a request that balance = "hash" hashes.
type HashKind uint8

// Parts of a request a hash backend hashes.
const (
	HashClient HashKind = iota // the client's address: not a hash backend
	HashURI                    // the request target, query included
	HashPath                   // the path, without the query
	HashHeader                 // the value of the header HashKey.Name
	HashCookie                 // the value of the cookie HashKey.Name
)

// NewBackend wraps a TCP backend for HTTP.
func NewBackend(b *proxy.Backend) *Backend {
	hb := &Backend{Backend: b, servers: make(map[*balancer.Server]*upstream, len(b.Pool.Servers))}
	for _, s := range b.Pool.Servers {
		hb.servers[s] = &upstream{}
	}
	return hb
}

// SetServerTLS makes the connections to s speak TLS with c; nil means
// plain TCP, as for a server SetServerTLS was not called for. Call it
// before the backend serves.
func (b *Backend) SetServerTLS(s *balancer.Server, c *tls.Config) {
	if up := b.servers[s]; up != nil {
		up.tls = c
	}
}

// Pooled connections to servers.
const (
	// maxIdlePerServer bounds the idle connections kept per server.
	maxIdlePerServer = 256
	// bufSize is the size of the read and write buffers of a connection.
	bufSize = 8 << 10
	// serverWriteSize is the size of a server connection's write buffer:
	// it carries a request head (a few hundred bytes as a rule; a longer
	// one goes out in more writes) and the framing of a chunked body. A
	// body's bytes do not stay in it: bufio writes a large write straight
	// through. Small, so that the requests that wait for their servers in
	// a burst hold little.
	serverWriteSize = 2 << 10
)

// processStart is when the process began, for sinceStart.
var processStart = time.Now()

// sinceStart is the time since the process began, on the monotonic clock:
// one clock read, where time.Now makes two (the wall clock too). The
// pool's ages need nothing else.
func sinceStart() time.Duration { return time.Since(processStart) }

// idleMaxAge is how long an idle server connection is kept: less than
// the keep-alive timeout of common servers (5s for Node, 60s for nginx),
// so that lb rarely reuses one the server is closing.
const idleMaxAge = 4 * time.Second

// maxIdleNs is idleMaxAge in nanoseconds, which tests shorten: atomic,
// since a pool's purge timer may still read it as a test ends.
var maxIdleNs atomic.Int64

func init() { maxIdleNs.Store(int64(idleMaxAge)) }

// maxIdle returns how long an idle server connection is kept.
func maxIdle() time.Duration { return time.Duration(maxIdleNs.Load()) }

// serverConn is one connection to a server, pooled between requests.
type serverConn struct {
	srv *balancer.Server
	raw *net.TCPConn
	c   net.Conn // plain, or a TLS connection over raw
	// plain reads and writes raw; nil over TLS.
	plain *sock.Conn
	// br and bw are taken from readBufs and serverWriteBufs for an exchange,
	// and go back when the connection goes back to the pool idle: an idle
	// connection holds no buffer.
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Duration // when it went back to the pool, as sinceStart
	used bool          // it served a request before
	// rAt and wAt are when exchanges last set the read and write
	// deadlines (see package deadline): kept from one exchange to the next, so
	// that a busy connection sets them every timeout.server/8, not per
	// request.
	rAt, wAt time.Time
	// rc reaches raw's socket; probe, made with the connection, looks at
	// it for alive and leaves its answer in open, so that a check
	// allocates nothing.
	rc    syscall.RawConn
	probe func(fd uintptr)
	open  bool
}

func (sc *serverConn) close() { _ = sc.c.Close() }

// takeBuffers gives sc its read and write buffers for an exchange.
func (sc *serverConn) takeBuffers() {
	sc.br = readBufs.Get().(*bufio.Reader)
	sc.br.Reset(sc.c)
	sc.bw = serverWriteBufs.Get().(*bufio.Writer)
	sc.bw.Reset(sc.c)
}

// dropBuffers gives sc's buffers back, when they hold nothing: it
// reports false, keeping them, when they do (bytes the server sent beyond
// its response, or a request not flushed): the connection cannot carry
// another request then.
func (sc *serverConn) dropBuffers() bool {
	if sc.br.Buffered() > 0 || sc.bw.Buffered() > 0 {
		return false
	}
	sc.br.Reset(nil)
	readBufs.Put(sc.br)
	sc.bw.Reset(nil)
	serverWriteBufs.Put(sc.bw)
	sc.br, sc.bw = nil, nil
	return true
}

// idlePool holds a server's idle connections, newest last. Its zero value
// is an empty pool.
type idlePool struct {
	mu    sync.Mutex
	conns []*serverConn
	// purge closes the connections idle for idleMaxAge, so that a pool
	// left alone after a burst does not keep them (and their descriptors)
	// until the next request; armed says it is set to fire, which it is
	// while the pool holds connections.
	purge *time.Timer
	armed bool
	// closed is when (sinceStart) the server was last seen with a pooled
	// connection it had closed: alive found it, or a request failed on
	// it; 0: never.
	closed time.Duration
}

// closerMemory is how long after the server was last seen with a pooled
// connection it had closed lb checks every reuse (see get).
const closerMemory = 30 * time.Second

// get returns the newest idle connection that may carry a request, or
// nil. A connection is checked with alive before reuse, unless cheap says
// a request that meets a closed connection costs nothing but a round trip
// (forward sends it again on a fresh connection: an idempotent request lb
// can send again whole) and the server was not seen closing a pooled
// connection in the last closerMemory. A server that closes after its
// answer without saying "Connection: close" so costs one round trip, then
// has every reuse checked; a server that keeps its connections, the
// common case, has none checked for such requests: the check is a syscall,
// a third of lb's syscalls per HTTP/2 request (HAProxy does not check).
func (p *idlePool) get(cheap bool) *serverConn { return p.getAt(cheap, sinceStart()) }

// getAt is get at now (as sinceStart): a time the caller read already,
// such as when its request came, microseconds ago; a clock read less.
func (p *idlePool) getAt(cheap bool, now time.Duration) *serverConn {
	for {
		p.mu.Lock()
		n := len(p.conns)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		sc := p.conns[n-1]
		p.conns[n-1] = nil
		p.conns = p.conns[:n-1]
		check := !cheap || (p.closed > 0 && now-p.closed < closerMemory)
		p.mu.Unlock()
		if now-sc.idle < maxIdle() {
			if !check || sc.alive() {
				return sc
			}
			p.noteClosed()
		}
		sc.close()
	}
}

// noteClosed records that the server was seen with a pooled connection it
// had closed.
func (p *idlePool) noteClosed() {
	now := sinceStart()
	p.mu.Lock()
	p.closed = now
	p.mu.Unlock()
}

// put keeps sc for a next request, or closes it when the pool is full or
// sc still holds bytes.
func (p *idlePool) put(sc *serverConn) { p.putAt(sc, sinceStart()) }

// putAt is put at now (as sinceStart), as getAt.
func (p *idlePool) putAt(sc *serverConn, now time.Duration) {
	if (sc.plain != nil && sc.plain.Pending()) || !sc.dropBuffers() {
		sc.close()
		return
	}
	sc.idle = now
	sc.used = true
	p.mu.Lock()
	if len(p.conns) < maxIdlePerServer {
		p.dropOld(sc.idle)
		p.conns = append(p.conns, sc)
		if !p.armed {
			p.armed = true
			if p.purge == nil {
				p.purge = time.AfterFunc(maxIdle(), p.expire)
			} else {
				p.purge.Reset(maxIdle())
			}
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	sc.close()
}

// dropOld closes the connections idle for idleMaxAge at now (as
// sinceStart), oldest first: they are the likeliest to be closed by the
// server. p.mu is held.
func (p *idlePool) dropOld(now time.Duration) {
	n := 0
	for n < len(p.conns) && now-p.conns[n].idle >= maxIdle() {
		p.conns[n].close()
		p.conns[n] = nil
		n++
	}
	if n > 0 {
		p.conns = append(p.conns[:0], p.conns[n:]...)
	}
}

// expire is the purge timer: it closes the connections idle for
// idleMaxAge, and fires again when the oldest left will be, if any is.
func (p *idlePool) expire() {
	now := sinceStart()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropOld(now)
	if len(p.conns) == 0 {
		p.armed = false
		return
	}
	p.purge.Reset(maxIdle() - (now - p.conns[0].idle))
}

// alive reports whether an idle connection may carry a request: the
// server has not closed it (its FIN has not come, nor a reset) nor sent
// anything unexpected. When it runs (idlePool.get), it runs however short
// the idle time: a server that closes after its answer without saying
// "Connection: close" has its FIN arrive microseconds after the response,
// when a busy pool may already be reusing the connection.
//
// The check is one non-blocking syscall through RawConn.Control (no trip
// through the poller, as RawConn.Read would take) with a probe made once
// per connection: about 160 ns and no allocation on plain TCP, 270 ns over
// TLS (BenchmarkAlive), where RawConn.Read with unix.Recvfrom took 340 ns
// and an allocation. lb spends 10 to 13 µs of CPU per proxied
// request (make bench-http), so the check costs about 1.5% of a request,
// less than that benchmark's noise. A FIN that comes after the check is
// the job of serverConn.unread.
func (sc *serverConn) alive() bool {
	sc.open = false
	return sc.rc.Control(sc.probe) == nil && sc.open
}

// openPlain is the probe of a plain TCP connection: a one-byte
// recvfrom(MSG_PEEK|MSG_DONTWAIT) that finds nothing to read (EAGAIN). A
// FIN (a read of 0), a reset or stray bytes each make the connection
// unusable. It is made with RawSyscall6 because unix.Recvfrom allocates
// the sender's address it returns; the call does not block. A signal (the
// runtime preempts goroutines with SIGURG) may interrupt a syscall: EINTR
// asks again rather than drop a good connection.
func openPlain(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return e == unix.EAGAIN
		}
	}
}

// openTLS is the probe of a TLS connection: bytes waiting may be a record
// such as a TLS 1.3 session ticket, so only a close counts, which a peek
// cannot see behind such bytes: poll(2) with no wait says whether the
// server's FIN (POLLRDHUP) or a reset (POLLERR, POLLHUP) came.
func openTLS(fd uintptr) bool {
	p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		_, err := unix.Poll(p[:], 0)
		if err != unix.EINTR {
			return err == nil && p[0].Revents&(unix.POLLRDHUP|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == 0
		}
	}
}

// unread reports whether a request that failed with err on a reused
// connection, before any byte of a response came, provably never reached
// the server application, so that it may go again whatever its method.
// The server's kernel says so with a reset: a socket the server had closed
// answers the request's bytes with one, and so does a socket closed with
// the request still unread in it (Linux sends a reset rather than a FIN
// then). So a read that fails with ECONNRESET, or a write that fails with
// EPIPE or ECONNRESET, is the proof. (A server could read part of a
// request and close with the rest unread, or abort a connection on
// purpose after reading a request; lb takes a reset at its word. A
// request it can send again goes out at once, head and body together,
// which leaves the first case little room.) End of file alone is not a
// proof: see awaitReset. A timeout proves nothing.
func (sc *serverConn) unread(err error) bool {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return sc.awaitReset()
	}
	return false
}

// Waiting for a reset after the server's FIN (awaitReset).
const (
	// resetRTTs is how many smoothed round trips (TCP_INFO tcpi_rtt) lb
	// waits: the request reaches the server within half of one, the reset
	// comes back within the other half.
	resetRTTs = 4
	// minResetWait and maxResetWait bound the wait: a loopback round trip
	// is some 10 µs, but the reset may be late by a scheduling delay; a
	// long round trip must not hold the request much longer than HAProxy
	// or a client would.
	minResetWait = time.Millisecond
	maxResetWait = 25 * time.Millisecond
	// tcpClose is the kernel's TCP_CLOSE state (include/net/tcp_states.h):
	// where a reset takes a connection.
	tcpClose = 7
)

// awaitReset tells, after the server's FIN came in place of a response,
// whether the server had closed before the request arrived. The FIN is
// ambiguous: the server may have closed just before the request came (its
// kernel then answers the request with a reset, which moves lb's socket
// to CLOSE), or it may have read the request and closed without an answer
// (it crashed, or it drops such requests): then its kernel acknowledged
// the request before the FIN, or in it. TCP_INFO tells them apart: the
// state, and the segments still unacknowledged. While neither answer has
// come (the reset is on its way), lb waits for the socket's next event,
// which the reset raises, for resetRTTs round trips (between minResetWait
// and maxResetWait); no answer by then counts as no proof. Only a FIN that
// came between alive's check and the request pays this; the common case,
// a reset already there, costs one getsockopt.
func (sc *serverConn) awaitReset() bool {
	var (
		reset, decided bool
		rtt            uint32 // µs
	)
	look := func(fd uintptr) bool {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		switch {
		case err != nil:
			return true
		case info.State == tcpClose:
			reset = true
			return true
		case info.Unacked == 0:
			return true // the server's kernel took the request
		}
		rtt = info.Rtt
		return false
	}
	if sc.rc.Control(func(fd uintptr) { decided = look(fd) }) != nil || decided {
		return reset
	}
	d := min(max(resetRTTs*time.Duration(rtt)*time.Microsecond, minResetWait), maxResetWait)
	if sc.raw.SetReadDeadline(time.Now().Add(d)) != nil {
		return false
	}
	// Read calls look again each time the socket is readable, until look
	// is done or the deadline passes. The connection is not reused.
	_ = sc.rc.Read(look)
	return reset
}

// connect returns a connection to srv: an idle one when there is one, else
// a new one.
func (b *Backend) connect(srv *balancer.Server, fresh bool) (*serverConn, error) {
	return b.dial(srv, fresh, false, nil, sinceStart())
}

// dial is connect, sending hdr first on a new connection when the backend
// sends the PROXY protocol: then the connection is the client's alone,
// never taken from the pool nor given back to it. cheap and now are
// idlePool.getAt's.
func (b *Backend) dial(srv *balancer.Server, fresh, cheap bool, hdr *proxyproto.Header, now time.Duration) (*serverConn, error) {
	up := b.servers[srv]
	if !fresh && b.SendProxy == 0 {
		if sc := up.idle.getAt(cheap, now); sc != nil {
			sc.takeBuffers()
			return sc, nil
		}
	}
	raw, err := b.Dial(srv)
	if err != nil {
		return nil, err
	}
	if b.SendProxy != 0 && hdr != nil {
		if err := b.WriteProxyHeader(raw, *hdr); err != nil {
			_ = raw.Close()
			return nil, err
		}
	}
	_ = raw.SetNoDelay(true)
	rc, err := raw.SyscallConn()
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	sc := &serverConn{srv: srv, raw: raw, rc: rc}
	if sc.plain, err = sock.New(raw); err != nil {
		_ = raw.Close()
		return nil, err
	}
	sc.c = sc.plain
	probe := openPlain
	if up.tls != nil {
		probe = openTLS
	}
	sc.probe = func(fd uintptr) { sc.open = probe(fd) }
	if up.tls != nil {
		tc := tls.Client(sc.c, up.tls)
		ctx, cancel := context.WithTimeout(context.Background(), b.ConnectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, &tlsError{err}
		}
		sc.c, sc.plain = tc, nil
	}
	sc.takeBuffers()
	return sc, nil
}

// tlsError is a failed TLS handshake with a server.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// keepPrivate keeps sc, whose PROXY protocol header speaks for this
// client, for its next request, closing the one kept before; sc is closed
// instead when it cannot carry another request.
func (cc *clientConn) keepPrivate(sc *serverConn) {
	cc.dropPrivate()
	if (sc.plain != nil && sc.plain.Pending()) || !sc.dropBuffers() {
		sc.close()
		return
	}
	sc.idle, sc.used = sinceStart(), true
	cc.private = sc
}

// takePrivate returns the client's private connection to srv, ready for
// an exchange, or nil: then none is kept (one to another server, or one
// that closed or idled too long, is closed).
func (cc *clientConn) takePrivate(srv *balancer.Server) *serverConn {
	sc := cc.private
	if sc == nil {
		return nil
	}
	cc.private = nil
	if sc.srv != srv || sinceStart()-sc.idle >= maxIdle() || !sc.alive() {
		sc.close()
		return nil
	}
	sc.takeBuffers()
	return sc
}

// dropPrivate closes the client's private server connection, if any.
func (cc *clientConn) dropPrivate() {
	if cc.private != nil {
		cc.private.close()
		cc.private = nil
	}
}

// release gives a server connection back at now (as sinceStart): to the
// pool when it can serve another request, else closed.
func (b *Backend) release(sc *serverConn, reuse bool, now time.Duration) {
	if reuse && b.SendProxy == 0 {
		b.servers[sc.srv].idle.putAt(sc, now)
		return
	}
	sc.close()
}
