package httpproxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"

	"lb/park"
	"lb/proxy"
)

// A keep-alive connection that waits for its next request longer than
// proxy.ParkAfter is parked (package park): its goroutine ends, its
// buffers and its clientConn go back to their pools, and only its socket
// and an idleConn stay, until the client sends a request (the connection
// is served again, in a new goroutine), or its http_keep_alive (or, for
// a first request, http_request) runs out, or the generation stops (it is
// closed at a random moment within close_spread_time).
//
// A plain connection still parked after detachAfter is detached
// (proxy.Conn.Detach): it gives its *net.TCPConn back to the runtime and
// is parked again as a bare descriptor, so that one idle for long costs
// lb its socket, an idleConn, a park.Parked and a proxy.Conn (about
// 0.3 KiB), not also the runtime's state of an open net.Conn (about
// 0.9 KiB). The connection is attached again when the client sends its
// next request, for about 4µs. A TLS connection stays attached: its
// tls.Conn holds the socket. Parked connections that will detach count
// in proxy's burst of busy connections (proxy.Undetached), so that the
// memory of a wave of connections that went idle is given back to the
// system once they have detached, not before.

// detachAfter is how long a plain connection stays parked before it is
// detached: long enough that the 4µs of its next request is nothing
// next to the time it waited.
const detachAfter = time.Second

// detachWait is detachAfter, which tests shorten.
var detachWait = detachAfter

// idleConn is a parked client connection.
type idleConn struct {
	f  *Frontend
	st connState
	pk *park.Parked
	// fd is the detached socket; -1 while st.conn holds it.
	fd int
}

// park parks cc, which waits for a request and has nothing buffered. It
// reports false when it could not: cc goes on waiting in its goroutine.
func (cc *clientConn) park(first bool) bool {
	f := cc.f
	cc.mu.Lock()
	c := cc.c
	if c == net.Conn(&cc.sc) {
		c = nil // plain: the next clientConn brings its own wrapper
	}
	ic := &idleConn{f: f, st: connState{conn: cc.conn, c: c, first: first, due: cc.due}, fd: -1}
	cc.mu.Unlock()
	// The socket's deadline is the poller's business now.
	_ = cc.c.SetReadDeadline(time.Time{})
	f.mu.Lock()
	defer f.mu.Unlock()
	until := ic.st.due
	if c == nil {
		// Plain: wake at detachAfter to detach, unless due first.
		until = earliest(until, time.Now().Add(detachWait))
	}
	pk, err := proxy.Poller.Park(cc.raw, until, ic)
	if err != nil {
		return false
	}
	if c == nil {
		proxy.Undetached(1)
	}
	ic.parked(pk)
	return true
}

// earliest returns the earlier of a and b, the zero time being none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// parked notes that ic is parked as pk; f.mu is held.
func (ic *idleConn) parked(pk *park.Parked) {
	f := ic.f
	ic.pk = pk
	if f.parked == nil {
		f.parked = map[*idleConn]struct{}{}
	}
	f.parked[ic] = struct{}{}
	if f.draining.Load() && !ic.st.first {
		// SoftStop came after the wait started: close within the spread.
		ic.st.due = time.Now().Add(randDur(f.spread))
		pk.Reschedule(ic.st.due)
	}
}

// detach detaches ic's socket and parks it again until it is due. It
// reports false when it could not: the connection is to be closed.
func (ic *idleConn) detach() bool {
	fd, err := ic.st.conn.Detach()
	if err != nil {
		return false
	}
	f := ic.f
	f.mu.Lock()
	defer f.mu.Unlock()
	ic.fd = fd
	pk, err := proxy.Poller.ParkFD(fd, ic.st.due, ic)
	if err != nil {
		return false
	}
	ic.parked(pk)
	return true
}

// drain closes a parked connection at a random moment within spread,
// unless it waits for its first request; f.mu is held.
func (ic *idleConn) drain(spread time.Duration) {
	if !ic.st.first {
		ic.st.due = time.Now().Add(randDur(spread))
		ic.pk.Reschedule(ic.st.due)
	}
}

// Wake serves the client's next request, or closes the connection whose
// time is up: it implements park.Waker.
func (ic *idleConn) Wake(r park.Reason) {
	f := ic.f
	f.mu.Lock()
	delete(f.parked, ic)
	due := ic.st.due
	f.mu.Unlock()
	if ic.st.c == nil && ic.fd < 0 {
		proxy.Undetached(-1) // detached, served or closed from here on
	}
	switch {
	case r == park.Ready && ic.fd >= 0:
		fd := ic.fd
		ic.fd = -1
		if err := ic.st.conn.Attach(fd); err != nil {
			f.Log.Debug().Str("frontend", f.Name).Err(err).Msg("idle connection lost")
			ic.st.conn.Done()
			return
		}
		f.serveState(&ic.st)
		return
	case r == park.Ready:
		f.serveState(&ic.st)
		return
	case r == park.Expired && ic.fd < 0 && ic.st.c == nil && (due.IsZero() || time.Now().Before(due)):
		// Parked for detachAfter, and not due yet.
		if ic.detach() {
			return
		}
	}
	// Idle too long, or the generation stops.
	switch {
	case ic.fd >= 0:
		_ = unix.Close(ic.fd)
		ic.fd = -1
	case ic.st.c != nil:
		_ = ic.st.c.Close()
	default:
		_ = ic.st.conn.Close()
	}
	ic.st.conn.Done()
}

// parkedConns returns how many connections of f are parked, and how many
// of them are detached.
func (f *Frontend) parkedConns() (parked, detached int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ic := range f.parked {
		if ic.fd >= 0 {
			detached++
		}
	}
	return len(f.parked), detached
}

var _ park.Waker = (*idleConn)(nil)
var _ proxy.ConnHandler = (*Frontend)(nil)
