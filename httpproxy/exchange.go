package httpproxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/netip"
	"sync"
	"time"

	"lb/balancer"
	"lb/h1"
	"lb/h2"
	"lb/proxy"
	"lb/rules"
)

// An exchange is one request and its response, in stages, a file each:
//
//   - request.go: run, the request's way through the stages; its id, its
//     hash key and cookie, and the head the server gets (prepareRequest).
//   - forward.go: connecting to a server (proxy.Backend.Connect), sending
//     the request, reading the response head, and sending the request once
//     more when a pooled connection turns out stale.
//   - upload.go: the request body, going up beside the response.
//   - response.go: respond, the response's way to the client in named
//     steps: header rules and cookie, the head, the body, the trailer,
//     the release of the server connection.
//   - errors.go: the responses lb makes itself, the ends of a request.
//   - log.go: the request's log line.
//
// This file holds what the stages share: the exchange, its client, and
// the copy of a body.

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
	// resumeBody undoes abortBody when the body had all been read: the
	// client's next request may be read.
	resumeBody()
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
	// tlsState returns the TLS state of the client's connection, false
	// when it is not TLS: for the access log.
	tlsState() (tls.ConnectionState, bool)
}

// exchange is one request and its response. Exchanges are reused: an
// HTTP/1.1 connection keeps one, HTTP/2 streams take them from a pool.
type exchange struct {
	f    *Frontend
	cl   client
	conn *proxy.Conn // the client's connection, as the frontend counts it
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

	be  *Backend
	srv *balancer.Server
	// counted is the server that took the request, counted at the end
	// when srv was released.
	counted *balancer.Server
	sc      *serverConn
	// call is the request to an HTTP/2 server (a backend with proto =
	// "h2"), in place of sc.
	call *h2Call
	// dial is the way to the server: the servers tried, the one a cookie
	// named.
	dial  proxy.Connecting
	stuck bool // the client's cookie named the server it got
	// h2st is the HTTP/2 stream served, watched while the exchange waits
	// (a stream reset ends the wait); nil for HTTP/1.1, whose client is
	// not watched then.
	h2st *h2.Stream
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
	// pol is what the frontend's conditions see of the request, taken
	// from policies when the frontend has a policy or conditional rules
	// (see subject); nil otherwise.
	pol     *policyState
	idbuf   [64]byte
	upgrade []byte // the Upgrade header of an upgrade request

	cw  h1.ChunkedWriter
	scr h1.ChunkedReader
	sr  timedReader      // the response body, from the server
	lr  io.LimitedReader // a response body of known length, under sr
	sw  timedWriter      // the request body, to the server

	// Timings, for the log: when the request's first byte came, when its
	// head was read, when the server was connected, when its response
	// head came.
	tStart, tHead, tConnect, tResp time.Time
	// tEnd is when the exchange released its server connection, the
	// time finish logs; zero: finish reads the clock.
	tEnd              time.Time
	status            int
	bytesIn, bytesOut int64
	retries           int
	end               string
	err               error
}

// reset makes x ready for a next request, keeping its buffers.
func (x *exchange) reset() {
	x.putPolicy()
	req, resp, scratch := x.req, x.resp, x.scratch[:0]
	req.Reset()
	resp.Reset()
	*x = exchange{f: x.f, cl: x.cl, conn: x.conn, peer: x.peer, tls: x.tls, req: req, resp: resp, scratch: scratch,
		cw: x.cw, scr: x.scr, up: upload{done: x.up.done}}
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
