package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxBody is how much of a response body the HTTP check searches.
const maxBody = 64 << 10

// userAgent identifies the HTTP check's requests.
const userAgent = "lb-health-check"

// checkError is a failed check: a short reason for people, and the error
// behind it for debugging.
type checkError struct {
	reason string
	err    error
}

func (e *checkError) Error() string { return e.reason }
func (e *checkError) Unwrap() error { return e.err }

// fail wraps err as a failed check whose reason is what describe makes of it.
func fail(err error) *checkError { return &checkError{reason: describe(err), err: err} }

// reasonOf is the short reason a check failed for.
func reasonOf(err error) string {
	var ce *checkError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return describe(err)
}

// probe checks the target once, within its Timeout and ctx. It returns nil
// when the check passes, else a *checkError.
func (t *target) probe(ctx context.Context) error {
	if t.setupErr != nil {
		return t.setupErr
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if len(t.ProxyHeader) > 0 {
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetWriteDeadline(dl)
		}
		if _, err := conn.Write(t.ProxyHeader); err != nil {
			return fail(fmt.Errorf("sending the PROXY protocol header: %w", err))
		}
	}
	if t.Type == TypeTCP {
		return nil
	}
	if t.HTTP2 {
		return t.exchangeH2(ctx, conn)
	}
	return t.exchange(ctx, conn)
}

// exchangeH2 sends the HTTP check's request over conn in HTTP/2: with TLS
// (h2 by ALPN) when the settings have a TLS configuration, else in
// cleartext with prior knowledge, as lb's requests to the server go.
func (t *target) exchangeH2(ctx context.Context, conn net.Conn) error {
	given := false
	dial := func(context.Context) (net.Conn, error) {
		if given {
			return nil, errors.New("the check's connection was used already")
		}
		given = true
		return conn, nil
	}
	tr := h2Transport(t.TLS, dial, t.Timeout)
	scheme := "http"
	if t.TLS != nil {
		scheme = "https"
	}
	cc, err := tr.NewClientConn(ctx, scheme, t.Addr)
	if err != nil {
		return fail(fmt.Errorf("starting HTTP/2: %w", err))
	}
	defer cc.Close()
	req, err := http.NewRequestWithContext(ctx, t.method(), scheme+"://"+t.Addr+t.path(), nil)
	if err != nil {
		return fail(err)
	}
	req.Host = t.host()
	req.Header.Set("User-Agent", userAgent)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return badResponse(err)
	}
	defer resp.Body.Close()
	return t.judge(resp)
}

// exchange sends the HTTP check's request over conn and judges the response.
func (t *target) exchange(ctx context.Context, conn net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return fail(err)
		}
	}
	// Unblock reads and writes at once if ctx ends before the deadline,
	// and leave nothing running behind.
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetDeadline(time.Unix(1, 0))
		close(unblocked)
	})
	defer func() {
		if !stop() {
			<-unblocked
		}
	}()

	if _, err := conn.Write(t.request); err != nil {
		return fail(fmt.Errorf("sending the request: %w", err))
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: t.method()})
	if err != nil {
		return badResponse(err)
	}
	defer resp.Body.Close()
	return t.judge(resp)
}

// h2Transport returns a transport that speaks HTTP/2 only: over TLS with
// tc (h2 by ALPN), or in cleartext with prior knowledge when tc is nil,
// on the connection dial gives. (A check is rare: net/http's client does.)
func h2Transport(tc *tls.Config, dial func(ctx context.Context) (net.Conn, error), handshake time.Duration) *http.Transport {
	var protos http.Protocols
	t := &http.Transport{
		TLSHandshakeTimeout: handshake,
		DisableCompression:  true,
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		t.TLSClientConfig = tc
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	t.Protocols = &protos
	return t
}

// judge says whether resp passes the check: its status, and its body
// when the check looks for a string in it.
func (t *target) judge(resp *http.Response) error {
	if !statusOK(resp.StatusCode, t.Expect) {
		return &checkError{
			reason: fmt.Sprintf("HTTP status %d, want %s", resp.StatusCode, formatRanges(t.Expect)),
			err:    fmt.Errorf("response status %q", resp.Status),
		}
	}
	if t.Body == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return badResponse(fmt.Errorf("reading the body: %w", err))
	}
	if !bytes.Contains(body, []byte(t.Body)) {
		return &checkError{
			reason: fmt.Sprintf("body does not contain %q", t.Body),
			err:    fmt.Errorf("%d bytes of body searched", len(body)),
		}
	}
	return nil
}

// badResponse is a failure to read the response: timeouts and resets say so,
// anything else is a bad response.
func badResponse(err error) *checkError {
	switch {
	case isTimeout(err), errors.Is(err, syscall.ECONNRESET):
		return fail(err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &checkError{reason: "bad HTTP response: connection closed early", err: err}
	}
	return &checkError{reason: "bad HTTP response: " + err.Error(), err: err}
}

// method is the HTTP check's method.
func (t *target) method() string {
	if t.Method == "" {
		return http.MethodGet
	}
	return t.Method
}

// buildRequest serializes the HTTP check's request once: each check sends
// the same bytes.
func buildRequest(s *Settings) ([]byte, error) {
	path := s.path()
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", path)
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", path, err)
	}
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		return nil, fmt.Errorf("check address %q: %w", s.Addr, err)
	}
	host := s.host()
	method := s.Method
	if method == "" {
		method = http.MethodGet
	}
	req := &http.Request{
		Method: method, URL: u, Host: host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"User-Agent": {userAgent}}, Close: true,
	}
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return nil, fmt.Errorf("HTTP request %s %s: %w", method, path, err)
	}
	return b.Bytes(), nil
}

// path is the HTTP check's path.
func (s *Settings) path() string {
	if s.Path == "" {
		return "/"
	}
	return s.Path
}

// host is the HTTP check's Host: the one set, or the checked address's.
func (s *Settings) host() string {
	if s.Host != "" {
		return s.Host
	}
	h, _, _ := net.SplitHostPort(s.Addr)
	if strings.Contains(h, ":") {
		return "[" + h + "]" // IPv6
	}
	return h
}

// defaultExpect are the statuses that pass when Expect is empty.
var defaultExpect = [][2]int{{200, 399}}

// statusOK reports whether code is in one of the ranges.
func statusOK(code int, ranges [][2]int) bool {
	if len(ranges) == 0 {
		ranges = defaultExpect
	}
	for _, r := range ranges {
		if r[0] <= code && code <= r[1] {
			return true
		}
	}
	return false
}

// formatRanges writes ranges as "200-299 or 304".
func formatRanges(ranges [][2]int) string {
	if len(ranges) == 0 {
		ranges = defaultExpect
	}
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = strconv.Itoa(r[0])
		if r[1] != r[0] {
			parts[i] += "-" + strconv.Itoa(r[1])
		}
	}
	return strings.Join(parts, " or ")
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// describe makes a short reason of a network error.
func describe(err error) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// lastErrorText is a traffic error as passive mark-downs quote it: the
// system's words for it ("connection reset by peer") when there are some.
func lastErrorText(err error) string {
	if isTimeout(err) {
		return "timeout"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
