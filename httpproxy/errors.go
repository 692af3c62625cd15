package httpproxy

import (
	"errors"
	"fmt"
	"net"
	"os"

	"lb/h1"
)

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

// errServer5xx is what the passive health check hears of a 5xx answer;
// proxy.ErrServerReset and proxy.ErrServerTimeout, of a failed or stalled
// server connection.
var errServer5xx = errors.New("server answered 5xx")

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

// errConnect refuses CONNECT: lb is a reverse proxy, not a forward one.
var errConnect = errors.New("CONNECT is not supported")

// errBodyTooLarge is a chunked body that went over max_body_bytes.
var errBodyTooLarge = errors.New("request body over max_body_bytes")

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
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
