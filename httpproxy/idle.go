package httpproxy

import (
	"net"
	"time"

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

// idleConn is a parked client connection.
type idleConn struct {
	f  *Frontend
	st connState
	pk *park.Parked
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
	ic := &idleConn{f: f, st: connState{conn: cc.conn, c: c, first: first, due: cc.due}}
	cc.mu.Unlock()
	// The socket's deadline is the poller's business now.
	_ = cc.c.SetReadDeadline(time.Time{})
	f.mu.Lock()
	defer f.mu.Unlock()
	pk, err := proxy.Poller.Park(cc.raw, ic.st.due, ic)
	if err != nil {
		return false
	}
	ic.pk = pk
	if f.parked == nil {
		f.parked = map[*idleConn]struct{}{}
	}
	f.parked[ic] = struct{}{}
	if f.draining.Load() && !first {
		// SoftStop came after the wait started: close within the spread.
		ic.st.due = time.Now().Add(randDur(f.spread))
		pk.Reschedule(ic.st.due)
	}
	return true
}

// drain closes a parked connection at a random moment within spread,
// unless it waits for its first request; f.mu is held.
func (ic *idleConn) drain(spread time.Duration) {
	if !ic.st.first {
		ic.pk.Reschedule(time.Now().Add(randDur(spread)))
	}
}

// Wake serves the client's next request, or closes the connection whose
// time is up: it implements park.Waker.
func (ic *idleConn) Wake(r park.Reason) {
	f := ic.f
	f.mu.Lock()
	delete(f.parked, ic)
	f.mu.Unlock()
	if r == park.Ready {
		f.serveState(&ic.st)
		return
	}
	// Idle too long, or the generation stops.
	if ic.st.c != nil {
		_ = ic.st.c.Close()
	} else {
		_ = ic.st.conn.Close()
	}
	ic.st.conn.Done()
}

// parkedConns returns how many connections of f are parked.
func (f *Frontend) parkedConns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.parked)
}

var _ park.Waker = (*idleConn)(nil)
var _ proxy.ConnHandler = (*Frontend)(nil)
