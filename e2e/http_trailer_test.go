package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"lb/internal/testcert"
)

// trailerReply is what the trailer test's request server answers: the
// request body and its trailer fields as net/http received them.
type trailerReply struct {
	Body string `json:"body"`
	// Declared are the names the request's Trailer header announced
	// (net/http takes the header out and makes them r.Trailer's keys).
	Declared      []string    `json:"declared"`
	Trailer       http.Header `json:"trailer"`
	TE            []string    `json:"te"`
	ContentLength int64       `json:"content_length"`
	Header        http.Header `json:"header"`
	Err           string      `json:"err"`
}

// trailersResponse is the raw server's chunked response with trailer
// fields, some of which must not be forwarded as trailers (RFC 9110
// 6.5.1), as its Trailer header announces some of them.
const trailersResponse = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n" +
	"Trailer: X-Checksum, Content-Length, X-Count, Set-Cookie\r\n\r\n" +
	"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n" +
	"X-Checksum: sha256=abc\r\nContent-Length: 999\r\nX-Count: 2\r\nSet-Cookie: evil=1\r\n" +
	"x-count: 3\r\nHost: evil.test\r\nCache-Control: no-store\r\n\r\n"

// TestHTTPTrailers checks that trailer fields cross lb both ways (RFC
// 9112 7.1.2): a server's response trailers reach HTTP/1.1 clients in the
// chunked body and HTTP/2 clients as HTTP/2 trailers, and are dropped for
// HTTP/1.0 clients, whose body ends with the connection; a client's
// request trailers, over HTTP/1.1 or HTTP/2, reach the server in the
// chunked body lb sends it. Fields that must not be trailers
// (Content-Length, Host, Set-Cookie, ...) are not forwarded, nor announced
// in the Trailer header.
func TestHTTPTrailers(t *testing.T) {
	raw := startCannedBackend(t, "raw", map[string]cannedAnswer{
		"/resp/trailers": {raw: trailersResponse},
		"/resp/none":     {raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		"/resp/length":   {raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTrailer: X-T\r\n\r\nabc"},
		// A trailer section over max_header_bytes (16 KiB).
		"/resp/big": {raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Big: " +
			strings.Repeat("b", 20000) + "\r\n\r\n"},
	})
	app := startHTTPBackendFunc(t, "app", func(_ *httpBackend, w http.ResponseWriter, r *http.Request) {
		reply := trailerReply{Declared: slices.Sorted(maps.Keys(r.Trailer)), TE: r.TransferEncoding,
			ContentLength: r.ContentLength, Header: r.Header}
		body, err := io.ReadAll(r.Body)
		reply.Body = string(body)
		if err != nil {
			reply.Err = err.Error()
		}
		reply.Trailer = r.Trailer
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply)
	})

	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "t", "t.test")
	tlsPort := freePort(t)
	routeToRaw := "[[frontend.route]]\nbackend = \"raw\"\npath_prefix = [\"/resp/\"]\n"
	frontend := routeToRaw + fmt.Sprintf(`
[[frontend]]
name = "secure"
bind = ["127.0.0.1:%d"]
default_backend = "app"

[frontend.tls]
cert = [{ cert_file = %q, key_file = %q }]

`, tlsPort, crt, key) + routeToRaw
	_, addr := startHTTPLB(t, "", frontend, httpBackendTable("app", "", app)+"[[backend]]\nname = \"raw\"\n"+raw.line())
	secure := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{ServerName: "t.test", RootCAs: ca.Pool()},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	h2 := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	t.Run("TE: trailers passed to the server", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    *http.Client
			url  string
			te   string
			want string
		}{
			{"HTTP/1.1 with te", newHTTPClient(t), "http://" + addr + "/te", "trailers, deflate", "trailers"},
			{"HTTP/1.1 without", newHTTPClient(t), "http://" + addr + "/te", "", ""},
			{"HTTP/2 with te", h2, "https://" + secure + "/te", "trailers", "trailers"},
			{"HTTP/2 without", h2, "https://" + secure + "/te", "", ""},
		} {
			req := newRequest(t, "GET", tc.url, nil)
			if tc.te != "" {
				req.Header.Set("TE", tc.te)
			}
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var e trailerReply
			err = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got := e.Header.Get("Te"); got != tc.want {
				t.Errorf("%s: the server got TE %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("response trailers to an HTTP/1.1 client", func(t *testing.T) {
		c := dialLB(t, addr)
		br := bufio.NewReader(c)
		send(t, c, "GET /resp/trailers HTTP/1.1\r\nHost: t.test\r\n\r\n")
		head, body, trailer := readChunkedRaw(t, br)
		if body != "hello world" {
			t.Errorf("body %q", body)
		}
		const want = "X-Checksum: sha256=abc\r\nX-Count: 2\r\nx-count: 3\r\n\r\n"
		if trailer != want {
			t.Errorf("trailer section %q, want %q", trailer, want)
		}
		if got := headValues(head, "Trailer"); !slices.Equal(got, []string{"X-Checksum, X-Count"}) {
			t.Errorf("Trailer header %q, want the allowed names only: [X-Checksum, X-Count]", got)
		}
		if got := headValues(head, "Content-Type"); !slices.Equal(got, []string{"text/plain"}) {
			t.Errorf("Content-Type %q", got)
		}

		// The same connection goes on: the trailer section was framed right.
		send(t, c, "GET /resp/none HTTP/1.1\r\nHost: t.test\r\n\r\n")
		head, body, trailer = readChunkedRaw(t, br)
		if body != "abc" || trailer != "\r\n" {
			t.Errorf("no trailers: body %q, trailer section %q, want %q and an empty one", body, trailer, "abc")
		}
		if got := headValues(head, "Trailer"); got != nil {
			t.Errorf("Trailer header %q, none sent", got)
		}
		send(t, c, "GET /resp/length HTTP/1.1\r\nHost: t.test\r\n\r\n")
		r := readRaw(t, c, br, "GET")
		if r.StatusCode != 200 || r.body != "abc" || r.ContentLength != 3 {
			t.Errorf("%d, Content-Length %d, body %q", r.StatusCode, r.ContentLength, r.body)
		}
		if v, ok := r.Header["Trailer"]; ok {
			t.Errorf("Trailer: %q on a body with a Content-Length, which has no trailer section", v)
		}
	})

	t.Run("response trailers to a Go HTTP/1.1 client", func(t *testing.T) {
		resp, err := newHTTPClient(t).Get("http://" + addr + "/resp/trailers")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		checkResponseTrailers(t, resp)
	})

	t.Run("response trailers dropped for an HTTP/1.0 client", func(t *testing.T) {
		c := dialLB(t, addr)
		send(t, c, "GET /resp/trailers HTTP/1.0\r\nHost: t.test\r\nConnection: keep-alive\r\n\r\n")
		all, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read %q: %v (lb must close the connection to end the body)", all, err)
		}
		head, body, ok := strings.Cut(string(all), "\r\n\r\n")
		if !ok {
			t.Fatalf("no head in %q", all)
		}
		if body != "hello world" {
			t.Errorf("body %q, want %q and nothing after it", body, "hello world")
		}
		for _, name := range []string{"Trailer", "Transfer-Encoding", "Content-Length"} {
			if got := headValues(head+"\r\n", name); got != nil {
				t.Errorf("%s: %q sent to an HTTP/1.0 client", name, got)
			}
		}
	})

	t.Run("response trailers to an HTTP/2 client", func(t *testing.T) {
		resp, err := h2.Get("https://" + secure + "/resp/trailers")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("the client spoke %s to lb, want HTTP/2", resp.Proto)
		}
		checkResponseTrailers(t, resp)
	})

	t.Run("request trailers from an HTTP/1.1 client", func(t *testing.T) {
		c := dialLB(t, addr)
		br := bufio.NewReader(c)
		send(t, c, "POST /req HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, Content-Length\r\n\r\n"+
			"5\r\nhello\r\n6\r\n world\r\n0\r\n"+
			"X-Sum: 42\r\nContent-Length: 11\r\nX-Multi: a\r\nAuthorization: Basic eDp5\r\nx-multi: b\r\nHost: evil.test\r\n\r\n")
		e := readTrailerReply(t, c, br)
		checkRequestTrailers(t, e, http.Header{"X-Sum": {"42"}, "X-Multi": {"a", "b"}}, []string{"X-Sum"})

		// The connection goes on after the trailer section.
		send(t, c, "POST /req2 HTTP/1.1\r\nHost: t.test\r\nContent-Length: 3\r\nTrailer: X-Sum\r\n\r\nabc")
		e = readTrailerReply(t, c, br)
		if e.Body != "abc" || len(e.Trailer) != 0 || e.ContentLength != 3 {
			t.Errorf("next request: body %q, trailer %v, Content-Length %d", e.Body, e.Trailer, e.ContentLength)
		}
		if v, ok := e.Header["Trailer"]; ok {
			t.Errorf("Trailer: %q sent with a body of a Content-Length, which has no trailer section", v)
		}
	})

	t.Run("bad request trailer sections", func(t *testing.T) {
		for _, tc := range []struct {
			name, trailer string
			status        int
		}{
			{"over max_header_bytes", "X-Big: " + strings.Repeat("b", 20000) + "\r\n", 431},
			{"malformed field", "X-Sum : 42\r\n", 400},
			{"obs-fold", "X-Sum: 4\r\n 2\r\n", 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := rawHTTP(t, addr, "POST /req HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"5\r\nhello\r\n0\r\n"+tc.trailer+"\r\n")
				if r.StatusCode != tc.status || !r.closed {
					t.Errorf("%d (closed %v), %q; want %d and the connection closed", r.StatusCode, r.closed, r.body, tc.status)
				}
			})
		}
	})

	t.Run("response trailer section over max_header_bytes", func(t *testing.T) {
		// lb cannot pass the response on whole: the client must see it
		// cut, never complete.
		c := dialLB(t, addr)
		send(t, c, "GET /resp/big HTTP/1.1\r\nHost: t.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("body %q, trailer %v read whole; want the response cut", body, resp.Trailer)
		}
	})

	t.Run("request trailers from an HTTP/2 client, body of unknown length", func(t *testing.T) {
		req := newRequest(t, "POST", "https://"+secure+"/req", nil)
		req.Trailer = http.Header{"X-Sum": nil, "Cookie": nil}
		// The values come once the body is read, as a streaming client
		// would set them.
		req.Body = io.NopCloser(&eofHook{r: strings.NewReader("hello world"), hook: func() {
			req.Trailer.Set("X-Sum", "42")
			req.Trailer.Set("Cookie", "session=stolen")
		}})
		e := doTrailerRequest(t, h2, req)
		checkRequestTrailers(t, e, http.Header{"X-Sum": {"42"}}, []string{"X-Sum"})
	})

	t.Run("request trailers from an HTTP/2 client, body of known length", func(t *testing.T) {
		req := newRequest(t, "POST", "https://"+secure+"/req", strings.NewReader("hello world"))
		req.Trailer = http.Header{"X-Sum": {"7"}, "X-Other": {"o"}}
		e := doTrailerRequest(t, h2, req)
		checkRequestTrailers(t, e, http.Header{"X-Sum": {"7"}, "X-Other": {"o"}}, []string{"X-Other", "X-Sum"})
		if v, ok := e.Header["Content-Length"]; ok {
			t.Errorf("Content-Length: %q beside Transfer-Encoding: chunked", v)
		}
	})

	t.Run("HTTP/2 request without trailers keeps its length", func(t *testing.T) {
		req := newRequest(t, "POST", "https://"+secure+"/req", strings.NewReader("hello world"))
		e := doTrailerRequest(t, h2, req)
		if e.Body != "hello world" || e.ContentLength != 11 || len(e.TE) != 0 || len(e.Trailer) != 0 {
			t.Errorf("body %q, Content-Length %d, Transfer-Encoding %q, trailer %v", e.Body, e.ContentLength, e.TE, e.Trailer)
		}
	})
}

// checkResponseTrailers reads resp's body, which lb sent for the raw
// server's trailersResponse, and checks its trailers.
func checkResponseTrailers(t *testing.T, resp *http.Response) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello world" {
		t.Fatalf("%d, body %q, %v", resp.StatusCode, body, err)
	}
	got := http.Header{}
	for k, v := range resp.Trailer {
		if v != nil { // announced names without a field have nil values
			got[k] = v
		}
	}
	if want := (http.Header{"X-Checksum": {"sha256=abc"}, "X-Count": {"2", "3"}}); !equalHeader(got, want) {
		t.Errorf("trailers %v, want %v", got, want)
	}
	for _, name := range []string{"Content-Length", "Set-Cookie", "Host", "Cache-Control"} {
		if v, ok := resp.Trailer[name]; ok {
			t.Errorf("trailer %s: %q reached the client (or was announced)", name, v)
		}
	}
	if v := resp.Header.Values("Set-Cookie"); v != nil {
		t.Errorf("Set-Cookie: %q: a trailer field went in the head", v)
	}
}

// checkRequestTrailers checks that the server got a chunked body "hello
// world" with the trailer fields want, announced as declared.
func checkRequestTrailers(t *testing.T, e trailerReply, want http.Header, declared []string) {
	t.Helper()
	if e.Err != "" || e.Body != "hello world" {
		t.Errorf("the server read %q, %s", e.Body, e.Err)
	}
	if !slices.Equal(e.TE, []string{"chunked"}) || e.ContentLength != -1 {
		t.Errorf("Transfer-Encoding %q, Content-Length %d: want the body chunked, the only way to carry trailers", e.TE, e.ContentLength)
	}
	if !equalHeader(e.Trailer, want) {
		t.Errorf("the server got trailers %v, want %v", e.Trailer, want)
	}
	if !slices.Equal(e.Declared, declared) {
		t.Errorf("the server's Trailer header announced %q, want %q", e.Declared, declared)
	}
	if got := e.Header.Values("Authorization"); got != nil {
		t.Errorf("Authorization: %q: a trailer field went in the head", got)
	}
}

// equalHeader reports whether a and b hold the same fields.
func equalHeader(a, b http.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// doTrailerRequest sends req with c over HTTP/2 and returns the server's
// trailerReply.
func doTrailerRequest(t *testing.T, c *http.Client, req *http.Request) trailerReply {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d, %q, %v", resp.StatusCode, body, err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("the client spoke %s to lb, want HTTP/2", resp.Proto)
	}
	var e trailerReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	return e
}

// readTrailerReply reads a trailerReply off a raw connection.
func readTrailerReply(t *testing.T, c net.Conn, br *bufio.Reader) trailerReply {
	t.Helper()
	r := readRaw(t, c, br, "POST")
	var e trailerReply
	if err := json.Unmarshal([]byte(r.body), &e); r.StatusCode != 200 || err != nil {
		t.Fatalf("%d, %q: %v", r.StatusCode, r.body, err)
	}
	return e
}

// eofHook calls hook once, when r ends.
type eofHook struct {
	r    io.Reader
	hook func()
}

func (e *eofHook) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF && e.hook != nil {
		e.hook()
		e.hook = nil
	}
	return n, err
}

// dialLB connects to addr, with a deadline of 10 s for the test's
// exchanges; the connection is closed when the test ends.
func dialLB(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// send writes raw to c.
func send(t *testing.T, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// readChunkedRaw reads a response with a chunked body off br: its head
// (status line and fields, each line with its CRLF, without the empty
// line), the body's data, and the trailer section as it came: every byte
// after the last chunk's line, up to and including the final CRLF.
func readChunkedRaw(t *testing.T, br *bufio.Reader) (head, body, trailer string) {
	t.Helper()
	var h, b, tr strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("head %q: %v", h.String()+line, err)
		}
		if line == "\r\n" {
			break
		}
		h.WriteString(line)
	}
	head = h.String()
	if te := headValues(head, "Transfer-Encoding"); !slices.Equal(te, []string{"chunked"}) {
		t.Fatalf("Transfer-Encoding %q in %q, want chunked", te, head)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("chunk-size line %q: %v", line, err)
		}
		hex, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		size, err := strconv.ParseInt(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			t.Fatalf("chunk-size line %q: %v", line, err)
		}
		if size == 0 {
			break
		}
		data := make([]byte, size+2)
		if _, err := io.ReadFull(br, data); err != nil || string(data[size:]) != "\r\n" {
			t.Fatalf("chunk of %d bytes: %q, %v", size, data, err)
		}
		b.Write(data[:size])
	}
	for {
		line, err := br.ReadString('\n')
		tr.WriteString(line)
		if err != nil {
			t.Fatalf("trailer section %q: %v", tr.String(), err)
		}
		if line == "\r\n" {
			return head, b.String(), tr.String()
		}
	}
}

// headValues returns the values of the fields named name (ignoring case)
// in head, lines ending with CRLF.
func headValues(head, name string) []string {
	var vs []string
	for _, line := range strings.Split(head, "\r\n") {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(n, name) {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs
}
