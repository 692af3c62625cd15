// Package h2pool keeps lb's HTTP/2 connections to one server: each carries
// as many concurrent requests as the server allows (its
// SETTINGS_MAX_CONCURRENT_STREAMS), and a request that finds them all full
// gets a new one. The connections are net/http's (Transport.NewClientConn),
// which does the framing, flow control, GOAWAY and pings; the pool decides
// which connection a request takes, opens and closes them.
package h2pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Options say how to reach the server.
type Options struct {
	// Addr is the server's "host:port".
	Addr string
	// TLS, when set, makes the connections TLS, with h2 chosen by ALPN;
	// nil means cleartext HTTP/2 with prior knowledge (h2c).
	TLS *tls.Config
	// Dial opens a TCP connection to the server; nil means a net.Dialer's.
	Dial func(ctx context.Context) (net.Conn, error)
	// ConnectTimeout bounds the TLS handshake; 0 means no bound but ctx's.
	ConnectTimeout time.Duration
	// IdleTimeout is how long a connection that carries no request is
	// kept; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is how long an idle connection is kept by default.
// HTTP/2 servers end an idle connection with a GOAWAY, which a request
// never races with as it does with an HTTP/1.1 server's close, so the
// connection can stay longer than an HTTP/1.1 one.
const DefaultIdleTimeout = 30 * time.Second

// Pool holds the connections to one server. Make it with New; its methods
// are safe for concurrent use.
type Pool struct {
	t      *http.Transport
	scheme string
	addr   string
	idle   time.Duration

	mu     sync.Mutex
	conns  []*conn
	closed bool
	// dialing is the connection being opened, if one is.
	dialing *dial
	purge   *time.Timer
	armed   bool
}

// conn is one pooled connection and when the pool last saw it go idle.
type conn struct {
	cc     *http.ClientConn
	idleAt time.Time // zero while it carries requests
}

// errClosed is Get's error once the pool is closed.
var errClosed = errors.New("h2pool: the pool is closed")

// New makes the pool of connections to the server o describes.
func New(o Options) *Pool {
	p := &Pool{t: NewTransport(o.TLS, o.Dial, o.ConnectTimeout), scheme: "http", addr: o.Addr, idle: o.IdleTimeout}
	if o.TLS != nil {
		p.scheme = "https"
	}
	if p.idle <= 0 {
		p.idle = DefaultIdleTimeout
	}
	return p
}

// NewTransport returns a transport that speaks HTTP/2 only: over TLS with
// tc (h2 by ALPN), or in cleartext with prior knowledge when tc is nil.
// dial, when set, opens its TCP connections.
func NewTransport(tc *tls.Config, dial func(ctx context.Context) (net.Conn, error), handshake time.Duration) *http.Transport {
	var protos http.Protocols
	t := &http.Transport{
		TLSHandshakeTimeout: handshake,
		ForceAttemptHTTP2:   true,
		// lb passes bodies on as they are: no Accept-Encoding of its own.
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			// A server that stops answering is found within a minute of
			// silence, and its connection closed.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		t.TLSClientConfig = tc
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	t.Protocols = &protos
	if dial != nil {
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	return t
}

// Get returns a connection with a request reserved on it
// (http.ClientConn.Reserve): its next RoundTrip sends at once, or Release
// gives the reservation back. fresh says the connection was opened for
// this call. An existing connection with room is taken first; a new one is
// opened when none has any.
//
// One connection is opened at a time: the requests that find no room
// while it opens wait for it (a burst of requests on a cold pool shares
// one connection, as the server's stream limit allows), and share its
// failure.
func (p *Pool) Get(ctx context.Context) (cc *http.ClientConn, fresh bool, err error) {
	for {
		p.mu.Lock()
		cc, err := p.takeLocked()
		if cc != nil || err != nil {
			p.mu.Unlock()
			return cc, false, err
		}
		d := p.dialing
		if d == nil {
			p.dialing = &dial{done: make(chan struct{})}
			p.mu.Unlock()
			return p.open(ctx)
		}
		p.mu.Unlock()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, false, d.err
			}
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// dial is a connection being opened; err is set when done closes.
type dial struct {
	done chan struct{}
	err  error
}

// open opens a connection for Get, and ends p.dialing.
func (p *Pool) open(ctx context.Context) (*http.ClientConn, bool, error) {
	cc, err := p.t.NewClientConn(ctx, p.scheme, p.addr)
	if err != nil {
		err = fmt.Errorf("connecting over HTTP/2: %w", err)
	} else {
		// A new connection has room for a first request: the server's
		// limit is taken as 100 until its SETTINGS say otherwise. If it
		// refuses one at once (a GOAWAY), RoundTrip reports it.
		_ = cc.Reserve()
	}
	p.mu.Lock()
	d := p.dialing
	p.dialing = nil
	switch {
	case err != nil:
	case p.closed:
		_ = cc.Close()
		cc, err = nil, errClosed
	default:
		p.conns = append(p.conns, &conn{cc: cc})
		p.armLocked()
	}
	d.err = err
	close(d.done)
	p.mu.Unlock()
	return cc, err == nil, err
}

// takeLocked reserves a request on a pooled connection with room,
// dropping the connections that can no longer carry any; nil when none
// has room. p.mu is held.
func (p *Pool) takeLocked() (*http.ClientConn, error) {
	if p.closed {
		return nil, errClosed
	}
	for i := 0; i < len(p.conns); {
		c := p.conns[i]
		if c.cc.Err() != nil {
			_ = c.cc.Close()
			p.conns = slices.Delete(p.conns, i, i+1)
			continue
		}
		if c.cc.Reserve() == nil {
			c.idleAt = time.Time{}
			return c.cc, nil
		}
		i++
	}
	return nil, nil
}

// Len returns how many connections the pool holds.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// armLocked sets the purge timer if it is not set; p.mu is held.
func (p *Pool) armLocked() {
	if p.armed {
		return
	}
	p.armed = true
	if p.purge == nil {
		p.purge = time.AfterFunc(p.idle/4, p.expire)
	} else {
		p.purge.Reset(p.idle / 4)
	}
}

// expire is the purge timer: it closes the connections that carried no
// request for the idle timeout (as seen at its rounds, a quarter of the
// timeout apart) and the broken ones, and fires again while any is left.
func (p *Pool) expire() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	for i := 0; i < len(p.conns); {
		c := p.conns[i]
		switch {
		case c.cc.Err() != nil:
		case c.cc.InFlight() > 0:
			c.idleAt = time.Time{}
			i++
			continue
		case c.idleAt.IsZero():
			c.idleAt = now
			i++
			continue
		case now.Sub(c.idleAt) < p.idle:
			i++
			continue
		}
		_ = c.cc.Close()
		p.conns = slices.Delete(p.conns, i, i+1)
	}
	if len(p.conns) > 0 && !p.closed {
		p.armLocked()
	}
}

// Close closes every connection, interrupting the requests they carry;
// Get fails from then on.
func (p *Pool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	if p.purge != nil {
		p.purge.Stop()
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.cc.Close()
	}
}

// Unsent reports whether a RoundTrip that failed with err provably left
// the request unprocessed by the server, so that it may go again on
// another connection whatever its method (RFC 9113 8.7): the server
// refused the stream (REFUSED_STREAM), or its GOAWAY came before the
// stream was opened, or the connection could take no request. net/http
// keeps the last two errors unexported; their texts are what its own
// Transport retries on (http2canRetryError).
func Unsent(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		return se.Code == http2.ErrCodeRefusedStream
	}
	for err != nil {
		switch err.Error() {
		case "http2: client conn not usable", "http2: Transport received Server's graceful shutdown GOAWAY":
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}
