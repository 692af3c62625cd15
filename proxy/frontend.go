// Package proxy is lb's data path: frontends accept TCP connections, pick a
// server of their backend and copy bytes both ways until either side is done.
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
	"time"

	"github.com/rs/zerolog"
)

// Frontend accepts connections on its listeners and proxies each one to its
// backend. Set its fields before the first Serve; a Frontend may serve
// several listeners at once.
type Frontend struct {
	// Name is the frontend's name in the configuration.
	Name string
	// Binds are the configured listening addresses.
	Binds []string
	// Backend takes the frontend's connections.
	Backend *Backend
	// MaxConn bounds the connections served at once; beyond it, new
	// connections wait in the kernel's accept queue. 0 means no limit.
	MaxConn int
	// ClientTimeout is how long the client side may stay idle; 0 means no
	// limit.
	ClientTimeout time.Duration
	// Log receives one line per connection. The zero value logs nothing.
	Log zerolog.Logger
	// Handler, when set, serves each connection instead of the TCP proxy:
	// an HTTP-mode frontend sets it.
	Handler ConnHandler

	slotsOnce sync.Once
	slots     chan struct{}
	conns     sync.WaitGroup
	active    atomic.Int64
}

// ConnHandler serves one accepted connection until it ends, and closes it.
type ConnHandler interface {
	ServeConn(c *net.TCPConn)
}

// SoftStopper is a ConnHandler that can wind its connections down when the
// generation is told to stop: finish what is in flight, then close.
type SoftStopper interface {
	SoftStop(spread time.Duration)
}

// SoftStop tells the frontend's handler, if it can wind down, that the
// generation is stopping; spread is the time over which to close idle
// connections. A TCP frontend has nothing to do: its connections end when
// their peers end them.
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
func (f *Frontend) Serve(ctx context.Context, ln *net.TCPListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := f.connSlots()
	var backoff time.Duration
	for {
		if slots != nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			if slots != nil {
				<-slots
			}
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			// Out of descriptors or buffers: say so and let the kernel
			// queue hold the connections until resources come back.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.Log.Error().Err(err).Str("frontend", f.Name).Dur("retry_in", backoff).Msg("accept failed")
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		f.conns.Add(1)
		f.active.Add(1)
		go f.serveConn(c, slots)
	}
}

// serveConn proxies one accepted connection and gives its slot back.
func (f *Frontend) serveConn(c *net.TCPConn, slots chan struct{}) {
	if f.Handler != nil {
		f.Handler.ServeConn(c)
	} else {
		s := newSession(f, c)
		s.run()
		freeSession(s)
	}
	f.active.Add(-1)
	if slots != nil {
		<-slots
	}
	f.conns.Done()
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
