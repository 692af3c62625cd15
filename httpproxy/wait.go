package httpproxy

import (
	"bytes"
	"io"
	"net"
	"time"

	"lb/deadline"
	"lb/h1"
	"lb/proxy"
	"lb/sock"
)

// A client connection's life between requests: waiting for the next one,
// reading its head, parking the connection when it stays quiet.

// parkAfter is proxy.ParkAfter; a variable for tests.
var parkAfter = proxy.ParkAfter

// Outcomes of waitRequest.
const (
	waitGo   = iota // a request is coming
	waitEnd         // the connection ends: the client closed it, it stayed idle too long, or lb is stopping
	waitPark        // nothing came within proxy.ParkAfter: park the connection
)

// serve reads and serves requests until the connection ends, or until it
// is parked: then it reports true.
func (cc *clientConn) serve(first bool) (parked bool) {
	cc.early = false
	defer cc.end()
	for ; ; first = false {
		w, read := 0, false
		if cc.c == net.Conn(&cc.sc) {
			w, read = cc.serveHeld(first)
			first = cc.hFirst
		} else {
			w = cc.waitRequest(first, true)
		}
		switch w {
		case waitEnd:
			return false
		case waitPark:
			if cc.park(first) {
				return true
			}
			// Not parked: wait here, as long as it takes.
			if cc.waitRequest(first, false) != waitGo {
				return false
			}
		}
		if !read && !cc.readHead() {
			return false
		}
		if !cc.exchange() {
			return false
		}
	}
}

// waitRequest waits for the first byte of the next request, in this
// goroutine for up to proxy.ParkAfter: a connection quiet for longer is
// parked (unless park is false), so that one at rest holds nothing but its
// socket.
func (cc *clientConn) waitRequest(first, park bool) int {
	cc.in.beginHead()
	if cc.reader().Buffered() == 0 {
		if !cc.beginIdle(first, park) {
			return waitEnd
		}
		_, err := cc.br.Peek(1)
		due := cc.endIdle()
		switch {
		case err == nil:
		case park && isTimeout(err) && time.Now().Before(due):
			return waitPark
		default:
			return waitEnd
		}
	}
	cc.requestBegins()
	return waitGo
}

// beginIdle starts a wait for the next request, with nothing buffered:
// what the last exchange grew goes back, the keep-alive timeout starts
// (unless first), the read deadline covers the wait (up to
// proxy.ParkAfter when park), and the last response goes out with the
// write buffer back to its pool. It reports false when the response could
// not be written: the connection ends.
func (cc *clientConn) beginIdle(first, park bool) bool {
	f := cc.f
	cc.trimHeads()
	cc.mu.Lock()
	cc.idle, cc.first = true, first
	now := time.Now()
	if !first && (cc.due.IsZero() || cc.due.Before(now)) {
		// A new idle period: http_keep_alive from now.
		cc.due = now.Add(f.KeepAliveTimeout)
	}
	if f.draining.Load() && !first {
		cc.due = now.Add(randDur(f.spread))
	}
	wait := cc.due
	if park && now.Add(parkAfter).Before(wait) {
		wait = now.Add(parkAfter)
	}
	// The deadline set for the last wait serves again while it still
	// leaves half of ParkAfter: a busy connection changes it every
	// ParkAfter/2, not per request.
	if cc.readDue.IsZero() || cc.readDue.After(wait) || cc.readDue.Sub(now) < parkAfter/2 {
		_ = cc.c.SetReadDeadline(wait)
		cc.readDue = wait
	}
	cc.mu.Unlock()
	return cc.releaseWriter() == nil
}

// endIdle ends the wait beginIdle started, and returns when the
// connection was due to close.
func (cc *clientConn) endIdle() time.Time {
	cc.mu.Lock()
	cc.idle = false
	due := cc.due
	cc.mu.Unlock()
	return due
}

// requestBegins notes that the first bytes of a request are in the
// buffer.
func (cc *clientConn) requestBegins() {
	cc.mu.Lock()
	cc.due = time.Time{} // the next idle period starts after this request
	cc.mu.Unlock()
	cc.headIn = headIn(cc.br)
	if !cc.headIn {
		// The head is still coming: http_request bounds it. A head that
		// is all in the buffer needs no read, nor a deadline.
		_ = cc.c.SetReadDeadline(time.Now().Add(cc.f.RequestTimeout))
		cc.readDue = time.Time{}
	}
}

// serveHeld waits for requests and serves them within one read operation
// on a plain connection (sock.Conn.Hold), for as long as each comes with
// its head whole in the buffer and no body: then, after its response, the
// connection waits for the next request without a read that finds nothing
// first (Go's poller would need one after each response otherwise). It
// returns what ends the hold: the wait's outcome (as waitRequest's), with
// read true when the head of the request to serve next was read already
// (it has a body or upgrades the connection, whose reads need the read
// operation); waitEnd also when an exchange ended the connection. cc.hFirst
// says whether a request was served meanwhile. While it waits with nothing
// buffered the connection holds no read buffer: after a burst of clients,
// thousands may wait at once before they park.
func (cc *clientConn) serveHeld(first bool) (w int, read bool) {
	cc.hFirst, cc.hWait, cc.hOut, cc.hRead = first, false, waitEnd, false
	if cc.onHeld == nil {
		cc.onHeld = cc.heldStep
	}
	if err := cc.sc.Hold(cc.onHeld); err != nil {
		// The wait for a request failed: its deadline passed, or the
		// connection was closed.
		due := cc.endIdle()
		if isTimeout(err) && time.Now().Before(due) {
			return waitPark, false
		}
		return waitEnd, false
	}
	return cc.hOut, cc.hRead
}

// heldStep is serveHeld's work within the read operation, called when the
// socket may have bytes: it reports false to wait for more, true when the
// hold ends (cc.hOut and cc.hRead say why).
func (cc *clientConn) heldStep() bool {
	for {
		cc.in.beginHead()
		if !cc.hWait && cc.buffered() == 0 {
			if !cc.beginIdle(cc.hFirst, true) {
				cc.hOut = waitEnd
				return true
			}
			cc.hWait = true
			if cc.sc.Drained() {
				// Any byte from now on wakes the wait; the read
				// buffer goes back meanwhile.
				cc.releaseReader()
				return false
			}
		}
		if cc.buffered() == 0 {
			_, err := cc.reader().Peek(1)
			if err == sock.ErrWouldBlock {
				cc.releaseReader()
				return false
			}
			if cc.hWait {
				cc.hWait = false
				cc.endIdle()
			}
			if err != nil {
				cc.hOut = waitEnd
				return true
			}
		}
		cc.requestBegins()
		if !cc.headIn {
			cc.hOut = waitGo // the rest of the head needs reads that wait
			return true
		}
		if !cc.readHead() {
			cc.hOut = waitEnd
			return true
		}
		if !bodiless(&cc.x.req) {
			cc.hOut, cc.hRead = waitGo, true
			return true
		}
		if !cc.exchange() {
			cc.hOut = waitEnd
			return true
		}
		cc.hFirst = false
	}
}

// readHead reads the request head, which has begun to arrive. It reports
// false when the connection ends: the head was bad (the client got an
// error) or did not come.
func (cc *clientConn) readHead() bool {
	f, x := cc.f, &cc.x
	if cc.hFirst && cc.c == net.Conn(&cc.sc) && cc.h2Preface() {
		// Cleartext HTTP/2 with prior knowledge: serveState hands the
		// connection over, with what is buffered.
		b, _ := cc.br.Peek(cc.br.Buffered())
		cc.h2c, cc.h2cIn = true, bytes.Clone(b)
		return false
	}
	x.tStart = time.Now()
	cc.in.start = x.tStart
	if ci := cc.conn.Info(); ci != nil && ci.RefuseProxy && cc.proxyHeader() {
		// A PROXY protocol header from a peer not in accept_proxy: the
		// client's error, refused as a bad request, and counted.
		if f.Counts != nil {
			f.Counts.ProxyErrors.Add(1)
		}
		cc.badRequest(errUntrustedProxy)
		return false
	}
	err := h1.ReadRequest(cc.br, &x.req, f.Limits)
	if e := cc.in.endHead(); e != nil {
		err = e // shed, though it may have arrived whole since
	}
	x.tHead = x.tStart
	if !cc.headIn {
		x.tHead = time.Now() // else the head was read without a wait
	}
	if err != nil {
		cc.badRequest(err)
		return false
	}
	if x.req.Minor == 0 && !x.req.Has("Host") {
		// HTTP/1.0 has no Host to require, but the request goes on in
		// HTTP/1.1, which does: the address the client connected to
		// stands in for the host it did not name.
		x.scratch = cc.local.AppendTo(x.scratch[:0])
		x.req.Add("Host", x.scratch)
	}
	return true
}

// exchange serves the request whose head readHead read. It reports false
// when the connection ends (after end, which must not run within a hold:
// it reads).
func (cc *clientConn) exchange() bool {
	f, x := cc.f, &cc.x
	switch {
	case !bodiless(&x.req):
		// The head's deadline must not cut the body or the tunnel;
		// without either, nothing reads until the next request's
		// deadline is set.
		_ = cc.c.SetReadDeadline(time.Time{})
		cc.readDue = time.Time{}
	case cc.buffered() == 0:
		// The head is parsed (and copied out of the buffer): the read
		// buffer goes back while the server answers. After a burst,
		// thousands of requests may wait so at once.
		cc.releaseReader()
	}
	cc.body = timedReader{Lazy: deadline.Lazy{Conn: cc.c, D: f.ClientTimeout}, stop: &x.up.stop}
	x.reqIn = cc.br
	switch x.req.Body.Kind {
	case h1.BodyLength:
		cc.lr = io.LimitedReader{R: cc.br, N: x.req.Body.Length}
		cc.body.r = &cc.lr
		x.reqBody, x.reqLen = &cc.body, x.req.Body.Length
	case h1.BodyChunked:
		cc.cr.Reset(cc.br, f.Limits)
		cc.body.r = &cc.cr
		x.reqBody, x.reqLen = &cc.body, -1
	}
	keep := x.run()
	cc.wAt = cc.tw.At
	if err := cc.flush(); err != nil {
		keep = false
	}
	cc.early = !keep && x.early
	x.reset()
	return keep
}

// end ends the connection: it lingers when the last request's body may
// still be coming (see linger).
func (cc *clientConn) end() {
	if cc.early {
		cc.early = false
		cc.linger()
	}
}

// bodiless reports whether req reads nothing more from the client after its
// head: no body, and no upgrade to a tunnel.
func bodiless(req *h1.Request) bool { return req.Body.Kind == h1.BodyNone && !req.Upgrade }
