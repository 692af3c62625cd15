package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"lb/balancer"
	"lb/proxy"
	"lb/rules"
)

// Backend is an HTTP-mode backend: the TCP backend's pool, connect timeout
// and passive checks, plus what HTTP adds.
type Backend struct {
	*proxy.Backend
	// TunnelTimeout is how long an Upgrade tunnel may stay idle; 0 means
	// no limit.
	TunnelTimeout time.Duration
	// QueueTimeout is how long a request waits for a slot when every
	// server is full.
	QueueTimeout time.Duration
	// Hash says what balance = "hash" hashes.
	Hash HashKey
	// Cookie is the name of the persistence cookie; empty means none.
	Cookie string
	// ReqRules and RespRules are the backend's header rules.
	ReqRules, RespRules []*rules.HeaderRule
	servers             map[*balancer.Server]*upstream
}

// upstream is what the backend keeps per server: its idle connections, and
// how to speak TLS to it (nil: plain TCP).
type upstream struct {
	idle idlePool
	tls  *tls.Config
}

// HashKey is what a hash backend hashes.
type HashKey struct {
	// Kind is "uri", "path", "header" or "cookie"; empty for other
	// algorithms.
	Kind string
	// Name is the header's or the cookie's name.
	Name string
}

// NewBackend wraps a TCP backend for HTTP.
func NewBackend(b *proxy.Backend) *Backend {
	hb := &Backend{Backend: b, servers: make(map[*balancer.Server]*upstream, len(b.Pool.Servers))}
	for _, s := range b.Pool.Servers {
		hb.servers[s] = &upstream{}
	}
	return hb
}

// Pooled connections to servers.
const (
	// maxIdlePerServer bounds the idle connections kept per server.
	maxIdlePerServer = 256
	// idleMaxAge is how long an idle server connection is kept: less than
	// the keep-alive timeout of common servers (5s for Node, 60s for
	// nginx), so that lb rarely reuses one the server is closing.
	idleMaxAge = 4 * time.Second
	// checkIdleAfter is how long a connection may stay idle and be reused
	// without first checking that the server has not closed it (a
	// syscall): servers close idle connections after seconds, not
	// milliseconds, and a busy pool reuses its connections within
	// microseconds.
	checkIdleAfter = 100 * time.Millisecond
	// bufSize is the size of the read and write buffers of a connection.
	bufSize = 8 << 10
)

// serverConn is one connection to a server, pooled between requests.
type serverConn struct {
	srv  *balancer.Server
	raw  *net.TCPConn
	c    net.Conn // raw, or a TLS connection over it
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // when it went back to the pool
	used bool      // it served a request before
}

func (sc *serverConn) close() { _ = sc.c.Close() }

// idlePool holds a server's idle connections, newest last.
type idlePool struct {
	mu    sync.Mutex
	conns []*serverConn
}

// get returns the newest live idle connection, or nil.
func (p *idlePool) get() *serverConn {
	now := time.Now()
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
		p.mu.Unlock()
		if idle := now.Sub(sc.idle); idle < idleMaxAge && (idle < checkIdleAfter || alive(sc.raw, sc.c != net.Conn(sc.raw))) {
			return sc
		}
		sc.close()
	}
}

// put keeps sc for a next request, or closes it when the pool is full.
func (p *idlePool) put(sc *serverConn) {
	sc.idle = time.Now()
	sc.used = true
	p.mu.Lock()
	if len(p.conns) < maxIdlePerServer {
		// Drop the oldest ones first: they are the likeliest to be
		// closed by the server.
		for len(p.conns) > 0 && sc.idle.Sub(p.conns[0].idle) >= idleMaxAge {
			p.conns[0].close()
			p.conns = p.conns[1:]
		}
		p.conns = append(p.conns, sc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	sc.close()
}

// alive reports whether an idle connection is still open: nothing to read
// (the server has not closed it, nor sent anything unexpected). Over TLS,
// bytes waiting may be a record such as a TLS 1.3 session ticket, so only
// a close counts.
func alive(c *net.TCPConn, overTLS bool) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = (n < 0 && errors.Is(err, unix.EAGAIN)) || (overTLS && n > 0)
		return true
	})
	return ok
}

// connect returns a connection to srv: an idle one when there is one, else
// a new one.
func (b *Backend) connect(srv *balancer.Server, fresh bool) (*serverConn, error) {
	up := b.servers[srv]
	if !fresh {
		if sc := up.idle.get(); sc != nil {
			return sc, nil
		}
	}
	raw, err := b.Dial(srv)
	if err != nil {
		return nil, err
	}
	_ = raw.SetNoDelay(true)
	sc := &serverConn{srv: srv, raw: raw, c: raw}
	if up.tls != nil {
		tc := tls.Client(raw, up.tls)
		ctx, cancel := context.WithTimeout(context.Background(), b.ConnectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, &tlsError{err}
		}
		sc.c = tc
	}
	sc.br = bufio.NewReaderSize(sc.c, bufSize)
	sc.bw = bufio.NewWriterSize(sc.c, bufSize)
	return sc, nil
}

// tlsError is a failed TLS handshake with a server.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// release gives a server connection back: to the pool when it can serve
// another request, else closed.
func (b *Backend) release(sc *serverConn, reuse bool) {
	if reuse {
		b.servers[sc.srv].idle.put(sc)
		return
	}
	sc.close()
}
