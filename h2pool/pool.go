// Package h2pool is lb's HTTP/2 client: connections to one server (Conn,
// conn.go), each carrying as many concurrent requests (Stream) as the
// server allows (its SETTINGS_MAX_CONCURRENT_STREAMS), and the pool that
// decides which connection a request takes, opens them (one at a time)
// and closes the idle ones.
package h2pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
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
	// ConnectTimeout bounds the opening of a connection: TCP, TLS and
	// the server's SETTINGS; 0 means no bound but Get's context's.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write to the server: a server that stops
	// reading for that long (up to 1/8 more: package deadline) loses the
	// connection. 0 means no bound.
	WriteTimeout time.Duration
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
	opts Options
	idle time.Duration

	mu     sync.Mutex
	conns  []*Conn
	closed bool
	// dialing is the connection being opened, if one is.
	dialing *dialing
	purge   *time.Timer
	armed   bool
}

// New makes the pool of connections to the server o describes.
func New(o Options) *Pool {
	p := &Pool{opts: o, idle: o.IdleTimeout}
	if p.idle <= 0 {
		p.idle = DefaultIdleTimeout
	}
	return p
}

// Get returns a connection with a stream reserved on it: Conn.Open takes
// it, or Conn.Release gives it back. fresh says the connection was opened
// for this call. An existing connection with room is taken first; a new one is
// opened when none has any.
//
// One connection is opened at a time: the requests that find no room
// while it opens wait for it (a burst of requests on a cold pool shares
// one connection, as the server's stream limit allows), and share its
// failure.
func (p *Pool) Get(ctx context.Context) (cc *Conn, fresh bool, err error) {
	for {
		p.mu.Lock()
		cc, err := p.takeLocked()
		if cc != nil || err != nil {
			p.mu.Unlock()
			return cc, false, err
		}
		d := p.dialing
		if d == nil {
			p.dialing = &dialing{done: make(chan struct{})}
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

// dialing is a connection being opened; err is set when done closes.
type dialing struct {
	done chan struct{}
	err  error
}

// open opens a connection for Get, and ends p.dialing.
func (p *Pool) open(ctx context.Context) (*Conn, bool, error) {
	if d := p.opts.ConnectTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	cc, err := dial(ctx, &p.opts)
	switch {
	case err != nil:
		err = fmt.Errorf("connecting over HTTP/2: %w", err)
	case !cc.reserve():
		// The server's SETTINGS allow no stream.
		cc.Close()
		cc, err = nil, errors.New("connecting over HTTP/2: the server allows no stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)")
	}
	p.mu.Lock()
	d := p.dialing
	p.dialing = nil
	switch {
	case err != nil:
	case p.closed:
		cc.Close()
		cc, err = nil, errClosed
	default:
		p.conns = append(p.conns, cc)
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
func (p *Pool) takeLocked() (*Conn, error) {
	if p.closed {
		return nil, errClosed
	}
	for i := 0; i < len(p.conns); {
		c := p.conns[i]
		if c.reserve() {
			return c, nil
		}
		if c.broken() {
			p.conns = slices.Delete(p.conns, i, i+1)
			continue
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
// request for the idle timeout and the broken ones, and fires again, a
// quarter of the timeout later, while any is left.
func (p *Pool) expire() {
	now := time.Now()
	var done []*Conn
	p.mu.Lock()
	p.armed = false
	for i := 0; i < len(p.conns); {
		c := p.conns[i]
		if !c.broken() && c.idleFor(now) < p.idle {
			i++
			continue
		}
		done = append(done, c)
		p.conns = slices.Delete(p.conns, i, i+1)
	}
	if len(p.conns) > 0 && !p.closed {
		p.armLocked()
	}
	p.mu.Unlock()
	// Closed without p.mu: the GOAWAY is a write.
	for _, c := range done {
		c.Close()
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
		c.Close()
	}
}

// Unsent reports whether a request that failed with err provably left
// the server without processing it, so that it may go again on another
// connection whatever its method (RFC 9113 8.7): the server refused its
// stream (REFUSED_STREAM), or its GOAWAY came before the stream, or the
// connection failed before the request's head left lb.
func Unsent(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, ErrGoAway) || errors.Is(err, ErrUnsent)
}
