package httpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
	"lb/h1"
	"lb/h2pool"
	"lb/proxy"
	"lb/rules"
)

// A backend with proto = "h2" speaks HTTP/2 to its servers. Its requests go
// through the same exchange as HTTP/1.1 ones up to the server: rules,
// routing, the pick of a server (whose slot counts the request as a
// stream), the head prepared for the server. Then, in place of forward and
// respond, the request goes as one stream of a pooled HTTP/2 connection
// to that server (package h2pool, net/http's HTTP/2 client), its body
// streamed both ways at once: gRPC's streaming calls work over it. The
// response comes back through the same steps as an HTTP/1.1 one: response
// rules, cookie, passive check, head, body, trailer.

// UseHTTP2 makes the backend speak HTTP/2 to its servers: over TLS (h2 by
// ALPN) to the servers SetServerTLS gave a configuration, in cleartext
// with prior knowledge (h2c) to the others. Call it after SetServerTLS,
// before the backend serves.
func (b *Backend) UseHTTP2() {
	b.h2 = true
	for srv, up := range b.servers {
		up.h2 = h2pool.New(h2pool.Options{
			Addr: srv.Addr, TLS: up.tls, ConnectTimeout: b.ConnectTimeout,
			Dial: func(context.Context) (net.Conn, error) {
				c, err := b.Dial(srv)
				if err != nil {
					return nil, err
				}
				_ = c.SetNoDelay(true)
				return c, nil
			},
		})
	}
}

// HTTP2 reports whether the backend speaks HTTP/2 to its servers.
func (b *Backend) HTTP2() bool { return b.h2 }

// h2Call is one request to an HTTP/2 server: the stream reserved on a
// pooled connection, the request as net/http takes it, and the response.
// A call is made per request, not pooled: net/http may still read the
// request (its body, on its own goroutine) after RoundTrip returned.
type h2Call struct {
	x        *exchange
	cc       *http.ClientConn
	fresh    bool // cc was opened for this request
	reserved bool // cc holds a reservation that RoundTrip has not used
	req      *http.Request
	resp     *http.Response

	cancel context.CancelFunc
	// idle cancels the call when neither side moved for timeout.server;
	// expired says it did.
	idle    *time.Timer
	expired atomic.Bool

	body    *h2Body // nil without a request body
	attempt *h2Attempt
	respIn  h2RespBody
	trailer h1.Head // the response's trailer, for the client
	info    h1.Response
}

// reserveH2 is DialServer for an HTTP/2 backend: a stream reserved on a
// connection to srv, opened if none has room.
func (x *exchange) reserveH2(srv *balancer.Server) error {
	cc, fresh, err := x.be.servers[srv].h2.Get(context.Background())
	if err != nil {
		return err
	}
	c := x.call
	if c == nil {
		c = &h2Call{x: x}
		c.respIn.c = c
		x.call = c
	}
	c.cc, c.fresh, c.reserved = cc, fresh, true
	return nil
}

// reused reports whether the server connection served requests before.
func (x *exchange) reused() bool {
	if x.call != nil {
		return !x.call.fresh
	}
	return x.sc.used
}

// buildH2Request makes the request for net/http from the head prepared
// for the server (prepareRequest): its connection-specific fields left
// out, its body read through the call's h2Body.
func (c *h2Call) buildH2Request() {
	x := c.x
	req := &x.req
	u := &url.URL{Scheme: "http", Host: x.srv.Addr}
	if x.be.servers[x.srv].tls != nil {
		u.Scheme = "https"
	}
	path := string(req.Target)
	if i := indexByte(path, '?'); i >= 0 {
		u.Opaque, u.RawQuery, u.ForceQuery = path[:i], path[i+1:], true
	} else {
		u.Opaque = path
	}
	h := make(http.Header, len(req.Fields)+1)
	for _, f := range req.Fields {
		name := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		switch name {
		case "Host", "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Content-Length", "Trailer":
			continue
		}
		h[name] = append(h[name], string(f.Value))
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // net/http would add its own
	}
	r := &http.Request{Method: string(req.Method), URL: u, Header: h, Host: string(req.Host())}
	if x.reqBody != nil && x.reqLen != 0 {
		b := &h2Body{c: c, r: x.reqBody, cl: x.cl, limit: int64(x.f.MaxBodyBytes)}
		b.keep.Store(true)
		b.replay.Store(true)
		c.body = b
		c.attempt = b.attempt(nil)
		r.Body, r.ContentLength = c.attempt, x.reqLen
		if x.reqLen < 0 {
			// The trailer fields the client announced go after the body.
			for i := req.Index("Trailer", 0); i >= 0; i = req.Index("Trailer", i+1) {
				for _, name := range splitList(string(req.Fields[i].Value)) {
					if r.Trailer == nil {
						r.Trailer = http.Header{}
					}
					r.Trailer[textproto.CanonicalMIMEHeaderKey(name)] = nil
				}
			}
			b.trailer = r.Trailer
		}
	}
	parent := context.Background()
	if s, ok := x.cl.(*h2Stream); ok {
		parent = s.st.Context() // the client's reset cancels the call
	}
	ctx, cancel := context.WithCancel(parent)
	c.cancel = cancel
	c.req = r.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: c.got1xx}))
	if d := x.be.ServerTimeout; d > 0 {
		c.idle = time.AfterFunc(d, c.expire)
	}
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// splitList splits a comma-separated header value, dropping spaces and
// empty elements.
func splitList(v string) []string {
	var out []string
	for len(v) > 0 {
		i := indexByte(v, ',')
		e := v
		if i >= 0 {
			e, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		for len(e) > 0 && (e[0] == ' ' || e[0] == '\t') {
			e = e[1:]
		}
		for len(e) > 0 && (e[len(e)-1] == ' ' || e[len(e)-1] == '\t') {
			e = e[:len(e)-1]
		}
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// expire is the idle timer: timeout.server passed with nothing moving.
func (c *h2Call) expire() {
	c.expired.Store(true)
	c.cancel()
}

// touch notes that the call moved: the idle timer starts again.
func (c *h2Call) touch() {
	if c.idle != nil {
		c.idle.Reset(c.x.be.ServerTimeout)
	}
}

// got1xx passes an interim response on to the client (not 100: lb
// answered the client's Expect itself). net/http calls it from the
// connection's reader while RoundTrip waits for the final response.
func (c *h2Call) got1xx(code int, h textproto.MIMEHeader) error {
	if code == 100 {
		return nil
	}
	c.touch()
	r := &c.info
	r.Reset()
	r.Minor, r.Status = 1, code
	for name, vs := range h {
		for _, v := range vs {
			r.AddString(name, v)
		}
	}
	return c.x.cl.informational(r)
}

// h2Body is the request body of an HTTP/2 call: read from the client
// once, counted and bounded, with the client's trailer fields filled in at
// its end, and given to net/http through an h2Attempt per RoundTrip.
// Until the response head comes, it keeps what it read (up to
// maxReplayBody), so that a request the server did not process can go
// again on another connection, its body included. end stops it before the
// client's side is reused: net/http may read it after RoundTrip returned.
type h2Body struct {
	c       *h2Call
	r       io.Reader
	cl      client
	trailer http.Header
	limit   int64 // max_body_bytes; 0: none
	// reading is held by a read and guards the fields below it; over
	// says the exchange ended, after which no read reaches r.
	reading sync.Mutex
	over    atomic.Bool
	n       atomic.Int64
	eof     atomic.Bool // the whole body was read
	// keep says the body read is kept in kept for another attempt;
	// replay says every byte read is in kept.
	keep   atomic.Bool
	replay atomic.Bool
	kept   []byte
	errMu  sync.Mutex
	err    error // the client's side failed
}

// maxReplayBody bounds the body kept for a request that may go again.
const maxReplayBody = 64 << 10

// h2Attempt is the request body as one RoundTrip reads it, on a
// goroutine of net/http's: the body kept first, then the rest from the
// client. An attempt given up (dead) reads no more.
type h2Attempt struct {
	b    *h2Body
	pos  int
	dead atomic.Bool
}

// attempt returns a reader of the whole body for a RoundTrip; a previous
// attempt reads no more.
func (b *h2Body) attempt(prev *h2Attempt) *h2Attempt {
	if prev != nil {
		prev.dead.Store(true)
	}
	return &h2Attempt{b: b}
}

// errBodyOver is a read of a request body after its exchange ended.
var errBodyOver = errors.New("the request is over")

func (a *h2Attempt) Read(p []byte) (int, error) {
	b := a.b
	b.reading.Lock()
	defer b.reading.Unlock()
	if b.over.Load() || a.dead.Load() {
		return 0, errBodyOver
	}
	if a.pos < len(b.kept) {
		n := copy(p, b.kept[a.pos:])
		a.pos += n
		return n, nil
	}
	if !b.keep.Load() && b.kept != nil {
		b.kept, a.pos = nil, 0 // all of it was read again
	}
	switch {
	case b.eof.Load():
		return 0, io.EOF
	case b.failed() != nil:
		return 0, b.failed()
	}
	n, err := b.r.Read(p)
	total := b.n.Add(int64(n))
	if n > 0 {
		b.c.touch()
		if b.keep.Load() {
			if len(b.kept)+n <= maxReplayBody {
				b.kept = append(b.kept, p[:n]...)
				a.pos += n
			} else {
				b.keep.Store(false)
				b.replay.Store(false)
				b.kept = nil
			}
		}
	}
	switch {
	case b.limit > 0 && total > b.limit:
		err = errBodyTooLarge
		b.setErr(err)
	case err == io.EOF:
		if b.trailer != nil {
			if t := b.cl.requestTrailer(); t != nil {
				for _, f := range t.Fields {
					name := textproto.CanonicalMIMEHeaderKey(string(f.Name))
					b.trailer[name] = append(b.trailer[name], string(f.Value))
				}
			}
		}
		b.eof.Store(true)
	case err != nil:
		b.setErr(err)
	}
	return n, err
}

func (a *h2Attempt) Close() error { return nil }

func (b *h2Body) setErr(err error) {
	b.errMu.Lock()
	b.err = err
	b.errMu.Unlock()
}

// answered says the response head came: the body is not kept any more.
func (b *h2Body) answered() {
	if b != nil {
		b.keep.Store(false)
		b.replay.Store(false)
	}
}

// h2RespBody reads the response body from the server for the client,
// keeping the idle timer fresh.
type h2RespBody struct {
	c *h2Call
	r io.Reader
}

func (b *h2RespBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.c.touch()
	}
	return n, err
}

// forwardH2 sends the request to the HTTP/2 server and reads the response
// head into x.resp. It reports whether it did; if not, the exchange is
// over.
//
// A request the server provably did not process (h2pool.Unsent: a
// refused stream, a GOAWAY before its stream) goes again on another
// connection to the same server, twice at most, whatever its method, if
// lb still has all of its body that it read (see h2Body).
func (x *exchange) forwardH2() bool {
	c := x.call
	c.buildH2Request()
	for attempt := 0; ; attempt++ {
		c.reserved = false
		resp, err := c.cc.RoundTrip(c.req)
		if err == nil {
			c.resp = resp
			c.respIn.r = resp.Body
			c.body.answered()
			break
		}
		switch {
		case c.body.failed() != nil:
			x.bytesIn = c.body.count()
			x.drop(false)
			return x.clientGone(c.body.failed())
		case x.done != nil && isClosed(x.done):
			x.drop(false)
			return x.clientGone(errClientGone)
		}
		if attempt < 2 && h2pool.Unsent(err) && c.body.replayable() {
			cc, fresh, gerr := x.be.servers[x.srv].h2.Get(c.req.Context())
			if gerr == nil {
				c.cc, c.fresh, c.reserved = cc, fresh, true
				x.retries++
				if c.body != nil {
					// A request of its own: net/http may still hold
					// the last one.
					r := *c.req
					c.attempt = c.body.attempt(c.attempt)
					r.Body = c.attempt
					c.req = &r
				}
				continue
			}
			err = gerr
		}
		return x.failH2(err)
	}
	x.tResp = time.Now()
	c.responseHead()
	if c.resp.ContentLength == 0 && x.resp.Body.Kind == h1.BodyLength {
		// An empty body: its end, and the trailer that may come after
		// it, are awaited, so that a response that is a head alone
		// (gRPC's trailers-only answers, which carry the call's status)
		// goes to an HTTP/2 client as a head that ends the stream.
		if _, err := io.Copy(io.Discard, &c.respIn); err != nil {
			if x.done != nil && isClosed(x.done) {
				x.drop(false)
				return x.clientGone(errClientGone)
			}
			return x.failH2(err)
		}
		if len(c.resp.Trailer) == 0 {
			x.resp.Body = h1.Body{} // its Content-Length: 0 stays
		} else {
			x.resp.Body = h1.Body{Kind: h1.BodyChunked}
			x.resp.Del("Content-Length")
		}
	}
	return true
}

// failH2 ends an exchange whose server failed before the response head
// went to the client: 504 when timeout.server passed, else 502.
func (x *exchange) failH2(err error) bool {
	status, end, observed := 502, endServerError, proxy.ErrServerReset
	if x.call.expired.Load() {
		status, end, observed = 504, endServerTimeout, proxy.ErrServerTimeout
	}
	x.bytesIn = x.call.body.count()
	x.be.Observe(x.srv, observed)
	x.drop(true)
	return x.fail(status, end, err)
}

// responseHead puts the server's response head in x.resp, as an HTTP/1.1
// response with the framing a client of either version needs: a length
// when the server gave one, chunked when it did not or when trailer fields
// follow.
func (c *h2Call) responseHead() {
	x, resp := c.x, c.resp
	r := &x.resp
	r.Minor, r.Status, r.KeepAlive = 1, resp.StatusCode, true
	for name, vs := range resp.Header {
		for _, v := range vs {
			r.AddString(name, v)
		}
	}
	switch s := resp.StatusCode; {
	case string(x.req.Method) == "HEAD", s == 204, s == 304:
		r.Body = h1.Body{}
	case resp.ContentLength >= 0 && len(resp.Trailer) == 0:
		// (A response that announces trailer fields goes chunked to an
		// HTTP/1.1 client, which can get them only so.)
		r.Body = h1.Body{Kind: h1.BodyLength, Length: resp.ContentLength}
		r.Set("Content-Length", strconv.AppendInt(x.scratch[:0], resp.ContentLength, 10))
	default:
		r.Body = h1.Body{Kind: h1.BodyChunked}
		r.Del("Content-Length")
	}
}

// respondH2 is respond for a response from an HTTP/2 server: the steps
// are the same, the body and the trailer come from net/http.
func (x *exchange) respondH2(keep bool) bool {
	c := x.call
	x.status = x.resp.Status
	keep = x.keepClient(keep)
	if r := x.responseRules(); r != nil && r.Action == rules.Deny {
		x.observeResponse()
		whole := c.body.whole()
		x.drop(false)
		if x.f.Counts != nil {
			x.f.Counts.DeniedResps.Add(1)
		}
		x.end = endDenied
		return x.writeAnswer(r, keep && whole)
	}
	x.prepareResponse()
	x.observeResponse()
	w, out, err := x.cl.writeHead(&x.resp, !keep)
	if err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	x.headSent = true
	if x.resp.Body.Kind != h1.BodyNone {
		n, err, fromServer := copyBody(w, out, &c.respIn, nil, 0)
		x.bytesOut = n
		if err == nil && x.resp.Body.Kind == h1.BodyLength && n < x.resp.Body.Length {
			err, fromServer = io.ErrUnexpectedEOF, true
		}
		if err != nil {
			return x.responseCutH2(err, fromServer)
		}
	}
	if err := x.cl.endBody(c.responseTrailer()); err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	if !c.body.whole() {
		// The server answered before it had the whole body: the rest
		// is still coming on an HTTP/1.1 client's connection.
		x.early, keep = true, false
	}
	x.bytesIn = c.body.count()
	x.drop(false)
	x.end = endOK
	x.finish(true)
	return keep
}

// responseCutH2 is responseCut for an HTTP/2 server's response.
func (x *exchange) responseCutH2(err error, fromServer bool) bool {
	c := x.call
	x.bytesIn = c.body.count()
	switch {
	case c.body.failed() != nil:
		err = c.body.failed()
		x.drop(false)
		return x.clientGone(err)
	case !fromServer, x.done != nil && isClosed(x.done):
		x.drop(false)
		return x.clientGone(err)
	}
	x.end, x.err = endServerError, err
	observed := proxy.ErrServerReset
	if c.expired.Load() {
		x.end, observed = endServerTimeout, proxy.ErrServerTimeout
	}
	x.be.Observe(x.srv, observed)
	x.drop(true)
	x.finish(false)
	return false
}

// responseTrailer returns the server's trailer fields that may go on to
// the client, or nil.
func (c *h2Call) responseTrailer() *h1.Head {
	if len(c.resp.Trailer) == 0 {
		return nil
	}
	t := &c.trailer
	t.Reset()
	for name, vs := range c.resp.Trailer {
		for _, v := range vs {
			t.AddString(name, v)
		}
	}
	t.RemoveDisallowedTrailers()
	return t
}

// end closes the call: the response body (which resets the stream if the
// server is not done with it), the reservation it did not use, the
// client's body, which net/http may still be reading.
func (c *h2Call) end() {
	x := c.x
	if c.resp != nil {
		_ = c.resp.Body.Close()
	}
	if c.reserved {
		c.cc.Release()
		c.reserved = false
	}
	if c.cancel != nil {
		c.cancel()
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	c.body.end()
	x.call = nil
}

// end stops the body: a read under way fails at once (the client's
// abortBody) and returns before end does, and later ones fail without
// touching the client's side, which can then be reused.
func (b *h2Body) end() {
	if b == nil || b.over.Swap(true) {
		return
	}
	if !b.eof.Load() {
		b.cl.abortBody()
	}
	b.reading.Lock()
	//lint:ignore SA2001 the lock waits for a read under way
	b.reading.Unlock()
}

// failed returns the error of the client's side, if it failed.
func (b *h2Body) failed() error {
	if b == nil {
		return nil
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

// replayable says the body read so far is all kept: the request can go
// again.
func (b *h2Body) replayable() bool { return b == nil || b.replay.Load() }

// count returns the bytes read of the body.
func (b *h2Body) count() int64 {
	if b == nil {
		return 0
	}
	return b.n.Load()
}

// whole says the whole body was read (or there was none).
func (b *h2Body) whole() bool { return b == nil || b.eof.Load() }
