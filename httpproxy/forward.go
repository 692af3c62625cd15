package httpproxy

import (
	"errors"
	"fmt"
	"time"

	"lb/balancer"
	"lb/deadline"
	"lb/h1"
	"lb/proxy"
	"lb/proxyproto"
	"lb/table"
)

// idempotent methods may be sent again after a connection failed before
// any response came (RFC 9110 9.2.2).
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// pickAndConnect chooses a server and connects to it, trying others after
// a failed connect, and waiting in the queue when every server is full
// (proxy.Backend.Connect): the server the client's cookie names first.
func (x *exchange) pickAndConnect() bool {
	be, c := x.be, &x.dial
	c.Hash, c.Gone = 0, nil
	if x.h2st != nil {
		c.Gone = x.h2st
	}
	if be.Pool.Hashes() {
		c.Hash = x.hashKey()
	}
	if be.Cookie != "" {
		if v := cookieValue(&x.req.Head, be.Cookie); v != nil {
			c.Sticky = be.Pool.Lookup(string(v))
		}
	}
	if cc, ok := x.cl.(*clientConn); ok && c.Sticky == nil && cc.private != nil && be.SendProxy != 0 {
		// The server whose connection carries this client's PROXY
		// header, if it can take the request.
		c.Sticky = cc.private.srv
	}
	var stick *table.Entry
	if t := be.Stick; t.Table != nil && c.Sticky == nil {
		if stick = x.stickEntry(t); stick != nil {
			if name := stick.Server(); name != "" {
				c.Sticky = be.Pool.Lookup(name)
			}
			defer stick.Release()
		}
	}
	end := be.Backend.Connect(c, x, x.f.Name, &x.f.Log)
	if end == proxy.EndNone && stick != nil {
		stick.SetServer(c.Server.Name)
	}
	x.retries, x.err = max(c.Attempts-1, 0), c.Err
	switch end {
	case proxy.EndNone:
		// The passive check hears of this server when the response
		// comes: a success here would reset a count of 5xx answers.
		x.srv, x.stuck = c.Server, c.Server == c.Sticky
		x.counted = x.srv
		if cc, ok := x.cl.(*clientConn); ok {
			cc.conn.SetServer(x.srv)
		}
		if x.reused() && c.Attempts == 1 && !c.Queued {
			// A pooled connection taken at once: no connect time to
			// measure, nor a clock to read.
			x.tConnect = x.tHead
		} else {
			x.tConnect = time.Now()
		}
		x.env.Server, x.env.ServerAddr = x.srv.Name, x.srv.Addr
		return true
	case proxy.EndQueueTimeout:
		if x.streamGone() {
			return x.clientGone(errClientGone)
		}
		return x.fail(503, endQueueTimeout, nil)
	case proxy.EndNoServer:
		return x.fail(503, endNoServer, nil)
	}
	return x.fail(503, endConnectFailed, c.Err)
}

// stickEntry returns the request's entry in a stick table, held, or nil
// when the request has no key in it.
func (x *exchange) stickEntry(t proxy.Track) *table.Entry {
	var key []byte
	var kb [64]byte
	if t.Kind == proxy.KeySrc {
		key = x.peer.Addr().Unmap().AppendTo(kb[:0])
	} else {
		key = x.trackKey(t)
	}
	if len(key) == 0 {
		return nil
	}
	return t.Table.Acquire(key, time.Now())
}

// DialServer implements proxy.Dialer: an idle connection to srv from the
// backend's pool, or a new one.
func (x *exchange) DialServer(srv *balancer.Server) error {
	if x.be.h2 {
		return x.reserveH2(srv)
	}
	var hdr *proxyproto.Header
	if x.be.SendProxy != 0 {
		if cc, ok := x.cl.(*clientConn); ok {
			if sc := cc.takePrivate(srv); sc != nil {
				x.sc = sc
				return nil
			}
		}
		h := x.proxyHeader()
		hdr = &h
	}
	sc, err := x.be.dial(srv, false, x.resendable(), hdr, x.dialAt())
	if err != nil {
		return err
	}
	x.sc = sc
	return nil
}

// resendable reports whether forward would send the request again on a
// fresh connection, whatever the server did: lb holds it whole (no body,
// or one lb holds: bodyHeld) and its method is idempotent.
func (x *exchange) resendable() bool {
	return (x.reqLen == 0 || x.bodyHeld()) && idempotent(x.req.Method)
}

// errClientGone ends a request whose client reset its stream while the
// request waited.
var errClientGone = errors.New("the client went away while the request was queued")

// streamGone reports whether the exchange's client was an HTTP/2 stream
// that is gone (reset, or its connection lost).
func (x *exchange) streamGone() bool { return x.h2st != nil && x.h2st.Gone() }

// clientDone returns a channel closed when the exchange's HTTP/2 stream
// is gone; nil (never closed) for HTTP/1.1.
func (x *exchange) clientDone() <-chan struct{} {
	if x.h2st == nil {
		return nil
	}
	return x.h2st.Done()
}

// forward sends the request to the server and reads the response head. It
// reports whether a response head is in x.resp.
//
// A reused connection that fails before any byte of a response came was
// most likely closed by the server as lb reused it (alive checked it just
// before, but the server's FIN may be on its way). The request then goes
// once more, on a fresh connection to the same server, if lb can send it
// again (no body, or one lb holds whole: bodyHeld) and either its method
// is idempotent or the server provably never read it (its kernel reset
// the connection: serverConn.unread), whatever the method. Never after a
// response byte (the server acted on the request), nor after a timeout
// (it may be acting still), nor twice. The stale connection is not held
// against the server; the fresh one's failure is, as any failure.
func (x *exchange) forward() bool {
	held := x.bodyHeld()
	for attempt := 0; ; attempt++ {
		err, fromClient := x.send(held)
		if fromClient {
			x.takeBody(held)
			x.drop(false)
			return x.clientGone(err)
		}
		answered := false // a byte of a response came
		if err == nil {
			err, answered = x.readHead()
			if err != nil && x.up.running {
				// A failed upload explains the failed response: it
				// interrupted it, or the server gave up on the body.
				x.endUpload(true)
				if x.up.failed.Load() {
					x.drop(false)
					return x.clientGone(x.up.err)
				}
			}
		} else if x.reqLen != 0 {
			// The server may have answered (413, 401, ...) without
			// reading the body, and closed: its answer is what the client
			// must get (RFC 9112 9.5), not lb's 502.
			rerr, got := x.readHead()
			if rerr == nil {
				x.takeBody(held)
				x.early = true
				return true
			}
			answered = got
			x.resp.Reset()
		}
		if err == nil {
			x.takeBody(held)
			return true
		}
		stale := false // the server provably never read the request
		if attempt == 0 && x.sc.used && !answered && !isTimeout(err) {
			x.be.servers[x.srv].idle.noteClosed()
			replayable, idem := held || x.reqLen == 0, idempotent(x.req.Method)
			if !replayable || !idem {
				// Only a proof lets a request that is not idempotent go
				// again; it may take a wait for the server's reset.
				stale = x.sc.unread(err)
			}
			switch {
			case replayable && (idem || stale):
				x.sc.close()
				x.retries++
				var hdr *proxyproto.Header
				if x.be.SendProxy != 0 {
					h := x.proxyHeader()
					hdr = &h
				}
				sc, cerr := x.be.dial(x.srv, true, false, hdr, 0) // fresh: no pool
				if cerr == nil {
					x.sc = sc
					x.resp.Reset()
					continue
				}
				err, stale = cerr, false
				x.sc = nil
			case stale:
				err = fmt.Errorf("%w (%w)", err, errNotReplayable)
			}
		}
		x.takeBody(held)
		status, end, observed := 502, endServerError, proxy.ErrServerReset
		var he *h1.Error
		switch {
		case isTimeout(err):
			status, end, observed = 504, endServerTimeout, proxy.ErrServerTimeout
		case errors.As(err, &he):
			end, observed = endBadResponse, err
		}
		if stale {
			x.drop(false)
		} else {
			x.be.Observe(x.srv, observed)
			x.drop(true)
		}
		return x.fail(status, end, err)
	}
}

// errNotReplayable says why a request whose pooled connection the server
// had closed was not sent again.
var errNotReplayable = errors.New("the server had closed the pooled connection; the request was not sent again: its body was streamed, lb does not hold it")

// bodyHeld reports whether the whole request body is in the client
// connection's buffer (HTTP/1.1 only: an HTTP/2 body comes through the
// stream). The buffer then keeps it until the server has it, so that the
// request can go again on a fresh connection (see send and takeBody). A
// body that does not fit, or a chunked one, is streamed: not replayable.
func (x *exchange) bodyHeld() bool {
	return x.reqLen > 0 && x.reqIn != nil && x.reqBody != nil && int64(x.reqIn.Buffered()) >= x.reqLen
}

// takeBody removes a held body from the client connection's buffer, once
// a response head came or the exchange gives up: what follows it there is
// the client's next request.
func (x *exchange) takeBody(held bool) {
	if held {
		_, _ = x.reqIn.Discard(int(x.reqLen))
	}
}

// readHead reads the response head (readResponseHead); answered says
// whether any byte of a response came, after which the request is never
// sent again.
func (x *exchange) readHead() (err error, answered bool) {
	x.sr.arm()
	if x.up.failed.Load() {
		return errUploadFailed, false
	}
	if _, err := x.sc.br.Peek(1); err != nil {
		return err, false
	}
	return x.readResponseHead(), true
}

// drop closes the server connection and gives back the server's slot;
// failed counts it as the server's error. It stops the upload first.
func (x *exchange) drop(failed bool) {
	x.endUpload(true)
	if x.sc != nil {
		x.sc.close()
		x.sc = nil
	}
	if x.call != nil {
		x.call.end()
	}
	if x.srv != nil {
		if failed {
			x.srv.CountError()
		}
		x.srv.Release()
		x.srv = nil
	}
}

// send writes the request head and body to the server: at once when the
// client already sent all of the body (held: see bodyHeld), else from the
// body's own goroutine (upload), which goes on while the response comes.
// fromClient says the error came from reading the client.
func (x *exchange) send(held bool) (err error, fromClient bool) {
	sc := x.sc
	x.sw = timedWriter{w: sc.bw, Lazy: deadline.Lazy{Conn: sc.c, D: x.be.ServerTimeout, At: sc.wAt}, stop: &x.up.stop}
	x.sr = timedReader{Lazy: deadline.Lazy{Conn: sc.c, D: x.be.ServerTimeout, At: sc.rAt}, stop: &x.up.failed}
	now := x.tConnect // microseconds ago: close enough for a deadline
	if at, ok := x.sw.DueAt(now); ok {
		// One deadline for the request going out and its response coming.
		_ = sc.c.SetDeadline(at)
		x.sr.At = x.sw.At
	} else if at, ok := x.sr.DueAt(now); ok {
		_ = sc.c.SetReadDeadline(at)
	}
	if err := h1.WriteRequestHead(sc.bw, &x.req); err != nil {
		// Nothing was written. The request was checked against the
		// rules WriteRequestHead applies when it was read, so this is
		// the request's fault, never the server's: the client gets a
		// 400, and the server is not blamed.
		return &h1.Error{Status: 400, Reason: "the request cannot be forwarded: " + err.Error()}, true
	}
	if x.reqLen == 0 || x.reqBody == nil {
		// The response is read next: its deadline, just seen to, leaves
		// at least timeout.server.
		x.sr.fresh = true
		if sc.plain == nil {
			return sc.bw.Flush(), false
		}
		// Nothing more goes before the response: the head goes out
		// with the response's read (sock.Conn.DeferWrite).
		sc.plain.DeferWrite(true)
		err := sc.bw.Flush()
		sc.plain.DeferWrite(false)
		return err, false
	}
	if held {
		// The whole body is in lb already: one write sends it all. It
		// stays in the client's buffer (Peek) until forward knows the
		// server has it (takeBody), to go again if the connection turns
		// out stale.
		x.bytesIn = 0
		body, _ := x.reqIn.Peek(int(x.reqLen))
		if _, err := x.sw.Write(body); err != nil {
			return err, false
		}
		if err := sc.bw.Flush(); err != nil {
			return err, false
		}
		x.bytesIn = x.reqLen
		return nil, false
	}
	if x.reqLen < 0 {
		x.cw.Reset(sc.bw)
		x.sw.w = &x.cw
	}
	if x.upgrade != nil {
		// The body of an upgrade request goes whole before the tunnel,
		// which then owns the client connection.
		err, fromClient := x.sendBody()
		if err != nil {
			return err, fromClient
		}
		return sc.bw.Flush(), false
	}
	// The head goes out with the body's first bytes: a body that is bad
	// from its start (a smuggling attempt) sends the server nothing.
	if x.up.done == nil {
		x.up.done = make(chan struct{}, 1)
	}
	x.up.running = true
	go x.upload()
	return nil, false
}

// readResponseHead reads the server's response head, passing 1xx
// responses other than 101 on to the client.
func (x *exchange) readResponseHead() error {
	sc := x.sc
	for first := true; ; first = false {
		if !first {
			// readHead armed the deadline for the first head; a final
			// one after an interim one gets its own.
			x.sr.arm()
		}
		if x.up.failed.Load() {
			return errUploadFailed
		}
		if err := h1.ReadResponse(sc.br, &x.resp, x.f.Limits, x.req.Method); err != nil {
			return err
		}
		x.tResp = x.since()
		s := x.resp.Status
		if s == 101 && x.upgrade == nil {
			return &h1.Error{Status: 502, Reason: "101 Switching Protocols to a request that did not ask to upgrade"}
		}
		if s >= 200 || s == 101 {
			return nil
		}
		x.resp.RemoveHopByHop()
		if err := x.cl.informational(&x.resp); err != nil {
			return err
		}
		x.resp.Reset()
	}
}
