package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"lb/h1"
	"lb/internal/testcert"
)

// HTTP/2 as clients can send it: lb must forward only what its strict
// HTTP/1 parser would accept, answer what it cannot forward with a stream
// error, never blame a server for it, and pass h2spec.

// startH2LB starts lb with a TLS frontend (h2 and http/1.1) in front of
// backends, and returns lb and the frontend's address. frontend adds keys
// and tables to the frontend; checks is the [defaults.check] table.
func startH2LB(t *testing.T, extraGlobal, frontend, backends string) (*lbProc, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "lb", "127.0.0.1", "lb.test")
	return startHTTPLB(t, extraGlobal, fmt.Sprintf("[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n%s", crt, key, frontend), backends)
}

// h2Client speaks HTTP/2 over TLS frame by frame, so that a test can send
// what a well-behaved client library would refuse to.
type h2Client struct {
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
	id  uint32
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	h := &h2Client{c: c, fr: http2.NewFramer(c, c), id: 1}
	h.enc = hpack.NewEncoder(&h.buf)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// h2Outcome is how lb ended a stream: the response's status, or the
// reset's code.
type h2Outcome struct {
	status string
	reset  http2.ErrCode
	isRST  bool
}

func (o h2Outcome) String() string {
	if o.isRST {
		return "RST_STREAM " + o.reset.String()
	}
	return "status " + o.status
}

// request sends a request made of fields ("name: value", pseudo-headers
// first) and body (none when empty), and returns how lb ended the stream.
func (h *h2Client) request(t *testing.T, body string, lines ...string) h2Outcome {
	t.Helper()
	id := h.id
	h.id += 2
	h.buf.Reset()
	for _, l := range lines {
		i := strings.Index(l[1:], ": ") + 1
		_ = h.enc.WriteField(hpack.HeaderField{Name: l[:i], Value: l[i+2:]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: body == "", EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if body != "" {
		if err := h.fr.WriteData(id, true, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out h2Outcome
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			t.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return h2Outcome{reset: f.ErrCode, isRST: true}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); !strings.HasPrefix(s, "1") {
					out.status = s
				}
				if f.StreamEnded() {
					return out
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return out
			}
		}
	}
}

// recordingBackend answers every request with 200 and keeps the head of
// each, as it came on the wire.
type recordingBackend struct {
	*rawBackend
	mu    sync.Mutex
	heads []string
}

func startRecordingBackend(t *testing.T, name string) *recordingBackend {
	b := &recordingBackend{}
	b.rawBackend = startRawBackend(t, name, func(c net.Conn) {
		var wire bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &wire))
		for {
			var req h1.Request
			if err := h1.ReadRequest(br, &req, h1.Limits{}); err != nil {
				if wire.Len() > 0 {
					b.record(wire.String() + " [unreadable: " + err.Error() + "]")
				}
				return
			}
			b.record(wire.String()[:wire.Len()-br.Buffered()])
			wire.Next(wire.Len() - br.Buffered())
			if req.Body.Kind == h1.BodyLength {
				_, _ = io.CopyN(io.Discard, br, req.Body.Length)
			} else if req.Body.Kind == h1.BodyChunked {
				var cr h1.ChunkedReader
				cr.Reset(br, h1.Limits{})
				_, _ = io.Copy(io.Discard, &cr)
			}
			wire.Reset()
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return b
}

func (b *recordingBackend) record(head string) {
	b.mu.Lock()
	b.heads = append(b.heads, head)
	b.mu.Unlock()
}

// take returns the heads received since the last call.
func (b *recordingBackend) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.heads
	b.heads = nil
	return h
}

// TestH2AmbiguousRequests: each HTTP/2 request that would reach the server
// as an ambiguous HTTP/1.1 request (or one lb's parser refuses) is reset
// with PROTOCOL_ERROR and sends the server nothing; the request log says
// why. A valid request reaches the server as one strict HTTP/1.1 head.
func TestH2AmbiguousRequests(t *testing.T) {
	rec := startRecordingBackend(t, "rec")
	p, addr := startH2LB(t, "", "", "[[backend]]\nname = \"app\"\n"+rec.line())
	c := dialH2(t, addr)
	for _, tc := range []struct {
		name  string
		body  string
		lines []string
		log   string
	}{
		{"host differs from authority", "", []string{":method: GET", ":scheme: https", ":path: /", ":authority: good.example", "host: evil.example"}, "differs from :authority"},
		{"content-length list", "12345", []string{":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5, 6"}, "invalid content-length"},
		{"two content-lengths", "12345", []string{":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5", "content-length: 6"}, "several content-length"},
		{"authority with space and slash", "", []string{":method: GET", ":scheme: https", ":path: /", ":authority: a b/c"}, "invalid :authority"},
		{"space in path", "", []string{":method: GET", ":scheme: https", ":path: /a b", ":authority: a"}, "holds a character"},
		{"fragment in path", "", []string{":method: GET", ":scheme: https", ":path: /a#x", ":authority: a"}, "holds a character"},
		{"byte over 0x7e in path", "", []string{":method: GET", ":scheme: https", ":path: /caf\xc3\xa9", ":authority: a"}, "holds a character"},
		{"connection-specific field", "", []string{":method: GET", ":scheme: https", ":path: /", ":authority: a", "connection: keep-alive"}, "connection-specific field"},
		{"transfer-encoding", "12345", []string{":method: POST", ":scheme: https", ":path: /", ":authority: a", "transfer-encoding: chunked"}, "connection-specific field"},
		{"te other than trailers", "", []string{":method: GET", ":scheme: https", ":path: /", ":authority: a", "te: gzip"}, "is not \\\"trailers\\\""},
		{"body longer than content-length", "123456", []string{":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5"}, "body longer than its content-length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := c.request(t, tc.body, tc.lines...)
			if !out.isRST || out.reset != http2.ErrCodeProtocol {
				t.Errorf("got %v, want RST_STREAM PROTOCOL_ERROR", out)
			}
			p.waitOutput(t, tc.log)
			if got := rec.take(); len(got) > 0 {
				t.Errorf("the server received %q", got)
			}
		})
	}
	t.Run("valid request", func(t *testing.T) {
		out := c.request(t, "hello", ":method: POST", ":scheme: https", ":path: /ok?a=1", ":authority: good.example", "host: good.example",
			"content-length: 5", "cookie: a=1", "cookie: b=2")
		if out.isRST || out.status != "200" {
			t.Fatalf("got %v, want status 200", out)
		}
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("the server received %d heads, want 1: %q", len(got), got)
		}
		head := got[0]
		for _, want := range []string{"POST /ok?a=1 HTTP/1.1\r\n", "\r\nHost: good.example\r\n", "\r\nContent-Length: 5\r\n", "\r\nCookie: a=1; b=2\r\n"} {
			if !strings.Contains(head, want) {
				t.Errorf("head %q lacks %q", head, want)
			}
		}
		if n := strings.Count(strings.ToLower(head), "\r\nhost:"); n != 1 {
			t.Errorf("head %q has %d Host fields", head, n)
		}
	})
}

// TestH2ClientErrorsSpareServers: requests lb cannot forward are the
// client's error: 20 requests with a space in :path, sent by nghttp, are
// reset, and the server stays up and serves everyone else, although
// passive checks mark it down after 3 errors.
func TestH2ClientErrorsSpareServers(t *testing.T) {
	nghttp := lookTool(t, "nghttp", "apt-get install nghttp2-client")
	app := startHTTPBackend(t, "s1")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	backends := httpBackendTable("app", "[backend.check]\ntype = \"none\"\nerror_limit = 3\non_error = \"mark-down\"\n", app)
	p, addr := startH2LB(t, fmt.Sprintf("admin_socket = %q\n", sock), "", backends)
	url := "https://" + addr + "/"
	for i := range 20 {
		r := runCmd(t, 10*time.Second, nil, nghttp, "-v", "-H", ":path: /a b", url)
		if !strings.Contains(r.stdout, "recv RST_STREAM") || !strings.Contains(r.stdout, "PROTOCOL_ERROR") {
			t.Fatalf("bad :path request %d: nghttp printed %s", i+1, r)
		}
	}
	client := newHTTPClient(t)
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	for i := range 10 {
		resp, err := client.Get(url + fmt.Sprintf("ok/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("request %d after the bad ones: %d over HTTP/%d, want 200 over HTTP/2", i, resp.StatusCode, resp.ProtoMajor)
		}
	}
	state := adminQuery(t, sock, "show servers state")
	if !regexp.MustCompile(`(?m)^app s1 \S+ up `).MatchString(state) {
		t.Errorf("the server is not up after 20 bad requests:\n%s", state)
	}
	stat := adminQuery(t, sock, "show stat")
	if !regexp.MustCompile(`(?m)^app s1 up \S+ \d+ \d+ \d+ 0 `).MatchString(stat) {
		t.Errorf("errors were counted against the server:\n%s", stat)
	}
	if n := len(p.logLines(t, "request")); n < 30 {
		t.Errorf("%d request log lines, want the 20 refused ones and the 10 served", n)
	}
}

// TestH2HeaderTableSize: nghttp, whose decoder holds lb to RFC 7541 4.2,
// asks for a smaller header table than the default (SETTINGS_HEADER_TABLE_SIZE
// 0 and 512): lb's header blocks start with the table size update that
// calls for, and both requests on the connection get their answers.
func TestH2HeaderTableSize(t *testing.T) {
	nghttp := lookTool(t, "nghttp", "apt-get install nghttp2-client")
	app := startHTTPBackend(t, "s1")
	_, addr := startH2LB(t, "", "", httpBackendTable("app", "", app))
	for _, size := range []string{"0", "512"} {
		r := runCmd(t, 10*time.Second, nil, nghttp, "-n", "-s", "-c", size, "https://"+addr+"/a", "https://"+addr+"/b")
		if got := len(regexp.MustCompile(`(?m) 200 .* /[ab]$`).FindAllString(r.stdout, -1)); r.code != 0 || got != 2 {
			t.Errorf("header table size %s: %d of 2 answered 200; nghttp printed %s", size, got, r)
		}
	}
}

// TestH2Spec runs h2spec, the HTTP/2 conformance suite, against lb, over
// TLS and in cleartext (h2c with prior knowledge): every test passes.
// Malformed requests are logged.
func TestH2Spec(t *testing.T) {
	h2spec := lookTool(t, "h2spec", "go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible")
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, extraGlobal, frontend, backends string) (*lbProc, string)
		flags []string
	}{
		{"tls", startH2LB, []string{"-t", "-k"}},
		// All but http2/3.5/2: on a port that serves HTTP/1.1 too,
		// bytes that are not HTTP/2's preface are an HTTP/1.1 request,
		// answered 400, where h2spec wants the connection closed.
		{"h2c", startHTTPLB, []string{"generic", "hpack", "http2/3.5/1", "http2/4", "http2/5", "http2/6", "http2/7", "http2/8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := startHTTPBackend(t, "s1")
			p, addr := tc.start(t, "", "", httpBackendTable("app", "", app))
			host, port, _ := net.SplitHostPort(addr)
			argv := append(append([]string{h2spec}, tc.flags...), "-h", host, "-p", port, "-o", "5")
			r := runCmd(t, 3*time.Minute, nil, argv...)
			if r.code != 0 || !strings.Contains(r.stdout, "0 failed") {
				t.Fatalf("h2spec failed: %s", r)
			}
			m := regexp.MustCompile(`(\d+) tests, (\d+) passed, 0 skipped, 0 failed`).FindStringSubmatch(r.stdout)
			if m == nil || m[1] != m[2] || m[1] == "0" {
				t.Fatalf("h2spec summary not all passed: %s", r.stdout[max(0, len(r.stdout)-300):])
			}
			t.Logf("h2spec: %s", m[0])
			p.waitOutput(t, "connection-specific field")
		})
	}
}

// TestH2C: a plain frontend serves HTTP/2 to a client with prior knowledge
// (curl --http2-prior-knowledge; Go's HTTP/2 client, many streams on one
// connection) and HTTP/1.1 to the others, on the same port. The server
// gets HTTP/1.1 and X-Forwarded-Proto http.
func TestH2C(t *testing.T) {
	curl := lookTool(t, "curl", "apt-get install curl")
	app := startHTTPBackend(t, "s1")
	_, addr := startHTTPLB(t, "", "", httpBackendTable("app", "", app))

	r := runCmd(t, 30*time.Second, nil, curl, "-sS", "--http2-prior-knowledge", "--data-binary", "hello h2c",
		"-w", "\n%{http_version} %{http_code}", "http://"+addr+"/h2c/curl")
	out := strings.TrimSpace(r.stdout)
	i := strings.LastIndexByte(out, '\n')
	body, status := out[:max(i, 0)], out[i+1:]
	if r.code != 0 || status != "2 200" {
		t.Fatalf("curl --http2-prior-knowledge: %s", r)
	}
	var e echoReply
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if e.Proto != "HTTP/1.1" || e.Method != "POST" || e.Path != "/h2c/curl" || e.Body != "hello h2c" ||
		!slices.Equal(e.Header.Values("X-Forwarded-Proto"), []string{"http"}) {
		t.Errorf("the server got %+v", e)
	}

	// Go's client: 20 requests at once on one cleartext connection.
	var dials atomic.Int32
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, MaxConnsPerHost: 1, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, a)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("http://%s/h2c/%d", addr, i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var e echoReply
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				errs <- err
				return
			}
			if resp.ProtoMajor != 2 || e.Path != fmt.Sprintf("/h2c/%d", i) {
				errs <- fmt.Errorf("request %d: %s, the server saw %q", i, resp.Proto, e.Path)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for 20 requests, want 1", n)
	}

	// HTTP/1.1 on the same port, a method that begins as the preface
	// does included.
	for _, method := range []string{"GET", "PROPFIND"} {
		req, _ := http.NewRequest(method, "http://"+addr+"/h1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echoReply
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 1 || e.Method != method {
			t.Errorf("HTTP/1.1 %s: %s %d, the server saw %q (%v)", method, resp.Proto, resp.StatusCode, e.Method, err)
		}
	}
}

// lookTool finds a program the test needs, in $PATH or Go's bin directory,
// or fails the test saying how to install it (CI installs it).
func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(goEnv(t, "GOPATH"), "bin")} {
		if dir == "" {
			continue
		}
		if path := filepath.Join(dir, name); isExecutable(path) {
			return path
		}
	}
	t.Fatalf("%s is not installed: %s (.ci/run and make test install it)", name, install)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func goEnv(t *testing.T, key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

// TestH2EarlyHints: a server's 103 (Early Hints) reaches an HTTP/2 client
// as an informational HEADERS frame, with its fields, before the response.
func TestH2EarlyHints(t *testing.T) {
	raw := startCannedBackend(t, "raw", map[string]cannedAnswer{
		"/103": {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints", false},
	})
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "t", "t.test")
	_, addr := startHTTPLB(t, "", fmt.Sprintf("[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n", crt, key),
		"[[backend]]\nname = \"app\"\n"+raw.line())
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "t.test", RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	var hints []string
	req := newRequest(t, "GET", "https://"+addr+"/103", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		},
	}))
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "hints" {
		t.Fatalf("HTTP/%d %d %q", resp.ProtoMajor, resp.StatusCode, body)
	}
	if len(hints) != 1 || hints[0] != "103 </s.css>; rel=preload" {
		t.Errorf("informational responses %q, want the 103 with its Link", hints)
	}
}
