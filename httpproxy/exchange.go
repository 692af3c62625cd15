package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
	"lb/config"
	"lb/h1"
	"lb/rules"
)

// client is the side of an exchange that faces the client: HTTP/1.1 on a
// connection of its own, or one stream of an HTTP/2 connection.
type client interface {
	// informational forwards a 1xx response (not 101).
	informational(resp *h1.Response) error
	// writeHead sends the response head and returns where its body goes,
	// and the buffer under it to flush when the server's body pauses (nil
	// when every write is flushed). close says the connection ends after
	// this response.
	writeHead(resp *h1.Response, close bool) (io.Writer, *bufio.Writer, error)
	// abortBody makes a read of the request body that is under way, or
	// the next one, fail at once.
	abortBody()
	// endBody finishes the body, with the trailer fields of trailer when
	// the client can get them (nil: none), and flushes.
	endBody(trailer *h1.Head) error
	// requestTrailer returns the trailer fields that came after the
	// request body, once the body was read to its end; nil when there are
	// none. lb may change them.
	requestTrailer() *h1.Head
	// writeError sends a response lb makes itself; the connection (or
	// stream) ends after it.
	writeError(status int)
	// continue100 tells the client to send its body.
	continue100() error
}

// exchange is one request and its response. Exchanges are reused: an
// HTTP/1.1 connection keeps one, HTTP/2 streams take them from a pool.
type exchange struct {
	f    *Frontend
	cl   client
	peer netip.AddrPort
	tls  bool

	req  h1.Request
	resp h1.Response
	// reqBody reads the request body as sent by the client (decoded);
	// reqIn is the client connection's buffer under it, nil for HTTP/2.
	reqBody io.Reader
	reqIn   *bufio.Reader
	// reqLen is the body's length for the server: -1 means chunked.
	reqLen int64

	be    *Backend
	srv   *balancer.Server
	sc    *serverConn
	breq  balancer.Request
	tried [2 * (config.MaxRetries + 1)]*balancer.Server
	stuck bool // the client's cookie named the server it got
	// done is closed when the client has gone (an HTTP/2 stream reset);
	// nil for HTTP/1.1, whose client is not watched while it waits.
	done <-chan struct{}
	// early says the exchange ended before the whole request body was
	// read (the server answered early, or lb refused the body): the rest
	// may still be coming on the client connection.
	early bool
	// headSent says the response head went to the client: lb can no
	// longer answer with an error of its own.
	headSent bool
	// up sends the request body beside the response.
	up upload

	env     rules.Env
	scratch []byte
	idbuf   [64]byte
	upgrade []byte // the Upgrade header of an upgrade request

	cw  h1.ChunkedWriter
	scr h1.ChunkedReader
	sr  timedReader // the response body, from the server
	sw  timedWriter // the request body, to the server

	// Timings, for the log: when the request's first byte came, when its
	// head was read, when the server was connected, when its response
	// head came.
	tStart, tHead, tConnect, tResp time.Time
	status                         int
	bytesIn, bytesOut              int64
	retries                        int
	end                            string
	err                            error
}

// reset makes x ready for a next request, keeping its buffers.
func (x *exchange) reset() {
	req, resp, scratch := x.req, x.resp, x.scratch[:0]
	req.Reset()
	resp.Reset()
	*x = exchange{f: x.f, cl: x.cl, peer: x.peer, tls: x.tls, req: req, resp: resp, scratch: scratch,
		cw: x.cw, scr: x.scr, up: upload{done: x.up.done}}
}

// Ends of a request, as logged.
const (
	endOK            = "ok"
	endClientAborted = "client_aborted"
	endClientTimeout = "client_timeout"
	endBadRequest    = "bad_request"
	endTooLarge      = "body_too_large"
	endNoServer      = "no_server"
	endQueueTimeout  = "queue_timeout"
	endConnectFailed = "connect_failed"
	endServerError   = "server_error"
	endServerTimeout = "server_timeout"
	endBadResponse   = "bad_response"
	endTunnel        = "tunnel_closed"
)

// Errors the passive health check hears.
var (
	errServer5xx     = errors.New("server answered 5xx")
	errServerReset   = errors.New("server connection failed")
	errServerTimeout = errors.New("server timed out")
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

// requestIDs numbers generated request ids; idSeed makes them differ
// between processes.
var (
	requestIDs atomic.Uint64
	idSeed     = uint64(time.Now().UnixNano()) ^ uint64(os.Getpid())<<32
)

const hexDigits = "0123456789abcdef"

// requestID keeps the client's request id, or makes one.
func (x *exchange) requestID() []byte {
	if name := x.f.RequestIDHeader; name != "" {
		if v, ok := x.req.Get(name); ok && len(v) > 0 && len(v) <= len(x.idbuf) {
			return x.idbuf[:copy(x.idbuf[:], v)]
		}
	}
	n := balancer.Mix(requestIDs.Add(1) ^ idSeed)
	b := x.idbuf[:16]
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[n&15]
		n >>= 4
	}
	return b
}

// run serves one request whose head is in x.req, and reports whether the
// client connection may carry another one.
func (x *exchange) run() bool {
	f := x.f
	x.env.Client, x.env.Frontend, x.env.Scheme = x.peer, f.Name, f.scheme()
	x.env.RequestID = x.requestID()
	x.env.Host = x.req.Host()
	if string(x.req.Method) == "CONNECT" {
		return x.fail(405, endBadRequest, errConnect)
	}
	if f.MaxBodyBytes > 0 && x.req.Body.Kind == h1.BodyLength && x.req.Body.Length > int64(f.MaxBodyBytes) {
		return x.fail(413, endTooLarge, nil)
	}
	x.be = f.route(&x.req)
	x.env.Backend = x.be.Name()
	keep := x.req.KeepAlive
	if x.req.Upgrade {
		if v, ok := x.req.Get("Upgrade"); ok {
			x.upgrade = append(x.upgrade[:0], v...)
		}
	}
	expect := x.req.Expect100
	if !x.pickAndConnect() {
		return false
	}
	x.prepareRequest()
	if expect {
		if err := x.cl.continue100(); err != nil {
			x.drop(false)
			return x.clientGone(err)
		}
	}
	if !x.forward() {
		return false
	}
	if x.resp.Status == 101 {
		x.tunnel()
		return false
	}
	if x.early {
		keep = false
	}
	return x.respond(keep && !f.draining.Load())
}

// fail answers the client with an error of lb's own and ends the
// connection.
func (x *exchange) fail(status int, end string, err error) bool {
	x.status, x.end, x.err = status, end, err
	// A chunked body may go on whatever lb read of it.
	if x.reqLen < 0 || x.bytesIn < x.reqLen {
		x.early = true
	}
	x.cl.writeError(status)
	x.finish(false)
	return false
}

// clientGone ends an exchange whose client went away, stalled or sent a
// bad body. Before the response head went out, lb answers what it can.
func (x *exchange) clientGone(err error) bool {
	status, end := 0, endClientAborted
	var he *h1.Error
	switch {
	case errors.As(err, &he): // a bad chunk (400), a trailer section over the limits (431)
		status, end = he.Status, endBadRequest
	case errors.Is(err, errBodyTooLarge):
		status, end = 413, endTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		status, end = 408, endClientTimeout
	}
	if status != 0 && !x.headSent {
		return x.fail(status, end, err)
	}
	x.end, x.err = end, err
	x.finish(false)
	return false
}

// pickAndConnect chooses a server and connects to it, trying others after
// a failed connect, and waiting in the queue when every server is full.
func (x *exchange) pickAndConnect() bool {
	be := x.be
	r := &x.breq
	r.Tried = x.tried[:0]
	r.Hash = x.hashKey()
	var sticky *balancer.Server
	if be.Cookie != "" {
		if v := cookieValue(&x.req.Head, be.Cookie); v != nil {
			sticky = be.Pool.Lookup(string(v))
		}
	}
	attempts := 0
	for attempts <= be.Retries {
		var srv *balancer.Server
		if sticky != nil && attempts == 0 && be.Pool.AcquireSticky(sticky) {
			srv = sticky
		} else {
			srv = be.Pool.Pick(r)
		}
		if srv == nil && attempts == 0 && be.QueueTimeout > 0 && be.Pool.Available() {
			// Every server that could take it is full: wait in the queue.
			if srv = be.Pool.Wait(r, time.Now().Add(be.QueueTimeout), x.done); srv == nil {
				if x.done != nil && isClosed(x.done) {
					return x.clientGone(errClientGone)
				}
				return x.fail(503, endQueueTimeout, nil)
			}
		}
		if srv == nil {
			break
		}
		attempts++
		sc, err := be.connect(srv, false)
		if err == nil {
			// The passive check hears of this server when the response
			// comes: a success here would reset a count of 5xx answers.
			x.sc, x.srv, x.stuck = sc, srv, srv == sticky
			x.tConnect = time.Now()
			x.retries = attempts - 1
			x.env.Server, x.env.ServerAddr = srv.Name, srv.Addr
			return true
		}
		be.Observe(srv, err)
		srv.CountError()
		srv.Release()
		x.err = err
		r.Tried = append(r.Tried, srv)
		x.f.Log.Warn().Str("frontend", x.f.Name).Str("backend", be.Name()).Str("server", srv.Name).
			Str("address", srv.Addr).Err(err).Int("attempt", attempts).Msg("connect failed")
	}
	x.retries = max(attempts-1, 0)
	if attempts == 0 {
		return x.fail(503, endNoServer, nil)
	}
	return x.fail(503, endConnectFailed, x.err)
}

// errClientGone ends a request whose client reset its stream while the
// request waited.
var errClientGone = errors.New("the client went away while the request was queued")

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// hashKey returns the request's key for hash balancing, or a key that
// spreads requests without one.
func (x *exchange) hashKey() uint64 {
	var key []byte
	switch x.be.Hash.Kind {
	case "":
		return balancer.HashAddr(x.peer.Addr())
	case config.HashURI:
		key = x.req.Target
	case config.HashPath:
		key = x.req.Path()
	case config.HashHeader:
		key, _ = x.req.Get(x.be.Hash.Name)
	case config.HashCookie:
		key = cookieValue(&x.req.Head, x.be.Hash.Name)
	}
	if len(key) == 0 {
		return balancer.Mix(requestIDs.Add(1) ^ idSeed)
	}
	return balancer.HashBytes(key)
}

// cookieValue returns the value of the cookie name in h's Cookie fields, or
// nil.
func cookieValue(h *h1.Head, name string) []byte {
	for i := h.Index("Cookie", 0); i >= 0; i = h.Index("Cookie", i+1) {
		v := h.Fields[i].Value
		for len(v) > 0 {
			var pair []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				pair, v = v[:j], v[j+1:]
			} else {
				pair, v = v, nil
			}
			pair = bytes.TrimSpace(pair)
			if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
				return bytes.Trim(pair[len(name)+1:], `"`)
			}
		}
	}
	return nil
}

// prepareRequest turns the client's request head into the server's:
// hop-by-hop fields out, framing and X-Forwarded-* in, header rules
// applied.
func (x *exchange) prepareRequest() {
	req, f := &x.req, x.f
	req.Del("Expect")
	req.RemoveHopByHop()
	if x.reqLen < 0 {
		req.CleanTrailerHeader()
	} else {
		req.Del("Trailer") // no trailer section can follow
	}
	if t := req.Target; len(t) > 0 && t[0] != '/' && t[0] != '*' {
		// Absolute form: servers get the origin form, and the authority
		// as Host (RFC 9112 3.2.2).
		host := req.Host()
		req.Set("Host", host)
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			rest := t[i+3:]
			j := bytes.IndexAny(rest, "/?")
			switch {
			case j < 0:
				req.Target = append(req.Target[:0:0], '/')
			case rest[j] == '?':
				req.Target = append([]byte{'/'}, rest[j:]...)
			default:
				req.Target = rest[j:]
			}
		}
	}
	if x.upgrade != nil {
		req.Set("Connection", []byte("Upgrade"))
		req.Set("Upgrade", x.upgrade)
	}
	switch {
	case x.reqLen < 0:
		req.Del("Content-Length")
		req.Set("Transfer-Encoding", []byte("chunked"))
	case x.reqLen > 0:
		req.Set("Content-Length", strconv.AppendInt(x.scratch[:0], x.reqLen, 10))
	}

	// X-Forwarded-For: the client's address appended to what came.
	b := x.scratch[:0]
	for i := req.Index("X-Forwarded-For", 0); i >= 0; i = req.Index("X-Forwarded-For", i+1) {
		if v := req.Fields[i].Value; len(v) > 0 {
			b = append(append(b, v...), ", "...)
		}
	}
	b = x.peer.Addr().Unmap().AppendTo(b)
	req.Set("X-Forwarded-For", b)
	req.Set("X-Forwarded-Proto", []byte(x.env.Scheme))
	if host := req.Host(); len(host) > 0 {
		req.Set("X-Forwarded-Host", host)
	}
	if f.Forwarded {
		b = b[:0]
		for i := req.Index("Forwarded", 0); i >= 0; i = req.Index("Forwarded", i+1) {
			if v := req.Fields[i].Value; len(v) > 0 {
				b = append(append(b, v...), ", "...)
			}
		}
		b = append(b, "for="...)
		if a := x.peer.Addr().Unmap(); a.Is6() {
			b = append(b, `"[`...)
			b = a.AppendTo(b)
			b = append(b, `]"`...)
		} else {
			b = a.AppendTo(b)
		}
		b = append(append(b, ";proto="...), x.env.Scheme...)
		if host := req.Host(); len(host) > 0 {
			b = strconv.AppendQuote(append(b, ";host="...), string(host))
		}
		req.Set("Forwarded", b)
	}
	if f.RequestIDHeader != "" {
		req.Set(f.RequestIDHeader, x.env.RequestID)
	}
	x.scratch = b[:0]
	for _, r := range f.ReqRules {
		x.scratch = r.Apply(req, &x.env, x.scratch[:0])
	}
	for _, r := range x.be.ReqRules {
		x.scratch = r.Apply(req, &x.env, x.scratch[:0])
	}
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
				sc, cerr := x.be.connect(x.srv, true)
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
		status, end, observed := 502, endServerError, errServerReset
		var he *h1.Error
		switch {
		case isTimeout(err):
			status, end, observed = 504, endServerTimeout, errServerTimeout
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
	x.sw = timedWriter{w: sc.bw, lazyDeadline: lazyDeadline{c: sc.c, d: x.be.ServerTimeout}, stop: &x.up.stop}
	x.sr = timedReader{lazyDeadline: lazyDeadline{c: sc.c, d: x.be.ServerTimeout}, stop: &x.up.failed}
	if at, ok := x.sw.due(); ok {
		// One deadline for the request going out and its response coming.
		_ = sc.c.SetDeadline(at)
		x.sr.at = x.sw.at
	}
	if err := h1.WriteRequestHead(sc.bw, &x.req); err != nil {
		// Nothing was written. The request was checked against the
		// rules WriteRequestHead applies when it was read, so this is
		// the request's fault, never the server's: the client gets a
		// 400, and the server is not blamed.
		return &h1.Error{Status: 400, Reason: "the request cannot be forwarded: " + err.Error()}, true
	}
	if x.reqLen == 0 || x.reqBody == nil {
		return sc.bw.Flush(), false
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

// sendBody copies the request body to the server, x.bytesIn counting it.
func (x *exchange) sendBody() (err error, fromClient bool) {
	n, err, fromClient := copyBody(&x.sw, x.sc.bw, x.reqBody, x.reqIn, x.f.MaxBodyBytes)
	x.bytesIn = n
	if err == nil && x.reqLen > 0 && n < x.reqLen {
		err, fromClient = io.ErrUnexpectedEOF, true
	}
	if err == nil && x.reqLen < 0 {
		// The body ended with its trailer section (or could not end
		// otherwise): the fields that may be trailers go on.
		tr := x.cl.requestTrailer()
		if tr != nil {
			tr.RemoveDisallowedTrailers()
		}
		err = x.cw.CloseTrailer(tr)
	}
	return err, fromClient
}

// upload is the request body going to the server while the response
// comes back, so that a server that answers as it reads (a streaming
// echo) or before it reads (an early 413) is not stalled by lb: it is
// the goroutine of one exchange, ended by endUpload. A client that fails
// the body interrupts the response.
type upload struct {
	done    chan struct{} // the upload ended; buffered, made once per exchange
	running bool          // started and not yet joined; the exchange's own
	// stop makes the upload end: its next or current read or write fails.
	stop atomic.Bool
	// failed says the client failed the body (went away, stalled, sent too
	// much or bad chunks) while the upload was not stopped: the response
	// reads fail at once.
	failed atomic.Bool
	// The outcome, read after done.
	err        error
	fromClient bool
}

// upload sends the body; see the upload type.
func (x *exchange) upload() {
	err, fromClient := x.sendBody()
	if err == nil {
		err = x.sc.bw.Flush()
	}
	x.up.err, x.up.fromClient = err, fromClient
	if err != nil && fromClient && !x.up.stop.Load() {
		x.up.failed.Store(true)
		_ = x.sc.c.SetReadDeadline(time.Unix(1, 0))
	}
	x.up.done <- struct{}{}
}

// endUpload waits for the upload to end, if one runs; stop makes it end
// at once rather than send the rest of the body.
func (x *exchange) endUpload(stop bool) {
	if !x.up.running {
		return
	}
	if stop {
		select {
		case <-x.up.done:
			x.up.running = false
			return
		default:
		}
		x.up.stop.Store(true)
		x.cl.abortBody()
		_ = x.sc.c.SetWriteDeadline(time.Unix(1, 0))
		<-x.up.done
		x.up.running = false
		if x.up.err == nil {
			// The body had all gone: the connection may serve again.
			_ = x.sc.c.SetWriteDeadline(time.Time{})
		}
		return
	}
	<-x.up.done
	x.up.running = false
}

// errConnect refuses CONNECT: lb is a reverse proxy, not a forward one.
var errConnect = errors.New("CONNECT is not supported")

// errUploadFailed ends the response of a request whose body the client
// failed to send.
var errUploadFailed = errors.New("the request body failed")

// errBodyTooLarge is a chunked body that went over max_body_bytes.
var errBodyTooLarge = errors.New("request body over max_body_bytes")

// readResponseHead reads the server's response head, passing 1xx
// responses other than 101 on to the client.
func (x *exchange) readResponseHead() error {
	sc := x.sc
	for {
		x.sr.arm()
		if x.up.failed.Load() {
			return errUploadFailed
		}
		if err := h1.ReadResponse(sc.br, &x.resp, x.f.Limits, x.req.Method); err != nil {
			return err
		}
		x.tResp = time.Now()
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

// respond sends the response to the client; keep says the client may
// carry on with the connection. It reports whether the connection goes on.
func (x *exchange) respond(keep bool) bool {
	resp, be, f := &x.resp, x.be, x.f
	x.status = resp.Status
	serverKeep := resp.KeepAlive && !x.early
	if x.up.running && !resp.KeepAlive {
		// The server answers and closes before it has the whole body:
		// lb will close too, and says so, so that the client stops
		// sending (RFC 9112 9.5).
		keep = false
	}
	if x.req.Minor == 0 && (resp.Body.Kind == h1.BodyChunked || resp.Body.Kind == h1.BodyUntilClose) {
		keep = false // an HTTP/1.0 client learns where the body ends from the close
	}
	resp.RemoveHopByHop()
	switch resp.Body.Kind {
	case h1.BodyChunked:
		resp.CleanTrailerHeader()
	case h1.BodyLength, h1.BodyUntilClose:
		resp.Del("Trailer") // no trailer section can follow
	}
	if be.Cookie != "" && !x.stuck {
		b := append(x.scratch[:0], be.Cookie...)
		b = append(append(append(b, '='), x.srv.Name...), "; Path=/; HttpOnly"...)
		if x.tls {
			b = append(b, "; Secure"...)
		}
		resp.Add("Set-Cookie", b)
		x.scratch = b[:0]
	}
	for _, r := range be.RespRules {
		x.scratch = r.Apply(resp, &x.env, x.scratch[:0])
	}
	for _, r := range f.RespRules {
		x.scratch = r.Apply(resp, &x.env, x.scratch[:0])
	}
	if resp.Status >= 500 && resp.Status != 501 && resp.Status != 505 {
		be.Observe(x.srv, errServer5xx)
	} else {
		be.Observe(x.srv, nil)
	}
	w, out, err := x.cl.writeHead(resp, !keep)
	if err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	x.headSent = true
	sc := x.sc
	var src io.Reader
	switch resp.Body.Kind {
	case h1.BodyLength:
		src = io.LimitReader(sc.br, resp.Body.Length)
	case h1.BodyChunked:
		x.scr.Reset(sc.br, x.f.Limits)
		src = &x.scr
	case h1.BodyUntilClose:
		src = sc.br
		serverKeep = false
	}
	if src != nil {
		x.sr.r = src
		n, err, fromServer := copyBody(w, out, &x.sr, sc.br, 0)
		x.bytesOut = n
		if err == nil && resp.Body.Kind == h1.BodyLength && n < resp.Body.Length {
			err, fromServer = io.ErrUnexpectedEOF, true
		}
		if err != nil && x.up.running {
			x.endUpload(true)
			if x.up.failed.Load() {
				x.drop(false)
				return x.clientGone(x.up.err)
			}
		}
		if err != nil {
			if fromServer {
				// The response is cut: the client must see it as such.
				be.Observe(x.srv, errServerReset)
				x.drop(true)
				x.end, x.err = endServerError, err
				if isTimeout(err) {
					x.end = endServerTimeout
				}
				x.finish(false)
				return false
			}
			x.drop(false)
			return x.clientGone(err)
		}
	}
	var trailer *h1.Head
	if resp.Body.Kind == h1.BodyChunked {
		if trailer = x.scr.Trailer(); trailer != nil {
			trailer.RemoveDisallowedTrailers()
		}
	}
	if err := x.cl.endBody(trailer); err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	if x.up.running {
		// The response is complete: a server that wanted the rest of the
		// body has had it; the rest is not for it.
		x.endUpload(true)
		if x.up.err != nil {
			x.early, serverKeep, keep = true, false, false
		}
	}
	be.release(sc, serverKeep)
	x.sc = nil
	x.srv.Release()
	x.srv = nil
	x.end = endOK
	x.finish(true)
	return keep
}

// copyBufs are the buffers bodies are copied through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody copies src to dst until src ends; limit > 0 bounds the bytes
// copied. The error says whether it came from src (fromSrc) or from dst.
// When out, the buffer under dst, holds data and in, the buffer under src,
// is empty (so the next read may wait for the peer), out is flushed: a
// body streamed in pieces (server-sent events, a streaming echo) moves on
// piece by piece, and a body at hand goes in as few writes as it can.
func copyBody(dst io.Writer, out *bufio.Writer, src io.Reader, in *bufio.Reader, limit int) (n int64, err error, fromSrc bool) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if limit > 0 && n+int64(nr) > int64(limit) {
				return n, errBodyTooLarge, true
			}
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr, false
			}
			if out != nil && out.Buffered() > 0 && (in == nil || in.Buffered() == 0) {
				if werr := out.Flush(); werr != nil {
					return n, werr, false
				}
			}
		}
		if rerr == io.EOF {
			return n, nil, false
		}
		if rerr != nil {
			return n, rerr, true
		}
	}
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// finish logs the exchange.
func (x *exchange) finish(ok bool) {
	f := x.f
	e := f.Log.Info()
	if !ok && x.status >= 500 {
		e = f.Log.Warn()
	}
	if e == nil {
		return
	}
	now := time.Now()
	var buf [64]byte
	e = e.Bytes("client", x.peer.AppendTo(buf[:0])).Str("frontend", f.Name)
	if x.be != nil {
		e = e.Str("backend", x.be.Name())
	}
	if x.env.Server != "" {
		e = e.Str("server", x.env.Server)
	}
	e = e.Bytes("method", x.req.Method).Bytes("host", x.req.Host()).Bytes("path", x.req.Path()).
		Int("status", x.status).Int64("bytes_in", x.bytesIn).Int64("bytes_out", x.bytesOut).
		Bytes("request_id", x.env.RequestID)
	if x.retries > 0 {
		e = e.Int("retries", x.retries)
	}
	e = e.Dur("t_request", x.tHead.Sub(x.tStart))
	if !x.tConnect.IsZero() {
		e = e.Dur("t_connect", x.tConnect.Sub(x.tHead))
	}
	if !x.tResp.IsZero() {
		e = e.Dur("t_response", x.tResp.Sub(x.tHead))
	}
	e = e.Dur("t_total", now.Sub(x.tStart)).Str("end", x.end)
	if x.err != nil {
		e = e.Err(x.err)
	}
	e.Msg("request")
}

// statusText is the reason and the body of the responses lb makes.
func statusText(status int) (reason, body string) {
	switch status {
	case 400:
		return "Bad Request", "lb: the request is malformed\n"
	case 408:
		return "Request Timeout", "lb: the request did not arrive in time\n"
	case 405:
		return "Method Not Allowed", "lb: CONNECT is not supported: lb is a reverse proxy\n"
	case 413:
		return "Content Too Large", "lb: the request body is too large\n"
	case 414:
		return "URI Too Long", "lb: the request target is too long\n"
	case 431:
		return "Request Header Fields Too Large", "lb: the request header is too large\n"
	case 501:
		return "Not Implemented", "lb: the request uses a transfer coding lb does not implement\n"
	case 502:
		return "Bad Gateway", "lb: the server failed to answer\n"
	case 503:
		return "Service Unavailable", "lb: no server is available to answer\n"
	case 504:
		return "Gateway Timeout", "lb: the server did not answer in time\n"
	case 505:
		return "HTTP Version Not Supported", "lb: lb speaks HTTP/1.0 and HTTP/1.1 here\n"
	}
	return "Error", fmt.Sprintf("lb: error %d\n", status)
}

// errorResponses are the complete responses lb makes, closing the
// connection, rendered once.
var errorResponses = func() map[int][]byte {
	m := map[int][]byte{}
	for _, s := range []int{400, 405, 408, 413, 414, 431, 501, 502, 503, 504, 505} {
		reason, body := statusText(s)
		m[s] = fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n%s",
			s, reason, len(body), body)
	}
	return m
}()
