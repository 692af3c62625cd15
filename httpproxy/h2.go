package httpproxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"lb/h1"
	"lb/h2"
	"lb/proxy"
)

// HTTP/2 clients are served by package h2: lb hands it each TLS
// connection that negotiated h2 (and each plain one that began with the
// HTTP/2 preface, below), and each stream's request, translated to
// an HTTP/1.1 head that lb's strict parser would accept, goes through the
// same exchange as HTTP/1.1 requests. Servers are spoken to in HTTP/1.1.

// A plain frontend serves cleartext HTTP/2 to clients with prior
// knowledge (h2c, RFC 9113 3.3; HAProxy detects it the same way): a
// connection whose first bytes are the HTTP/2 preface goes to the HTTP/2
// server. The upgrade from HTTP/1.1 (Upgrade: h2c) is not offered: RFC
// 9113 deprecates it, and an HTTP/1.1 request with it is served as
// HTTP/1.1.

// h2PrefaceHead is the part of HTTP/2's client preface that reads as an
// HTTP/1 request head; the HTTP/2 server checks the rest.
const h2PrefaceHead = "PRI * HTTP/2.0\r\n\r\n"

// h2Preface reports whether the connection's first bytes are HTTP/2's
// preface. It looks one byte further at a time while they match, so an
// HTTP/1.1 request costs a look at its first byte, and a short one is
// never waited on for bytes it will not send.
func (cc *clientConn) h2Preface() bool {
	for n := 1; n <= len(h2PrefaceHead); n++ {
		b, err := cc.br.Peek(n)
		if err != nil || b[n-1] != h2PrefaceHead[n-1] {
			return false
		}
	}
	return true
}

// prefixConn reads pre, the bytes read already, before the rest of its
// connection.
type prefixConn struct {
	*net.TCPConn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

// serveH2C serves conn, a plain connection that began with HTTP/2's
// preface (in, with what came after it), as HTTP/2, then ends it.
func (f *Frontend) serveH2C(conn *proxy.Conn, in []byte) {
	f.h2Server().ServeConnAs(&prefixConn{TCPConn: conn.TCPConn, pre: in}, conn.TCPConn, conn.Client(), conn)
	conn.Done()
}

// h2Server returns the frontend's HTTP/2 server, made on first use.
func (f *Frontend) h2Server() *h2.Server {
	f.h2once.Do(func() {
		f.h2srv = &h2.Server{
			Handler:          f,
			Limits:           f.Limits,
			HandshakeTimeout: f.RequestTimeout,
			IdleTimeout:      f.KeepAliveTimeout,
			Timeout:          f.ClientTimeout,
		}
	})
	return f.h2srv
}

// h2Stream is one HTTP/2 stream, as the exchange's client.
type h2Stream struct {
	x  exchange
	st *h2.Stream
	// errHead is the head of the responses lb makes.
	errHead h1.Head
}

var h2Streams = sync.Pool{New: func() any { return new(h2Stream) }}

// ServeStream serves one HTTP/2 stream: it implements h2.Handler.
func (f *Frontend) ServeStream(st *h2.Stream) {
	s := h2Streams.Get().(*h2Stream)
	defer func() {
		s.x.reset()
		s.st = nil
		h2Streams.Put(s)
	}()
	s.st = st
	x := &s.x
	x.f, x.cl, x.tls, x.h2st = f, s, st.IsTLS(), st
	x.peer = st.RemoteAddr()
	x.conn, _ = st.Info().(*proxy.Conn)
	x.tStart = st.Start()
	x.tHead = x.tStart
	// The exchange takes the request's storage; the stream gets the
	// exchange's old one, for its next request.
	x.req, *st.Request() = *st.Request(), x.req
	if err := st.Err(); err != nil {
		s.refuse(err)
		return
	}
	if x.req.Body.Kind != h1.BodyNone {
		n, complete := st.BodyState()
		x.frameH2Body(st, n, complete && st.Trailer() == nil)
	}
	x.run()
}

// frameH2Body sets how the body of an HTTP/2 request goes to the server,
// read from body: with its Content-Length when the client declared one,
// chunked when it did not, or when it announced trailer fields (only
// chunks can carry them in HTTP/1.1). whole says the client already sent
// the whole body, n bytes, and no trailer: the server gets its length.
func (x *exchange) frameH2Body(body io.Reader, n int64, whole bool) {
	req := &x.req
	x.reqBody = body
	switch {
	case req.Body.Kind == h1.BodyLength:
		x.reqLen = req.Body.Length
		if req.Has("Trailer") {
			x.reqLen = -1
		}
	case whole && n > 0:
		x.reqLen = n
		req.Body = h1.Body{Kind: h1.BodyLength, Length: n}
	case whole:
		x.reqLen, x.reqBody = 0, nil
		req.Body = h1.Body{}
	default:
		x.reqLen = -1
	}
}

// refuse ends a stream whose request lb cannot forward: a malformed one,
// which the h2 server already reset, is only logged; one over the limits
// gets its status (431).
func (s *h2Stream) refuse(err error) {
	x := &s.x
	var he *h1.Error
	if errors.As(err, &he) {
		x.fail(he.Status, endBadRequest, err)
		return
	}
	x.status, x.end, x.err = 0, endBadRequest, err
	x.finish(false)
}

// informational implements client.
func (s *h2Stream) informational(resp *h1.Response) error {
	return s.st.WriteInformational(resp.Status, &resp.Head)
}

// continue100 implements client.
func (s *h2Stream) continue100() error { return s.st.WriteInformational(100, nil) }

// writeHead implements client.
func (s *h2Stream) writeHead(resp *h1.Response, _ bool) (io.Writer, *bufio.Writer, error) {
	if err := s.st.WriteHeader(resp.Status, &resp.Head, resp.Body.Kind == h1.BodyNone); err != nil {
		return nil, nil, err
	}
	return s.st, nil, nil
}

// abortBody implements client.
func (s *h2Stream) abortBody() { s.st.AbortRead() }

// resumeBody implements client: a stream carries one request.
func (s *h2Stream) resumeBody() {}

// endBody implements client.
func (s *h2Stream) endBody(trailer *h1.Head) error { return s.st.Close(trailer) }

// requestTrailer implements client.
func (s *h2Stream) requestTrailer() *h1.Head { return s.st.Trailer() }

func (s *h2Stream) tlsState() (tls.ConnectionState, bool) { return s.st.TLS() }

// writeError implements client.
func (s *h2Stream) writeError(status int) {
	_, body := statusText(status)
	h := &s.errHead
	h.Reset()
	h.Add("Content-Type", []byte("text/plain; charset=utf-8"))
	h.Add("Content-Length", strconv.AppendInt(nil, int64(len(body)), 10))
	h.Add("Cache-Control", []byte("no-cache"))
	if s.st.WriteHeader(status, h, false) != nil {
		return
	}
	if _, err := io.WriteString(s.st, body); err != nil {
		return
	}
	_ = s.st.Close(nil)
}
