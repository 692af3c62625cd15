package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers for the HTTP-mode tests: real net/http backends on loopback, an
// HTTP-mode configuration, clients, raw requests and lb's access log.

// httpBackend is a real net/http server on 127.0.0.1:0. By default it
// answers every request with an echoReply (JSON) naming itself, and the
// response headers X-Server (its name), X-Secret ("s3cret") and
// X-Resp-Order ("server"), so that response header rules have something
// to change; to a request with an X-Echo-Hop header it adds hop-by-hop
// response fields: Connection: X-Resp-Hop, X-Resp-Hop and Keep-Alive. It counts the requests it handled and the connections it
// accepted, and remembers the paths it was asked for.
type httpBackend struct {
	name string
	ln   net.Listener
	srv  *http.Server
	h    http.HandlerFunc // nil: echo

	// requests counts requests that reached a handler; conns counts the
	// connections the server accepted.
	requests, conns atomic.Int64

	mu    sync.Mutex
	paths []string
}

// echoReply is what an httpBackend's echo answers: the request as the
// server received it.
type echoReply struct {
	Server  string      `json:"server"`
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Host    string      `json:"host"`
	Proto   string      `json:"proto"`
	Header  http.Header `json:"header"`
	BodyLen int64       `json:"body_len"`
	Body    string      `json:"body"` // the first 4 KiB
	// TE is the request's Transfer-Encoding as net/http decoded it.
	TE []string `json:"te"`
}

// startHTTPBackend starts an echo backend named name; it stops when the
// test ends.
func startHTTPBackend(t *testing.T, name string) *httpBackend {
	t.Helper()
	return startHTTPBackendFunc(t, name, nil)
}

// startHTTPBackendFunc starts a backend named name whose requests are
// served by h (nil: the echo). h may call b.echo itself.
func startHTTPBackendFunc(t *testing.T, name string, h func(b *httpBackend, w http.ResponseWriter, r *http.Request)) *httpBackend {
	t.Helper()
	return startHTTPBackendTLS(t, name, h, nil)
}

// startHTTPBackendTLS is startHTTPBackendFunc for a server that speaks TLS
// with tc (nil: plain TCP).
func startHTTPBackendTLS(t *testing.T, name string, h func(b *httpBackend, w http.ResponseWriter, r *http.Request), tc *tls.Config) *httpBackend {
	t.Helper()
	return startHTTPBackendIdle(t, name, h, tc, 30*time.Second)
}

// startHTTPBackendIdle is startHTTPBackendTLS for a server that closes
// keep-alive connections idle for idle.
func startHTTPBackendIdle(t *testing.T, name string, h func(b *httpBackend, w http.ResponseWriter, r *http.Request), tc *tls.Config, idle time.Duration) *httpBackend {
	t.Helper()
	return startBackendProtos(t, name, h, tc, idle, nil)
}

// startBackendProtos is startHTTPBackendIdle for a server that speaks
// protos (nil: net/http's defaults, HTTP/1.1 and h2 over TLS).
func startBackendProtos(t *testing.T, name string, h func(b *httpBackend, w http.ResponseWriter, r *http.Request), tc *tls.Config, idle time.Duration, protos *http.Protocols) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: name, ln: ln}
	if h != nil {
		b.h = func(w http.ResponseWriter, r *http.Request) { h(b, w, r) }
	}
	b.srv = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
		TLSConfig: tc,
		Protocols: protos,
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *httpBackend) addr() string { return b.ln.Addr().String() }

// seen returns the paths the backend was asked for, in order.
func (b *httpBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...)
}

func (b *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	b.mu.Lock()
	b.paths = append(b.paths, r.URL.Path)
	b.mu.Unlock()
	if b.h != nil {
		b.h(w, r)
		return
	}
	b.echo(w, r)
}

// echo answers r with an echoReply.
func (b *httpBackend) echo(w http.ResponseWriter, r *http.Request) {
	var first strings.Builder
	n, _ := io.Copy(&first, io.LimitReader(r.Body, 4096))
	rest, _ := io.Copy(io.Discard, r.Body)
	reply := echoReply{Server: b.name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
		Proto: r.Proto, Header: r.Header, BodyLen: n + rest, Body: first.String(), TE: r.TransferEncoding}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Server", b.name)
	w.Header().Set("X-Secret", "s3cret")
	w.Header().Set("X-Resp-Order", "server")
	if r.Header.Get("X-Echo-Hop") != "" {
		// Hop-by-hop response fields, which lb must not pass on.
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
	}
	_ = json.NewEncoder(w).Encode(reply)
}

// httpConfig returns an HTTP-mode configuration:
//   - [global] with log_level "info" and close_spread_time "200ms", then
//     extraGlobal (other [global] keys, such as admin_socket);
//   - [defaults] with mode "http", short timeouts (connect 1s, client and
//     server 5s, http_request 1s, http_keep_alive 5s, queue 1s, tunnel
//     10s) and checks off (type "none");
//   - one frontend "web" on 127.0.0.1:port whose default backend is "app",
//     followed by frontend: more keys of that frontend, then its
//     sub-tables ([frontend.http], [[frontend.route]], ...), and possibly
//     more [[frontend]] tables;
//   - backends: the [[backend]] tables (see httpBackendTable), one of which
//     must be "app".
func httpConfig(port int, extraGlobal, frontend, backends string) string {
	return fmt.Sprintf(`[global]
log_level = "info"
close_spread_time = "200ms"
%s

[defaults]
mode = "http"

[defaults.timeout]
connect = "1s"
client = "5s"
server = "5s"
http_request = "1s"
http_keep_alive = "5s"
queue = "1s"
tunnel = "10s"

[defaults.check]
type = "none"

[[frontend]]
name = "web"
bind = ["127.0.0.1:%d"]
default_backend = "app"
%s

%s`, extraGlobal, port, frontend, backends)
}

// httpBackendTable returns a [[backend]] table named name: extra (keys,
// then sub-tables such as [backend.timeout]), then one [[backend.server]]
// per server, named by the server's name.
func httpBackendTable(name, extra string, servers ...*httpBackend) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "[[backend]]\nname = %q\n%s\n", name, extra)
	for _, s := range servers {
		sb.WriteString(serverLine(s.name, s.addr(), ""))
	}
	return sb.String()
}

// startHTTPLB writes httpConfig(port, extraGlobal, frontend, backends) on a
// free port, starts lb with it and returns lb and "127.0.0.1:port".
func startHTTPLB(t *testing.T, extraGlobal, frontend, backends string) (*lbProc, string) {
	t.Helper()
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, httpConfig(port, extraGlobal, frontend, backends)))
	return p, fmt.Sprintf("127.0.0.1:%d", port)
}

// newHTTPClient returns a client with a transport of its own (no proxy
// from the environment, no gzip), whose idle connections are closed when
// the test ends.
func newHTTPClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// getEcho sends req with c, expects 200 and an echoReply, and returns it
// with the response.
func getEcho(t *testing.T, c *http.Client, req *http.Request) (*http.Response, echoReply) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d, body %q", req.Method, req.URL, resp.StatusCode, body)
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s %s: body %q is not an echo: %v", req.Method, req.URL, body, err)
	}
	return resp, e
}

// newRequest is http.NewRequest that fails the test on error.
func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// rawResponse is a response read off a raw connection.
type rawResponse struct {
	*http.Response
	body string
	// closed says the connection ended right after the response.
	closed bool
	// client is the connection's local address, as lb logs it.
	client string
}

// rawHTTP opens a connection to addr, writes raw, reads one response
// (within 10 s) and checks whether lb then closes the connection.
func rawHTTP(t *testing.T, addr, raw string) rawResponse {
	t.Helper()
	r, err := tryRawHTTP(addr, raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryRawHTTP is rawHTTP returning its error, for other goroutines than
// the test's.
func tryRawHTTP(addr, raw string) (rawResponse, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return rawResponse{}, fmt.Errorf("writing %q: %w", raw, err)
	}
	return tryReadRaw(c, bufio.NewReader(c), "GET")
}

// readRaw reads one response to a request of method from br, c's reader,
// and then, when the response says Connection: close, whether c ends
// (within 2 s).
func readRaw(t *testing.T, c net.Conn, br *bufio.Reader, method string) rawResponse {
	t.Helper()
	r, err := tryReadRaw(c, br, method)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryReadRaw is readRaw returning its error.
func tryReadRaw(c net.Conn, br *bufio.Reader, method string) (rawResponse, error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return rawResponse{}, fmt.Errorf("no response from lb: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return rawResponse{}, fmt.Errorf("status %d: reading the body: %w", resp.StatusCode, err)
	}
	r := rawResponse{Response: resp, body: string(body), client: c.LocalAddr().String()}
	if resp.Close {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := br.Read(make([]byte, 1))
		r.closed = n == 0 && err == io.EOF
	}
	return r, nil
}

// waitRequestLog waits up to 10 s for lb's access log line ("request")
// that ok matches.
func waitRequestLog(t *testing.T, p *lbProc, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	return waitLog(t, p, "request", ok)
}

// logStatus returns a log line's status as an int.
func logStatus(l map[string]any) int {
	f, _ := l["status"].(float64)
	return int(f)
}

// vmHWM returns the peak resident set size of pid, in bytes, from
// /proc/PID/status.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	return procStatusKB(t, pid, "VmHWM:") << 10
}

// vmRSS returns the resident set size of pid, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	return procStatusKB(t, pid, "VmRSS:") << 10
}

func procStatusKB(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// patternReader yields n bytes of a pattern that repeats a random 1 MiB
// block, each copy stamped with its index in its first 8 bytes, so that a
// lost, repeated or reordered block shows. It holds 1 MiB, whatever n.
type patternReader struct {
	n, off int64
}

// patternBlock is the pattern's block, the same for every reader.
var patternBlock = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

func newPatternReader(n int64) *patternReader { return &patternReader{n: n} }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	const size = int64(1 << 20)
	total := 0
	for len(b) > 0 && p.off < p.n {
		in := p.off % size
		k := min(int64(len(b)), size-in, p.n-p.off)
		copy(b[:k], patternBlock[in:in+k])
		// The stamp: the block's index, big-endian, over its first 8 bytes.
		var stamp [8]byte
		binary.BigEndian.PutUint64(stamp[:], uint64(p.off/size))
		for i := in; i < 8 && i < in+k; i++ {
			b[i-in] = stamp[i]
		}
		b, p.off, total = b[k:], p.off+k, total+int(k)
	}
	return total, nil
}

// comparePattern reads r to its end and checks that it is exactly the
// n bytes of a patternReader; it returns how many bytes it read.
func comparePattern(r io.Reader, n int64) (int64, error) {
	want := newPatternReader(n)
	got := make([]byte, 64<<10)
	exp := make([]byte, 64<<10)
	var read int64
	for {
		k, err := io.ReadFull(r, got)
		if k > 0 {
			if _, werr := io.ReadFull(want, exp[:k]); werr != nil {
				return read, fmt.Errorf("more than the %d bytes sent", n)
			}
			if !bytes.Equal(got[:k], exp[:k]) {
				return read, fmt.Errorf("bytes %d to %d differ from those sent", read, read+int64(k))
			}
			read += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if read != n {
				return read, fmt.Errorf("%d bytes, want %d", read, n)
			}
			return read, nil
		}
		if err != nil {
			return read, err
		}
	}
}

// wsGUID is the key suffix of the WebSocket handshake (RFC 6455 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsAccept is the Sec-WebSocket-Accept of a Sec-WebSocket-Key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// WebSocket opcodes.
const (
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
)

// wsWriteFrame writes one final frame; masked frames (a client's) are
// masked with a random key.
func wsWriteFrame(w io.Writer, opcode byte, payload []byte, masked bool) error {
	hdr := []byte{0x80 | opcode, 0}
	n := len(payload)
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n < 1<<16:
		hdr[1] = 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr[1] = 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	if masked {
		hdr[1] |= 0x80
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
		hdr = append(hdr, key[:]...)
		p := make([]byte, n)
		for i := range payload {
			p[i] = payload[i] ^ key[i%4]
		}
		payload = p
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// wsReadFrame reads one frame (at most 16 MiB) and unmasks it; masked
// says whether it was.
func wsReadFrame(r io.Reader) (opcode byte, payload []byte, masked bool, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, false, err
	}
	if hdr[0]&0x80 == 0 {
		return 0, nil, false, errors.New("fragmented frame")
	}
	opcode, masked = hdr[0]&0x0f, hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 16<<20 {
		return 0, nil, false, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, false, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return opcode, payload, masked, nil
}

// wsEcho is an httpBackend handler that completes a WebSocket handshake
// (on /greet it sends a "welcome" text frame with its 101, on /refuse it
// answers 403 instead) and echoes every data frame, unmasked, until the client sends a close
// frame (echoed, then the server closes) or the connection ends. It
// reports each connection's end on done: nil after a close
// handshake, else the error that ended it.
func wsEcho(done chan<- error) func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
	return func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no WebSocket here", http.StatusForbidden)
			return
		}
		key := r.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" ||
			!strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Server: %s\r\n\r\n", wsAccept(key), b.name)
		if r.URL.Path == "/greet" {
			// A first frame from the server, in the same write as the 101.
			_ = wsWriteFrame(brw, wsText, []byte("welcome"), false)
		}
		if err := brw.Flush(); err != nil {
			done <- err
			return
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		for {
			op, payload, masked, err := wsReadFrame(brw)
			if err != nil {
				done <- err
				return
			}
			if !masked {
				done <- errors.New("the client's frame was not masked")
				return
			}
			if err := wsWriteFrame(c, op, payload, false); err != nil {
				done <- err
				return
			}
			if op == wsClose {
				done <- nil
				return
			}
		}
	}
}

// rawBackend is a TCP server on 127.0.0.1:0 that serves each connection
// with a function of the test's: a server that misbehaves below HTTP.
type rawBackend struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// startRawBackend starts a raw backend named name; handle gets each
// connection, which is closed when handle returns. It stops when the test
// ends.
func startRawBackend(t *testing.T, name string, handle func(c net.Conn)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{name: name, ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// line is the backend's [[backend.server]] table.
func (b *rawBackend) line() string { return serverLine(b.name, b.addr(), "") }

// cannedAnswer is what a canned backend writes for a path: raw bytes,
// then the end of the connection when closeConn is set.
type cannedAnswer struct {
	raw       string
	closeConn bool
}

// startCannedBackend starts a raw backend that reads request after
// request on each connection, reads each body away and answers with
// answers[path], or a 404.
func startCannedBackend(t *testing.T, name string, answers map[string]cannedAnswer) *rawBackend {
	return startRawBackend(t, name, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			a, ok := answers[req.URL.Path]
			if !ok {
				a = cannedAnswer{raw: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"}
			}
			if _, err := io.WriteString(c, a.raw); err != nil || a.closeConn {
				return
			}
		}
	})
}

// readHead reads from c up to the end of a request head (or 64 KiB, or an
// error).
func readHead(c net.Conn) {
	var head []byte
	buf := make([]byte, 4096)
	for len(head) < 64<<10 && !bytes.Contains(head, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			return
		}
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}
