package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
	"lb/h1"
	"lb/h2"
	"lb/h2pool"
	"lb/proxy"
	"lb/sock"
)

// A backend with proto = "h2" speaks HTTP/2 to its servers. Its requests go
// through the same exchange as HTTP/1.1 ones up to the server: rules,
// routing, the pick of a server (whose slot counts the request as a
// stream), the head prepared for the server. Then, in place of forward and
// respond, the request goes as one stream of a pooled HTTP/2 connection
// to that server (package h2pool, lb's HTTP/2 client), its body streamed
// both ways at once: gRPC's streaming calls work over it. The response
// comes back through the same steps as an HTTP/1.1 one: response rules,
// cookie, passive check, head, body, trailer.

// UseHTTP2 makes the backend speak HTTP/2 to its servers: over TLS (h2 by
// ALPN) to the servers SetServerTLS gave a configuration, in cleartext
// with prior knowledge (h2c) to the others. Call it after SetServerTLS,
// before the backend serves.
func (b *Backend) UseHTTP2() {
	b.h2 = true
	for srv, up := range b.servers {
		up.h2 = h2pool.New(h2pool.Options{
			Addr: srv.Addr, TLS: up.tls, ConnectTimeout: b.ConnectTimeout, WriteTimeout: b.ServerTimeout,
			Dial: func(context.Context) (net.Conn, error) {
				c, err := b.Dial(srv)
				if err != nil {
					return nil, err
				}
				_ = c.SetNoDelay(true)
				// Raw syscalls, as on every other connection lb reads
				// through a buffer: net.Conn's Read and Write enter the
				// scheduler's syscall state, and with one P the runtime's
				// monitor hands the P to another thread during each
				// loopback write, which wakes the server (perf: sysmon
				// and its futex wake-ups were a sixth of lb's CPU per
				// request to an h2c server).
				sc, err := sock.New(c)
				if err != nil {
					_ = c.Close()
					return nil, err
				}
				return sc, nil
			},
		})
	}
}

// h2Call is one request to an HTTP/2 server: the stream reserved on a
// pooled connection, then the stream, and the request body's upload.
type h2Call struct {
	x        *exchange
	cc       *h2pool.Conn
	fresh    bool // cc was opened for this request
	reserved bool // cc holds a slot that no stream took yet

	// mu guards st and stopped: cancel may come from the client's reset
	// or the idle timer while the exchange opens a stream.
	mu      sync.Mutex
	st      *h2pool.Stream
	stopped error // why the call was cancelled

	watching *h2.Stream // the client's stream, whose reset cancels the call
	// idle cancels the call when neither side moved for timeout.server;
	// expired says it did.
	idle    *time.Timer
	expired atomic.Bool
	over    atomic.Bool // end ran: the idle timer stays stopped
	ended   bool        // the response head ended the stream

	body   *h2Body // nil without a request body
	upload *h2Attempt
	respIn h2RespBody
	info   h1.Response
}

// reserveH2 is DialServer for an HTTP/2 backend: a stream reserved on a
// connection to srv, opened if none has room.
func (x *exchange) reserveH2(srv *balancer.Server) error {
	cc, fresh, err := x.be.servers[srv].h2.Get(context.Background())
	if err != nil {
		return err
	}
	// (A DialServer that succeeds ends proxy.Backend.Connect: the
	// exchange has no call yet.)
	c := &h2Call{x: x, cc: cc, fresh: fresh, reserved: true}
	c.respIn.c = c
	x.call = c
	return nil
}

// reused reports whether the server connection served requests before.
func (x *exchange) reused() bool {
	if x.call != nil {
		return !x.call.fresh
	}
	return x.sc.used
}

// errServerIdle is a call that timeout.server ended.
var errServerIdle = errors.New("timeout.server passed with nothing moving either way")

// watch arms what cancels the call: the client's reset (an HTTP/2
// client's stream) and the idle timer.
func (c *h2Call) watch() {
	x := c.x
	if s, ok := x.cl.(*h2Stream); ok {
		c.watching = s.st
		s.st.Watch(c)
	}
	if d := x.be.ServerTimeout; d > 0 {
		c.idle = time.AfterFunc(d, c.expire)
	}
}

// StreamDone implements h2.DoneWatcher: the client reset its stream.
func (c *h2Call) StreamDone() { c.cancel(h2.ErrStreamReset) }

// cancel ends the call's stream, and the one it opens next, with err.
func (c *h2Call) cancel(err error) {
	c.mu.Lock()
	if c.stopped == nil {
		c.stopped = err
	}
	st := c.st
	c.mu.Unlock()
	if st != nil {
		st.Cancel(err)
	}
}

// setStream makes st the call's stream: cancelled at once if the call was.
func (c *h2Call) setStream(st *h2pool.Stream) {
	c.mu.Lock()
	c.st = st
	err := c.stopped
	c.mu.Unlock()
	if err != nil {
		st.Cancel(err)
	}
}

// expire is the idle timer: timeout.server passed with nothing moving.
func (c *h2Call) expire() {
	c.expired.Store(true)
	c.cancel(errServerIdle)
}

// touch notes that the call moved: the idle timer starts again.
func (c *h2Call) touch() {
	if c.idle != nil && !c.over.Load() {
		c.idle.Reset(c.x.be.ServerTimeout)
	}
}

// interim passes an interim response on to the client (not 100: lb
// answered the client's Expect itself).
func (c *h2Call) interim(status int, h *h1.Head) error {
	if status == 100 {
		return nil
	}
	c.touch()
	r := &c.info
	r.Reset()
	r.Minor, r.Status = 1, status
	for _, f := range h.Fields {
		r.Add(string(f.Name), f.Value)
	}
	return c.x.cl.informational(r)
}

// uploadBody sends the request body, as a reads it, on st, then its end
// (with the client's trailer fields): the call's goroutine beside the
// response. It ends when the body does, or when the stream or the
// exchange does.
func (c *h2Call) uploadBody(st *h2pool.Stream, a *h2Attempt) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := a.Read(buf)
		if n > 0 {
			if _, werr := st.Write(buf[:n]); werr != nil {
				return
			}
		}
		switch {
		case err == io.EOF:
			_ = st.CloseWrite(a.b.trailer)
			return
		case errors.Is(err, errBodyOver):
			return
		case err != nil:
			st.Cancel(err)
			return
		}
	}
}

// h2Body is the request body of an HTTP/2 call: read from the client
// once, counted and bounded, its trailer fields copied at its end, and
// sent through an h2Attempt per stream.
// Until the response head comes, it keeps what it read (up to
// maxReplayBody), so that a request the server did not process can go
// again on another connection, its body included. end stops it before the
// client's side is reused: the upload may still be reading.
type h2Body struct {
	c       *h2Call
	r       io.Reader
	cl      client
	trailer *h1.Head // the client's trailer fields, copied at the end
	limit   int64    // max_body_bytes; 0: none
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

// h2Attempt is the request body as one stream's upload reads it: the
// body kept first, then the rest from the client. An attempt given up
// (dead) reads no more.
type h2Attempt struct {
	b    *h2Body
	pos  int
	dead atomic.Bool
}

// attempt returns a reader of the whole body for a stream; a previous
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
		// The trailer is copied: the client's storage is reused once the
		// exchange ends, which the upload may outlive.
		if t := b.cl.requestTrailer(); t != nil && len(t.Fields) > 0 && b.trailer == nil {
			b.trailer = new(h1.Head)
			for _, f := range t.Fields {
				b.trailer.Add(string(f.Name), f.Value)
			}
		}
		b.eof.Store(true)
	case err != nil:
		b.setErr(err)
	}
	return n, err
}

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
type h2RespBody struct{ c *h2Call }

func (b *h2RespBody) Read(p []byte) (int, error) {
	n, err := b.c.st.Read(p)
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
// refused stream, a GOAWAY before its stream, a connection lost before
// the request left) goes again on another connection to the same server,
// twice at most, whatever its method, if lb still has all of its body
// that it read (see h2Body); so does an idempotent one whose reused
// connection was lost before any response came.
func (x *exchange) forwardH2() bool {
	c := x.call
	if x.reqBody != nil && x.reqLen != 0 {
		c.body = &h2Body{c: c, r: x.reqBody, cl: x.cl, limit: int64(x.f.MaxBodyBytes)}
		c.body.keep.Store(true)
		c.body.replay.Store(true)
	}
	c.watch()
	for attempt := 0; ; attempt++ {
		c.reserved = false
		st, err := c.cc.Open(&x.req, c.body == nil)
		if err == nil {
			c.setStream(st)
			if c.body != nil {
				c.upload = c.body.attempt(c.upload)
				go c.uploadBody(st, c.upload)
			}
			c.ended, err = st.ReadHead(&x.resp, c.interim)
			if err == nil {
				c.body.answered()
				break
			}
		}
		switch {
		case c.body.failed() != nil:
			x.bytesIn = c.body.count()
			x.drop(false)
			return x.clientGone(c.body.failed())
		case x.streamGone():
			x.drop(false)
			return x.clientGone(h2.ErrStreamReset)
		}
		// As for HTTP/1.1 servers (forward), a reused connection lost
		// before any response came may have been closed by the server
		// as lb reused it: an idempotent request goes again.
		var ce *h2pool.ConnError
		lost := attempt == 0 && !c.fresh && errors.As(err, &ce) && idempotent(x.req.Method)
		if attempt < 2 && (h2pool.Unsent(err) || lost) && c.body.replayable() && !c.expired.Load() {
			cc, fresh, gerr := x.be.servers[x.srv].h2.Get(context.Background())
			if gerr == nil {
				c.cc, c.fresh, c.reserved = cc, fresh, true
				x.retries++
				x.resp.Reset()
				continue
			}
			err = gerr
		}
		return x.failH2(err)
	}
	x.tResp = x.since()
	c.frame()
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

// frame sets the framing of the response in x.resp, as an HTTP/1.1
// response that a client of either version can take: none when the head
// ended the stream (with Content-Length: 0 for an HTTP/1.1 client, where
// a body could be), a length when the server gave one, chunked when it
// did not or when trailer fields are announced. A response that is a head
// alone (gRPC's trailers-only answers, which carry the call's status)
// reaches an HTTP/2 client as one HEADERS frame that ends the stream.
func (c *h2Call) frame() {
	x := c.x
	r := &x.resp
	n := c.st.Declared()
	switch s := r.Status; {
	case string(x.req.Method) == "HEAD", s == 204, s == 304:
		r.Body = h1.Body{}
	case c.ended:
		r.Body = h1.Body{}
		if !r.Has("Content-Length") {
			r.Set("Content-Length", []byte("0"))
		}
	case n >= 0 && !r.Has("Trailer"):
		r.Body = h1.Body{Kind: h1.BodyLength, Length: n}
	default:
		r.Body = h1.Body{Kind: h1.BodyChunked}
		r.Del("Content-Length")
	}
}

// copyResponse is exchange.copyResponse for the server's stream.
func (c *h2Call) copyResponse(w io.Writer, out *bufio.Writer) (err error, fromServer bool) {
	x := c.x
	if x.resp.Body.Kind == h1.BodyNone {
		return nil, false
	}
	n, err, fromServer := copyBody(w, out, &c.respIn, nil, 0)
	x.bytesOut = n
	if err == nil && x.resp.Body.Kind == h1.BodyLength && n < x.resp.Body.Length {
		err, fromServer = io.ErrUnexpectedEOF, true
	}
	return err, fromServer
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
	case !fromServer, x.streamGone():
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
	t := c.st.Trailer()
	if t != nil {
		t.RemoveDisallowedTrailers()
	}
	return t
}

// end closes the call: its stream (reset if the server is not done with
// it), the slot it did not use, its watchers, and the client's body,
// which the upload may still be reading.
func (c *h2Call) end() {
	x := c.x
	c.over.Store(true)
	if c.watching != nil {
		c.watching.Unwatch()
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	c.cancel(errCallOver)
	if c.reserved {
		c.cc.Release()
		c.reserved = false
	}
	c.body.end()
	x.call = nil
}

// errCallOver cancels what is left of a call whose exchange ended.
var errCallOver = errors.New("the exchange is over")

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
