// Package httpproxy is lb's HTTP mode: it reads HTTP/1.1 requests (and
// HTTP/2 ones over TLS), routes each to a backend, forwards it to a server
// over a pooled keep-alive connection and streams the response back.
//
// A Frontend is the proxy.ConnHandler of an HTTP-mode frontend: the TCP
// frontend accepts, the Frontend serves each connection. Bodies are
// streamed through fixed buffers, never held whole. When the generation is
// told to stop, requests in flight complete, busy connections get
// "Connection: close" on their next response, idle ones are closed at
// random moments over the close spread time, and HTTP/2 clients get GOAWAY.
package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"lb/h1"
	"lb/h2"
	"lb/rules"
)

// Frontend serves the HTTP connections of one frontend.
type Frontend struct {
	// Name is the frontend's name.
	Name string
	// Default takes the requests no route matches.
	Default *Backend
	// Routes picks a backend for each request; Targets[i] is the backend
	// of route target i. Nil routes send everything to Default.
	Routes  *rules.Table
	Targets []*Backend
	// ReqRules and RespRules are the frontend's header rules.
	ReqRules, RespRules []*rules.HeaderRule
	// Limits bound request heads.
	Limits h1.Limits
	// MaxBodyBytes bounds request bodies; 0 means no limit.
	MaxBodyBytes int
	// RequestIDHeader carries the request id; empty means none.
	RequestIDHeader string
	// Forwarded adds an RFC 7239 Forwarded header.
	Forwarded bool
	// ClientTimeout bounds each read of a request body and each write to
	// the client; 0 means no limit.
	ClientTimeout time.Duration
	// RequestTimeout bounds the reading of a request head (and the TLS
	// handshake).
	RequestTimeout time.Duration
	// KeepAliveTimeout is how long a connection may wait for its next
	// request.
	KeepAliveTimeout time.Duration
	// TLS, when set, terminates TLS.
	TLS *tls.Config
	// Log receives one line per request.
	Log zerolog.Logger
	// heads bounds the memory of the request heads still arriving, with
	// the other frontends of the process; nil means no bound.
	heads *headBudget

	draining atomic.Bool
	spread   time.Duration

	mu    sync.Mutex
	conns map[*clientConn]struct{}

	h2once sync.Once
	h2srv  *h2.Server
}

// scheme is the scheme clients use on this frontend.
func (f *Frontend) scheme() string {
	if f.TLS != nil {
		return "https"
	}
	return "http"
}

// route returns the backend of a request.
func (f *Frontend) route(req *h1.Request) *Backend {
	if f.Routes != nil {
		if i, ok := f.Routes.Lookup(req.Method, req.Host(), req.Path(), &req.Head); ok {
			return f.Targets[i]
		}
	}
	return f.Default
}

// SoftStop winds the frontend down: every connection closes after the
// response in flight, idle ones at a random moment within spread, and
// HTTP/2 connections get GOAWAY.
func (f *Frontend) SoftStop(spread time.Duration) {
	f.mu.Lock()
	f.spread = spread
	f.draining.Store(true)
	for cc := range f.conns {
		cc.drain(spread)
	}
	f.mu.Unlock()
	f.h2Server().Shutdown()
}

// clientConn is one HTTP/1.1 client connection.
type clientConn struct {
	f   *Frontend
	raw *net.TCPConn
	c   net.Conn // raw, or TLS over it
	// local is the address the client connected to.
	local netip.AddrPort
	// in is what br reads: c, with the head budget's accounting.
	in headReader
	// br and bw are taken from clientReaders and clientWriters: br for
	// the life of the connection, bw while responses are written (see
	// writer); both go back before a failed request is logged.
	br   *bufio.Reader
	bw   *bufio.Writer
	x    exchange
	cw   h1.ChunkedWriter
	cr   h1.ChunkedReader
	body timedReader
	tw   timedWriter
	// chunked says the response being written is chunked by lb.
	chunked bool

	// mu guards idle, first and the read deadline while idle, against
	// SoftStop.
	mu   sync.Mutex
	idle bool
	// first says the connection waits for its first request: a soft stop
	// lets it come (bounded by http_request), since a client does not send
	// a request again that failed on a new connection.
	first bool
}

var clientConns = sync.Pool{New: func() any { return new(clientConn) }}

// clientReaders and clientWriters are the buffers of client connections.
var (
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

// keepHeadBytes bounds the storage of a request (and response) head that
// an idle or a pooled connection keeps for the next: heads up to about
// this size are read without allocating, and larger ones give theirs
// back.
const keepHeadBytes = 4 << 10

// ServeConn serves one client connection until it ends, and closes it.
func (f *Frontend) ServeConn(raw *net.TCPConn) {
	var c net.Conn = raw
	if f.TLS != nil {
		tc := tls.Server(raw, f.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), f.RequestTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			f.Log.Debug().Str("frontend", f.Name).Str("client", raw.RemoteAddr().String()).Err(err).Msg("TLS handshake failed")
			_ = raw.Close()
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			f.serveH2(tc)
			return
		}
		c = tc
	}
	cc := clientConns.Get().(*clientConn)
	cc.f, cc.raw, cc.c = f, raw, c
	cc.in = headReader{c: c, budget: f.heads}
	cc.br = clientReaders.Get().(*bufio.Reader)
	cc.br.Reset(&cc.in)
	cc.x.f, cc.x.cl, cc.x.tls = f, cc, f.TLS != nil
	if a, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		cc.x.peer = a.AddrPort()
	}
	if a, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		cc.local = netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port())
	}
	f.track(cc, true)
	cc.serve()
	f.track(cc, false)
	_ = cc.releaseWriter()
	cc.releaseReader()
	_ = c.Close()
	cc.x.reset()
	cc.trimHeads()
	cc.x.f, cc.x.cl = nil, nil
	cc.f, cc.raw, cc.c = nil, nil, nil
	cc.in = headReader{}
	clientConns.Put(cc)
}

// releaseReader gives the read buffer back to clientReaders: nothing more
// is read from the connection.
func (cc *clientConn) releaseReader() {
	if cc.br != nil {
		cc.br.Reset(nil)
		clientReaders.Put(cc.br)
		cc.br = nil
	}
}

// writer returns the connection's write buffer, taken from clientWriters
// when it has none.
func (cc *clientConn) writer() *bufio.Writer {
	if cc.bw == nil {
		cc.bw = clientWriters.Get().(*bufio.Writer)
		cc.bw.Reset(cc.c)
	}
	return cc.bw
}

// flush writes out what the write buffer holds, if there is one.
func (cc *clientConn) flush() error {
	if cc.bw == nil {
		return nil
	}
	return cc.bw.Flush()
}

// releaseWriter flushes the write buffer and gives it back to
// clientWriters: the connection is idle or ends.
func (cc *clientConn) releaseWriter() error {
	if cc.bw == nil {
		return nil
	}
	err := cc.bw.Flush()
	cc.bw.Reset(nil)
	clientWriters.Put(cc.bw)
	cc.bw = nil
	return err
}

// trimHeads lets go of the storage of the exchange's heads where a large
// message made it grow: the connection is idle or ends.
func (cc *clientConn) trimHeads() {
	cc.x.req.Trim(keepHeadBytes)
	cc.x.resp.Trim(keepHeadBytes)
}

// track adds or removes cc from the connections SoftStop reaches.
func (f *Frontend) track(cc *clientConn, add bool) {
	f.mu.Lock()
	if add {
		if f.conns == nil {
			f.conns = map[*clientConn]struct{}{}
		}
		f.conns[cc] = struct{}{}
	} else {
		delete(f.conns, cc)
	}
	f.mu.Unlock()
}

// drain closes cc at a random moment within spread if it is idle; a busy
// one closes after its response.
func (cc *clientConn) drain(spread time.Duration) {
	cc.mu.Lock()
	if cc.idle && !cc.first {
		_ = cc.c.SetReadDeadline(time.Now().Add(randDur(spread)))
	}
	cc.mu.Unlock()
}

func randDur(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// waitRequest waits for the first byte of the next request. It reports
// false when the connection is to end: the client closed it, it stayed
// idle too long, or the frontend is stopping.
func (cc *clientConn) waitRequest(first bool) bool {
	f := cc.f
	cc.in.beginHead()
	if cc.br.Buffered() == 0 {
		// Idle: what the last exchange grew goes back.
		cc.trimHeads()
		cc.mu.Lock()
		cc.idle, cc.first = true, first
		d := f.KeepAliveTimeout
		if first {
			d = f.RequestTimeout
		}
		if f.draining.Load() && !first {
			d = randDur(f.spread)
		}
		_ = cc.c.SetReadDeadline(time.Now().Add(d))
		cc.mu.Unlock()
		if err := cc.releaseWriter(); err != nil {
			return false
		}
		_, err := cc.br.Peek(1)
		cc.mu.Lock()
		cc.idle = false
		cc.mu.Unlock()
		if err != nil {
			return false
		}
	}
	_ = cc.c.SetReadDeadline(time.Now().Add(f.RequestTimeout))
	return true
}

// serve reads and serves requests until the connection ends.
func (cc *clientConn) serve() {
	f, x := cc.f, &cc.x
	for first := true; ; first = false {
		if !cc.waitRequest(first) {
			return
		}
		x.tStart = time.Now()
		cc.in.start = x.tStart
		err := h1.ReadRequest(cc.br, &x.req, f.Limits)
		if e := cc.in.endHead(); e != nil {
			err = e // shed, though it may have arrived whole since
		}
		x.tHead = time.Now()
		if err != nil {
			cc.badRequest(err)
			return
		}
		if x.req.Minor == 0 && !x.req.Has("Host") {
			// HTTP/1.0 has no Host to require, but the request goes on
			// in HTTP/1.1, which does: the address the client connected
			// to stands in for the host it did not name.
			x.scratch = cc.local.AppendTo(x.scratch[:0])
			x.req.Add("Host", x.scratch)
		}
		if x.req.Body.Kind != h1.BodyNone || x.req.Upgrade {
			// The head's deadline must not cut the body or the tunnel;
			// without either, nothing reads until the next request's
			// deadline is set.
			_ = cc.c.SetReadDeadline(time.Time{})
		}
		cc.body = timedReader{lazyDeadline: lazyDeadline{c: cc.c, d: f.ClientTimeout}, stop: &x.up.stop}
		x.reqIn = cc.br
		switch x.req.Body.Kind {
		case h1.BodyLength:
			cc.body.r = io.LimitReader(cc.br, x.req.Body.Length)
			x.reqBody, x.reqLen = &cc.body, x.req.Body.Length
		case h1.BodyChunked:
			cc.cr.Reset(cc.br, f.Limits)
			cc.body.r = &cc.cr
			x.reqBody, x.reqLen = &cc.body, -1
		}
		keep := x.run()
		if err := cc.flush(); err != nil {
			keep = false
		}
		early := x.early
		x.reset()
		if !keep {
			if early {
				cc.linger()
			}
			return
		}
	}
}

// lingerTime bounds how long a connection closing with a request body
// still coming is drained.
const lingerTime = 2 * time.Second

// linger ends a connection whose client may still be sending a body that
// the server did not want: lb closes its sending side and reads the rest
// away for up to lingerTime, so that closing does not reset the
// connection (which could destroy the response before the client read
// it).
func (cc *clientConn) linger() {
	if tc, ok := cc.c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if err := cc.raw.CloseWrite(); err != nil {
		return
	}
	_ = cc.raw.SetReadDeadline(time.Now().Add(lingerTime))
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		if _, err := cc.raw.Read(*bp); err != nil {
			return
		}
	}
}

// badRequest answers a request head that could not be read, when there is
// something to answer.
func (cc *clientConn) badRequest(err error) {
	x := &cc.x
	var he *h1.Error
	var be *budgetError
	switch {
	case errors.As(err, &he):
		x.status, x.end, x.err = he.Status, endBadRequest, err
	case errors.As(err, &be):
		x.status, x.end, x.err = be.Status, endHeadBudget, err
	case errors.Is(err, os.ErrDeadlineExceeded):
		x.status, x.end, x.err = 408, endClientTimeout, err
	default: // the client went away mid-head
		return
	}
	cc.writeError(x.status)
	// The connection ends: its buffers go back before the log line, which
	// may wait (a flood of bad requests, a slow log reader).
	_ = cc.releaseWriter()
	cc.releaseReader()
	x.finish(false)
}

// informational implements client.
func (cc *clientConn) informational(resp *h1.Response) error {
	if cc.x.req.Minor == 0 {
		return nil // HTTP/1.0 clients do not know 1xx
	}
	cc.writeDeadline()
	bw := cc.writer()
	if err := h1.WriteResponseHead(bw, resp); err != nil {
		return err
	}
	return bw.Flush()
}

// continue100 implements client.
func (cc *clientConn) continue100() error {
	if cc.x.req.Minor == 0 {
		return nil
	}
	cc.writeDeadline()
	bw := cc.writer()
	if _, err := bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
		return err
	}
	return bw.Flush()
}

// writeHead implements client: it sets the framing the client gets and
// says whether the connection stays open.
func (cc *clientConn) writeHead(resp *h1.Response, close bool) (io.Writer, *bufio.Writer, error) {
	old := cc.x.req.Minor == 0
	cc.chunked = false
	switch resp.Body.Kind {
	case h1.BodyChunked, h1.BodyUntilClose:
		if old {
			resp.Del("Content-Length")
			resp.Del("Trailer") // the body ends with the connection, without trailers
			close = true
		} else {
			resp.Set("Transfer-Encoding", []byte("chunked"))
			cc.chunked = true
		}
	}
	switch {
	case close:
		resp.Set("Connection", []byte("close"))
	case old:
		resp.Set("Connection", []byte("keep-alive"))
	}
	bw := cc.writer()
	cc.tw = timedWriter{w: bw, lazyDeadline: lazyDeadline{c: cc.c, d: cc.f.ClientTimeout}}
	cc.tw.arm()
	if err := h1.WriteResponseHead(bw, resp); err != nil {
		return nil, nil, err
	}
	if cc.chunked {
		cc.cw.Reset(bw)
		cc.tw.w = &cc.cw
	}
	return &cc.tw, bw, nil
}

// abortBody implements client.
func (cc *clientConn) abortBody() { _ = cc.c.SetReadDeadline(time.Unix(1, 0)) }

// endBody implements client: the trailer fields go in the chunked body;
// a body delimited by the close (to an HTTP/1.0 client) has no place for
// them.
func (cc *clientConn) endBody(trailer *h1.Head) error {
	if cc.chunked {
		if err := cc.cw.CloseTrailer(trailer); err != nil {
			return err
		}
	}
	return cc.flush()
}

// requestTrailer implements client: a request body that goes chunked to
// the server came chunked, read by cc.cr.
func (cc *clientConn) requestTrailer() *h1.Head { return cc.cr.Trailer() }

// writeDeadline bounds the next write to the client by timeout.client:
// the deadline of an earlier response may have passed since.
func (cc *clientConn) writeDeadline() {
	if d := cc.f.ClientTimeout; d > 0 {
		_ = cc.c.SetWriteDeadline(time.Now().Add(d))
	}
}

// writeError implements client.
func (cc *clientConn) writeError(status int) {
	cc.writeDeadline()
	bw := cc.writer()
	_, _ = bw.Write(errorResponses[status])
	_ = bw.Flush()
}
