package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"lb/h1"
)

// HTTP/2 clients are served by net/http's HTTP/2 server: lb hands it each
// TLS connection that negotiated h2, and its handler feeds every stream to
// the same exchange as HTTP/1.1 requests. Servers are spoken to in
// HTTP/1.1.

// h2Server serves a frontend's HTTP/2 connections.
type h2Server struct {
	f   *Frontend
	srv *http.Server
	ln  *connQueue

	mu    sync.Mutex
	shut  bool
	conns map[net.Conn]chan struct{}
}

// serveH2 serves one TLS connection that negotiated h2, until it ends.
func (f *Frontend) serveH2(tc *tls.Conn) {
	f.h2once.Do(func() {
		h := newH2Server(f)
		f.h2.Store(h)
		go h.serve()
	})
	done := f.h2.Load().add(tc)
	if done == nil {
		goAway(tc, f.RequestTimeout)
		return
	}
	<-done
}

// goAway turns away an HTTP/2 connection that arrived after the server
// shut down: a SETTINGS frame then a GOAWAY that accepted no stream, so the
// client sends its requests again on a new connection (to the new
// generation) instead of seeing them fail.
func goAway(tc *tls.Conn, wait time.Duration) {
	defer tc.Close()
	frames := []byte{
		0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
		0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes
		0, 0, 0, 0, // last stream id 0
		0, 0, 0, 0, // NO_ERROR
	}
	_ = tc.SetDeadline(time.Now().Add(wait))
	if _, err := tc.Write(frames); err != nil {
		return
	}
	_ = tc.CloseWrite()
	// Read what the client sends until it closes, so that closing does
	// not reset the connection before the client has read the GOAWAY.
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, 1<<20))
}

func newH2Server(f *Frontend) *h2Server {
	h := &h2Server{f: f, ln: newConnQueue(), conns: map[net.Conn]chan struct{}{}}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: f.RequestTimeout,
		IdleTimeout:       f.KeepAliveTimeout,
		MaxHeaderBytes:    f.Limits.MaxHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState:         h.connState,
	}
	return h
}

// serve runs the HTTP/2 server until it is shut down.
func (h *h2Server) serve() { _ = h.srv.Serve(h.ln) }

// add hands a connection to the server and returns a channel closed when
// it ends, or nil when the server is shut down.
func (h *h2Server) add(c net.Conn) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shut {
		return nil
	}
	done := make(chan struct{})
	h.conns[c] = done
	h.ln.push(c)
	return done
}

// connState closes a connection's channel once the server is done with it.
func (h *h2Server) connState(c net.Conn, s http.ConnState) {
	if s != http.StateClosed && s != http.StateHijacked {
		return
	}
	h.mu.Lock()
	if done, ok := h.conns[c]; ok {
		close(done)
		delete(h.conns, c)
	}
	h.mu.Unlock()
}

// shutdown sends GOAWAY to every connection and lets their streams finish.
func (h *h2Server) shutdown() {
	h.mu.Lock()
	h.shut = true
	h.mu.Unlock()
	go h.shutdownWait()
}

// shutdownWait is shutdown's goroutine: net/http's Shutdown waits for the
// streams in flight, which the generation's hard stop bounds.
func (h *h2Server) shutdownWait() { _ = h.srv.Shutdown(context.Background()) }

// connQueue is the net.Listener the HTTP/2 server accepts from.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.closed:
		_ = c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }

// h2Stream is one HTTP/2 request, as the exchange's client.
type h2Stream struct {
	x exchange
	w http.ResponseWriter
	r *http.Request
	// trailer holds the request's trailer fields for the server.
	trailer h1.Head
}

var h2Streams = sync.Pool{New: func() any { return new(h2Stream) }}

// ServeHTTP serves one HTTP/2 stream.
func (h *h2Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h2Streams.Get().(*h2Stream)
	defer func() {
		st.x.reset()
		st.trailer.Reset()
		st.w, st.r = nil, nil
		h2Streams.Put(st)
	}()
	st.w, st.r = w, r
	x := &st.x
	x.f, x.cl, x.tls, x.done = h.f, st, true, r.Context().Done()
	x.peer, _ = netip.ParseAddrPort(r.RemoteAddr)
	x.tStart = time.Now()
	x.tHead = x.tStart
	req := &x.req
	req.Method = append(req.Method[:0], r.Method...)
	req.Target = append(req.Target[:0], r.RequestURI...)
	req.Minor = 1
	req.KeepAlive = true
	req.Add("Host", []byte(r.Host))
	for name, vs := range r.Header {
		for _, v := range vs {
			req.Add(name, []byte(v))
		}
	}
	// r.Trailer holds the names of the trailer fields the client
	// announced (net/http takes its Trailer header out of r.Header): the
	// server is told of them, and the body goes chunked, the only way
	// HTTP/1.1 has to carry them.
	trailers := r.ContentLength != 0 && announceTrailers(req, r.Trailer)
	switch {
	case r.ContentLength > 0 && !trailers:
		req.Body = h1.Body{Kind: h1.BodyLength, Length: r.ContentLength}
		x.reqBody, x.reqLen = r.Body, r.ContentLength
	case r.ContentLength > 0:
		// Still a BodyLength, for max_body_bytes to refuse it at once.
		req.Body = h1.Body{Kind: h1.BodyLength, Length: r.ContentLength}
		x.reqBody, x.reqLen = r.Body, -1
	case r.ContentLength < 0:
		req.Body = h1.Body{Kind: h1.BodyChunked}
		x.reqBody, x.reqLen = r.Body, -1
	}
	x.run()
}

// announceTrailers adds to req a Trailer field naming the fields of
// trailer that may be forwarded as trailers, in order, and reports whether
// there is one.
func announceTrailers(req *h1.Request, trailer http.Header) bool {
	if len(trailer) == 0 {
		return false
	}
	names := make([]string, 0, len(trailer))
	for name := range trailer {
		if h1.TrailerAllowed(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return false
	}
	slices.Sort(names)
	req.Add("Trailer", []byte(strings.Join(names, ", ")))
	return true
}

// informational implements client: HTTP/2 clients get none.
func (st *h2Stream) informational(*h1.Response) error { return nil }

// continue100 implements client: net/http answers Expect: 100-continue
// itself when the body is read.
func (st *h2Stream) continue100() error { return nil }

// writeHead implements client.
func (st *h2Stream) writeHead(resp *h1.Response, _ bool) (io.Writer, *bufio.Writer, error) {
	hdr := st.w.Header()
	for _, fl := range resp.Fields {
		name := http.CanonicalHeaderKey(string(fl.Name))
		hdr[name] = append(hdr[name], string(fl.Value))
	}
	st.w.WriteHeader(resp.Status)
	return flushWriter{st.w}, nil, nil
}

// abortBody implements client: closing the body ends a read under way.
func (st *h2Stream) abortBody() { _ = st.r.Body.Close() }

// endBody implements client: net/http sends the header fields named with
// http.TrailerPrefix as HTTP/2 trailers when the handler returns.
func (st *h2Stream) endBody(trailer *h1.Head) error {
	if trailer == nil || len(trailer.Fields) == 0 {
		return nil
	}
	hdr := st.w.Header()
	for _, fl := range trailer.Fields {
		name := http.TrailerPrefix + http.CanonicalHeaderKey(string(fl.Name))
		hdr[name] = append(hdr[name], string(fl.Value))
	}
	return nil
}

// requestTrailer implements client: net/http fills r.Trailer once the
// body has been read to its end.
func (st *h2Stream) requestTrailer() *h1.Head {
	st.trailer.Reset()
	names := make([]string, 0, len(st.r.Trailer))
	for name := range st.r.Trailer {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range st.r.Trailer[name] {
			st.trailer.Add(name, []byte(v))
		}
	}
	return &st.trailer
}

// writeError implements client.
func (st *h2Stream) writeError(status int) {
	_, body := statusText(status)
	st.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	st.w.Header().Set("Cache-Control", "no-cache")
	st.w.WriteHeader(status)
	_, _ = io.WriteString(st.w, body)
}

// flushWriter flushes each write, so a streamed body reaches the client as
// it comes.
type flushWriter struct{ w http.ResponseWriter }

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if err == nil {
		err = http.NewResponseController(fw.w).Flush()
	}
	return n, err
}
