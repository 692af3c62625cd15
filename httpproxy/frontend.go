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
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"lb/deadline"
	"lb/sock"
	"lb/stats"
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
	"lb/proxy"
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
	// Policy, when set, is the frontend's traffic policy at the request
	// and the response.
	Policy *Policy
	// Conditional says routes or header rules (the frontend's or its
	// backends') have when expressions, which may read any fact of a
	// request: its client's address, its TLS server name, ...
	Conditional bool
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
	// Counts, when set, counts the frontend's requests (the frontend's
	// own counters, proxy.Frontend.Counts).
	Counts *stats.Frontend
	// Active, when set, counts the frontend's connections, for the
	// httplog lines.
	Active func() int64
	// LogQuery puts the query string in the access log lines.
	LogQuery bool
	// HTTPLog, when set, gets the access log lines in the format of
	// HAProxy's option httplog, one per write, instead of Log.
	HTTPLog io.Writer
	// heads bounds the memory of the request heads still arriving, with
	// the other frontends of the process; nil means no bound.
	heads *headBudget

	draining atomic.Bool
	spread   time.Duration

	mu     sync.Mutex
	conns  map[*clientConn]struct{}
	parked map[*idleConn]struct{}

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

// route returns the backend of a request; s is what its routes' when
// expressions see.
func (f *Frontend) route(req *h1.Request, s *rules.Subject) *Backend {
	if f.Routes != nil {
		if i, ok := f.Routes.LookupSubject(req.Method, req.Host(), req.Path(), &req.Head, s); ok {
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
	for ic := range f.parked {
		ic.drain(spread)
	}
	f.mu.Unlock()
	f.h2Server().Shutdown()
}

// clientConn is one HTTP/1.1 client connection.
type clientConn struct {
	f    *Frontend
	conn *proxy.Conn // as the frontend counts it
	raw  *net.TCPConn
	c    net.Conn // &sc, or TLS over the connection
	// sc reads and writes a plain connection (see package sock).
	sc sock.Conn
	// local is the address the client connected to.
	local netip.AddrPort
	// in is what br reads: c, with the head budget's accounting.
	in headReader
	// br and bw are taken from readBufs and writeBufs: br for
	// the life of the connection, bw while responses are written (see
	// writer); both go back before a failed request is logged.
	br   *bufio.Reader
	bw   *bufio.Writer
	x    exchange
	cw   h1.ChunkedWriter
	cr   h1.ChunkedReader
	body timedReader
	lr   io.LimitedReader // a request body of known length, under body
	tw   timedWriter
	// chunked says the response being written is chunked by lb.
	chunked bool

	// mu guards idle, first, due and the read deadline while idle,
	// against SoftStop.
	mu   sync.Mutex
	idle bool
	// due is when the connection closes if no request comes (see
	// connState).
	due time.Time
	// readDue is the read deadline waitRequest set last, zero when
	// something else set one since; wAt is when a response's writer last
	// set the write deadline (see package deadline). Kept from one request to
	// the next, they spare a busy connection a deadline change per
	// request.
	readDue time.Time
	wAt     time.Time
	// first says the connection waits for its first request: a soft stop
	// lets it come (bounded by http_request), since a client does not send
	// a request again that failed on a new connection.
	first bool

	// The state of serveHeld's work (heldStep) between its calls: hFirst
	// says no request came yet, hWait that a wait for one began
	// (beginIdle), hOut and hRead what serveHeld returns. onHeld is
	// heldStep, made once.
	hFirst, hWait, hRead bool
	hOut                 int
	onHeld               func() bool
	// headIn says the head of the request read next was whole in the
	// buffer when it began (requestBegins).
	headIn bool
	// early says the last request ended the connection before its body
	// was read whole: end lingers.
	early bool
	// h2c says the connection began with HTTP/2's preface (cleartext
	// HTTP/2 with prior knowledge): serveState hands it to the HTTP/2
	// server, with h2cIn, the bytes already read.
	h2c   bool
	h2cIn []byte
	// private is the server connection kept for this client alone, idle
	// between its requests: one that carries its PROXY protocol header
	// (send_proxy), which no other client may use.
	private *serverConn
}

var clientConns = sync.Pool{New: func() any { return new(clientConn) }}

// readBufs and writeBufs are the buffers of client and server
// connections, serverWriteBufs the write buffers of server connections
// (see serverWriteSize): connections hold them only while bytes move (see
// clientConn and serverConn).
var (
	readBufs        = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writeBufs       = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
	serverWriteBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, serverWriteSize) }}
)

// keepHeadBytes bounds the storage of a request (and response) head that
// an idle or a pooled connection keeps for the next: heads up to about
// this size are read without allocating, and larger ones give theirs
// back.
const keepHeadBytes = 4 << 10

// ServeConn serves one client connection (it implements
// proxy.ConnHandler): it returns when the connection has ended, and been
// closed and counted off (conn.Done), or when it is at rest and parked
// (see idle.go): then it goes on when the client sends its next request.
func (f *Frontend) ServeConn(conn *proxy.Conn) {
	raw := conn.TCPConn
	var c net.Conn // nil: plain, read and written through the clientConn's own sock.Conn
	if f.TLS != nil {
		sc, err := sock.New(raw)
		if err != nil {
			_ = raw.Close()
			conn.Done()
			return
		}
		tc := tls.Server(sc, f.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), f.RequestTimeout)
		err = tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			f.Log.Debug().Str("frontend", f.Name).Str("client", raw.RemoteAddr().String()).Err(err).Msg("TLS handshake failed")
			if f.Counts != nil {
				f.Counts.TLSFailed.Add(1)
			}
			_ = raw.Close()
			conn.Done()
			return
		}
		cs := tc.ConnectionState()
		if f.Counts != nil {
			f.Counts.TLSHandshakes.Add(1)
			if cs.DidResume {
				f.Counts.TLSResumed.Add(1)
			}
		}
		if cs.NegotiatedProtocol == "h2" {
			proxy.Busy(1)
			f.h2Server().ServeConnAs(tc, raw, conn.Client(), conn)
			proxy.Busy(-1)
			conn.Done()
			return
		}
		c = tc
	}
	st := connState{conn: conn, c: c, first: true, due: time.Now().Add(f.RequestTimeout)}
	f.serveState(&st)
}

// connState is what a client connection is between requests, all that a
// parked one keeps: as little as can be, since thousands may be parked.
// Its addresses are the socket's, read again when it is served.
type connState struct {
	conn *proxy.Conn
	c    net.Conn // TLS over conn; nil for plain TCP
	// first says no request came yet; due is when the connection closes
	// if none comes (http_request for the first, http_keep_alive after).
	first bool
	due   time.Time
}

// addrs returns the client's address and the one it connected to, as
// a PROXY protocol header gave them or the connection's socket has them
// (net.TCPConn keeps both: no syscall).
func (st *connState) addrs() (peer, local netip.AddrPort) {
	return st.conn.Client(), st.conn.Local()
}

// serveState serves a connection from st, its state between requests,
// until it ends (then it closes it) or parks.
func (f *Frontend) serveState(st *connState) {
	proxy.Busy(1)
	defer proxy.Busy(-1)
	cc := clientConns.Get().(*clientConn)
	cc.f, cc.conn, cc.raw, cc.c = f, st.conn, st.conn.TCPConn, st.c
	if st.c == nil {
		// Plain TCP: the pooled wrapper serves it while it is served; a
		// parked connection keeps none.
		if err := cc.sc.Reset(cc.raw); err != nil {
			_ = cc.raw.Close()
			cc.f, cc.conn, cc.raw = nil, nil, nil
			clientConns.Put(cc)
			st.conn.Done()
			return
		}
		cc.c = &cc.sc
	}
	peer, local := st.addrs()
	cc.local, cc.due = local, st.due
	cc.readDue, cc.wAt = time.Time{}, time.Time{}
	cc.in = headReader{c: cc.c, budget: f.heads}
	cc.x.f, cc.x.cl, cc.x.tls, cc.x.peer, cc.x.conn = f, cc, f.TLS != nil, peer, st.conn
	f.track(cc, true)
	parked := cc.serve(st.first)
	f.track(cc, false)
	cc.dropPrivate() // a connection at rest holds no server connection
	_ = cc.releaseWriter()
	h2c, h2cIn := cc.h2c, cc.h2cIn
	cc.h2c, cc.h2cIn = false, nil
	cc.releaseReader()
	if !parked && !h2c {
		_ = cc.c.Close()
	}
	conn := cc.conn
	cc.x.reset()
	cc.trimHeads()
	cc.x.f, cc.x.cl, cc.x.conn = nil, nil, nil
	cc.f, cc.conn, cc.raw, cc.c = nil, nil, nil, nil
	_ = cc.sc.Reset(nil)
	cc.in = headReader{}
	clientConns.Put(cc)
	switch {
	case h2c:
		f.serveH2C(conn, h2cIn)
	case !parked:
		conn.Done()
	}
}

// clientReadBufs counts the read buffers that client connections hold:
// those of requests being read, and no more (see reader).
var clientReadBufs atomic.Int64

// reader returns the connection's read buffer, taken from readBufs when
// it has none.
func (cc *clientConn) reader() *bufio.Reader {
	if cc.br == nil {
		cc.br = readBufs.Get().(*bufio.Reader)
		cc.br.Reset(&cc.in)
		clientReadBufs.Add(1)
	}
	return cc.br
}

// buffered returns how many bytes the read buffer holds.
func (cc *clientConn) buffered() int {
	if cc.br == nil {
		return 0
	}
	return cc.br.Buffered()
}

// releaseReader gives the read buffer back to readBufs: it holds nothing
// (the connection waits for a request), or nothing more is read.
func (cc *clientConn) releaseReader() {
	if cc.br != nil {
		cc.br.Reset(nil)
		readBufs.Put(cc.br)
		cc.br = nil
		clientReadBufs.Add(-1)
	}
}

// writer returns the connection's write buffer, taken from writeBufs
// when it has none.
func (cc *clientConn) writer() *bufio.Writer {
	if cc.bw == nil {
		cc.bw = writeBufs.Get().(*bufio.Writer)
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
// writeBufs: the connection is idle or ends.
func (cc *clientConn) releaseWriter() error {
	if cc.bw == nil {
		return nil
	}
	err := cc.bw.Flush()
	cc.bw.Reset(nil)
	writeBufs.Put(cc.bw)
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
		cc.due = time.Now().Add(randDur(spread))
		_ = cc.c.SetReadDeadline(cc.due)
	}
	cc.mu.Unlock()
}

func randDur(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
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
	cc.tw = timedWriter{w: bw, Lazy: deadline.Lazy{Conn: cc.c, D: cc.f.ClientTimeout, At: cc.wAt}}
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
func (cc *clientConn) abortBody() {
	_ = cc.c.SetReadDeadline(time.Unix(1, 0))
	cc.readDue = time.Time{}
}

// resumeBody implements client: no deadline until the next wait sets one.
func (cc *clientConn) resumeBody() {
	_ = cc.c.SetReadDeadline(time.Time{})
	cc.readDue = time.Time{}
}

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

func (cc *clientConn) tlsState() (tls.ConnectionState, bool) {
	if tc, ok := cc.c.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// writeDeadline bounds the next write to the client by timeout.client:
// the deadline of an earlier response may have passed since.
func (cc *clientConn) writeDeadline() {
	if d := cc.f.ClientTimeout; d > 0 {
		_ = cc.c.SetWriteDeadline(time.Now().Add(d))
		cc.wAt = time.Time{} // the response's writer sets its own afresh
	}
}

// writeError implements client.
func (cc *clientConn) writeError(status int) {
	cc.writeDeadline()
	bw := cc.writer()
	_, _ = bw.Write(errorResponses[status])
	_ = bw.Flush()
}

// headIn reports whether br holds a whole request head: its end, an empty
// line, is in the buffer.
func headIn(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
		return false // empty lines before the request line: no shortcut
	}
	return bytes.Contains(b, crlfcrlf) || bytes.Contains(b, lflf)
}

var crlfcrlf, lflf = []byte("\r\n\r\n"), []byte("\n\n")
