package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lb/internal/testcert"
)

// TestHTTPRouting sends requests that each match one route (or none) over
// one keep-alive connection, and checks which backend's server answered:
// routes are matched per request, the first match wins, and unmatched
// requests go to the default backend.
func TestHTTPRouting(t *testing.T) {
	names := []string{"app", "exact", "wild", "prefix", "regex", "method", "hdrval", "hdrpresent", "combo"}
	var backends []string
	for _, n := range names {
		backends = append(backends, httpBackendTable(n, "", startHTTPBackend(t, "s-"+n)))
	}
	const routes = `
[[frontend.route]]
backend = "exact"
host = ["api.example.com"]

[[frontend.route]]
backend = "wild"
host = ["*.example.org"]

[[frontend.route]]
backend = "prefix"
path_prefix = ["/static/", "/assets/"]

[[frontend.route]]
backend = "regex"
path_regex = "^/v[0-9]+/"

[[frontend.route]]
backend = "method"
method = ["DELETE", "PUT"]

[[frontend.route]]
backend = "hdrval"
header = ["X-Canary: 1"]

[[frontend.route]]
backend = "hdrpresent"
header = ["X-Debug"]

[[frontend.route]]
backend = "combo"
host = ["shop.test"]
path_prefix = ["/cart"]
`
	p, addr := startHTTPLB(t, "", routes, strings.Join(backends, "\n"))
	c := newHTTPClient(t)
	for _, tc := range []struct {
		name, method, host, path string
		header                   map[string]string
		want                     string
	}{
		{"no match", "GET", "other.test", "/", nil, "app"},
		{"host exact", "GET", "api.example.com", "/x", nil, "exact"},
		{"host with port", "GET", "api.example.com:8080", "/x", nil, "exact"},
		{"host upper case", "GET", "API.Example.COM", "/x", nil, "exact"},
		{"host final dot", "GET", "api.example.com.", "/x", nil, "exact"},
		{"host is a subdomain of the exact one", "GET", "v1.api.example.com", "/x", nil, "app"},
		{"wildcard", "GET", "x.example.org", "/", nil, "wild"},
		{"wildcard deeper", "GET", "a.b.example.org:81", "/", nil, "wild"},
		{"wildcard not apex", "GET", "example.org", "/", nil, "app"},
		{"prefix", "GET", "other.test", "/static/app.js", nil, "prefix"},
		{"second prefix", "GET", "other.test", "/assets/x.png", nil, "prefix"},
		{"prefix is bytes", "GET", "other.test", "/staticfoo", nil, "app"},
		{"regex", "GET", "other.test", "/v2/users", nil, "regex"},
		{"regex anchored", "GET", "other.test", "/api/v2/users", nil, "app"},
		{"regex on path not query", "GET", "other.test", "/q?next=/v1/", nil, "app"},
		{"method", "DELETE", "other.test", "/x", nil, "method"},
		{"method put", "PUT", "other.test", "/x", nil, "method"},
		{"method post", "POST", "other.test", "/x", nil, "app"},
		{"header value", "GET", "other.test", "/", map[string]string{"X-Canary": "1"}, "hdrval"},
		{"header other value", "GET", "other.test", "/", map[string]string{"X-Canary": "2"}, "app"},
		{"header present", "GET", "other.test", "/", map[string]string{"X-Debug": "whatever"}, "hdrpresent"},
		{"header present empty", "GET", "other.test", "/", map[string]string{"X-Debug": ""}, "hdrpresent"},
		{"first match wins", "DELETE", "api.example.com", "/static/x", map[string]string{"X-Canary": "1"}, "exact"},
		{"prefix before regex", "GET", "other.test", "/static/v1/", nil, "prefix"},
		{"combo both", "GET", "shop.test", "/cart/1", nil, "combo"},
		{"combo host only", "GET", "shop.test", "/checkout", nil, "app"},
		{"combo path only", "GET", "other.test", "/cart/1", nil, "app"},
	} {
		id := fmt.Sprintf("route-%s", strings.ReplaceAll(tc.name, " ", "-"))
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, tc.method, "http://"+addr+tc.path, nil)
			req.Host = tc.host
			req.Header.Set("X-Request-Id", id)
			for k, v := range tc.header {
				req.Header[k] = []string{v}
			}
			resp, e := getEcho(t, c, req)
			if e.Server != "s-"+tc.want || resp.Header.Get("X-Server") != "s-"+tc.want {
				t.Errorf("%s %s (Host %s, %v) answered by %q, want %q", tc.method, tc.path, tc.host, tc.header, e.Server, "s-"+tc.want)
			}
			if e.Host != tc.host || e.Method != tc.method {
				t.Errorf("the server got %s with Host %q, want %s with %q", e.Method, e.Host, tc.method, tc.host)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			if l["backend"] != tc.want || l["server"] != "s-"+tc.want || logStatus(l) != http.StatusOK || l["end"] != "ok" ||
				l["path"] != strings.Split(tc.path, "?")[0] || l["host"] != tc.host || l["method"] != tc.method {
				t.Errorf("access log %v: want backend %s, server s-%s, status 200, end ok", l, tc.want, tc.want)
			}
		})
	}
	// One client connection carried them all: routing is per request.
	clients := map[any]bool{}
	for _, l := range p.logLines(t, "request") {
		clients[l["client"]] = true
	}
	if len(clients) != 1 {
		t.Errorf("requests came from %d client connections, want 1: %v", len(clients), clients)
	}

	t.Run("absolute-form target", func(t *testing.T) {
		// The target's authority wins over the Host field (RFC 9112
		// 3.2.2): it routes, and the server gets it as Host, with the
		// target in origin form.
		for _, target := range []string{"http://api.example.com/abs?q=1", "http://API.example.com:8080/abs?q=1", "https://api.example.com/abs?q=1"} {
			r := rawHTTP(t, addr, "GET "+target+" HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
			var e echoReply
			if err := json.Unmarshal([]byte(r.body), &e); err != nil || r.StatusCode != 200 {
				t.Fatalf("%s: %d %q", target, r.StatusCode, r.body)
			}
			host := strings.Split(strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://"), "/")[0]
			if e.Server != "s-exact" || e.Path != "/abs" || e.Query != "q=1" || e.Host != host {
				t.Errorf("%s: answered by %s, which got path %q, query %q, Host %q; want s-exact, /abs, q=1, %s", target, e.Server, e.Path, e.Query, e.Host, host)
			}
		}
	})
}

// TestHTTPHeaderRules checks set, add and delete rules of a frontend and
// of a backend, on requests (what the server received) and on responses
// (what the client got), with variables, in the documented order; and the
// request id: generated (16 hex digits) when the client sends none, kept
// when it sends one, the same in the header, the variables and the log.
func TestHTTPHeaderRules(t *testing.T) {
	s := startHTTPBackend(t, "s1")
	const frontend = `
[[frontend.header]]
action = "set"
name = "X-Client"
value = "%[client_ip]"

[[frontend.header]]
action = "add"
name = "X-Trace"
value = "fe-%[request_id]"

[[frontend.header]]
action = "delete"
name = "X-Remove-Me"

[[frontend.header]]
action = "set"
name = "X-Fe-Server"
value = "%[server] via %[frontend] 100%%"

[[frontend.header]]
action = "set"
name = "X-Order"
value = "fe"

[[frontend.header]]
action = "set"
on = "response"
name = "X-Served-By"
value = "%[backend]/%[server]"

[[frontend.header]]
action = "delete"
on = "response"
name = "X-Secret"

[[frontend.header]]
action = "add"
on = "response"
name = "X-Resp-Id"
value = "%[request_id]"

[[frontend.header]]
action = "set"
on = "response"
name = "X-Resp-Order"
value = "fe"
`
	const backend = `
[[backend.header]]
action = "set"
name = "X-Be"
value = "%[server] %[client_ip]"

[[backend.header]]
action = "add"
name = "X-Trace"
value = "be"

[[backend.header]]
action = "set"
name = "X-Order"
value = "be"

[[backend.header]]
action = "set"
on = "response"
name = "X-Resp-Order"
value = "be"

[[backend.header]]
action = "set"
on = "response"
name = "X-Be-Resp"
value = "%[request_id] %[scheme]"
`
	p, addr := startHTTPLB(t, "", frontend, httpBackendTable("app", backend, s))
	c := newHTTPClient(t)
	hexID := regexp.MustCompile(`^[0-9a-f]{16}$`)

	var ids []string
	for _, tc := range []struct{ name, sent string }{{"generated", ""}, {"generated again", ""}, {"kept", "client-id-42"}} {
		sent := tc.sent
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, "GET", "http://"+addr+"/h", nil)
			req.Header.Add("X-Trace", "client")
			req.Header.Set("X-Remove-Me", "please")
			req.Header.Set("X-Keep-Me", "yes")
			req.Header.Set("X-Order", "client")
			if sent != "" {
				req.Header.Set("X-Request-Id", sent)
			}
			resp, e := getEcho(t, c, req)
			id := e.Header.Get("X-Request-Id")
			switch {
			case sent != "" && id != sent:
				t.Fatalf("the client sent X-Request-Id %q, the server got %q", sent, id)
			case sent == "" && !hexID.MatchString(id):
				t.Fatalf("generated X-Request-Id %q is not 16 hex digits", id)
			}
			ids = append(ids, id)
			for name, want := range map[string][]string{
				"X-Client":    {"127.0.0.1"},
				"X-Trace":     {"client", "fe-" + id, "be"},
				"X-Remove-Me": nil,
				"X-Keep-Me":   {"yes"},
				"X-Fe-Server": {"s1 via web 100%"},
				"X-Be":        {"s1 127.0.0.1"},
				"X-Order":     {"be"}, // the frontend's rules, then the backend's
			} {
				if got := e.Header.Values(name); !slices.Equal(got, want) {
					t.Errorf("the server got %s %q, want %q", name, got, want)
				}
			}
			for name, want := range map[string][]string{
				"X-Served-By":  {"app/s1"},
				"X-Secret":     nil,
				"X-Server":     {"s1"},
				"X-Resp-Id":    {id},
				"X-Be-Resp":    {id + " http"},
				"X-Resp-Order": {"fe"}, // the backend's rules, then the frontend's
			} {
				if got := resp.Header.Values(name); !slices.Equal(got, want) {
					t.Errorf("the client got %s %q, want %q", name, got, want)
				}
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			if logStatus(l) != 200 || l["server"] != "s1" {
				t.Errorf("access log %v", l)
			}
		})
	}
	if len(ids) == 3 && ids[0] == ids[1] {
		t.Errorf("two requests got the same generated id %q", ids[0])
	}
}

// TestHTTPForwardedHeaders checks the X-Forwarded-* and Forwarded headers
// the server gets, and that hop-by-hop headers from the client stop at lb.
func TestHTTPForwardedHeaders(t *testing.T) {
	s := startHTTPBackend(t, "s1")
	_, addr := startHTTPLB(t, "", "[frontend.http]\nforwarded = true\n", httpBackendTable("app", "", s))
	c := newHTTPClient(t)
	for _, tc := range []struct {
		name      string
		header    http.Header
		xff       string
		forwarded string
	}{
		{"none", nil, "127.0.0.1", `for=127.0.0.1;proto=http;host="example.test:8080"`},
		{"one", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "1.2.3.4, 127.0.0.1", ""},
		{"list", http.Header{"X-Forwarded-For": {"1.2.3.4, 10.0.0.1"}}, "1.2.3.4, 10.0.0.1, 127.0.0.1", ""},
		{"two fields", http.Header{"X-Forwarded-For": {"1.2.3.4", "5.6.7.8"}}, "1.2.3.4, 5.6.7.8, 127.0.0.1", ""},
		{"forwarded chain", http.Header{"Forwarded": {"for=192.0.2.60;proto=https"}}, "127.0.0.1",
			`for=192.0.2.60;proto=https, for=127.0.0.1;proto=http;host="example.test:8080"`},
		// A client cannot make itself look like HTTPS, nor pick the host.
		{"spoofed proto and host", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.test"}}, "127.0.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, "GET", "http://"+addr+"/fwd", nil)
			req.Host = "example.test:8080"
			for k, v := range tc.header {
				req.Header[k] = v
			}
			_, e := getEcho(t, c, req)
			if got := e.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != tc.xff {
				t.Errorf("X-Forwarded-For fields %q, want one: %q", got, tc.xff)
			}
			if got := e.Header.Values("X-Forwarded-Proto"); !slices.Equal(got, []string{"http"}) {
				t.Errorf("X-Forwarded-Proto %q, want [http]", got)
			}
			if got := e.Header.Values("X-Forwarded-Host"); !slices.Equal(got, []string{"example.test:8080"}) {
				t.Errorf("X-Forwarded-Host %q, want [example.test:8080]", got)
			}
			if tc.forwarded != "" {
				if got := e.Header.Values("Forwarded"); !slices.Equal(got, []string{tc.forwarded}) {
					t.Errorf("Forwarded %q, want [%s]", got, tc.forwarded)
				}
			}
		})
	}

	t.Run("hop-by-hop", func(t *testing.T) {
		const raw = "GET /hop HTTP/1.1\r\nHost: h.test\r\nConnection: keep-alive, X-Foo\r\nX-Foo: secret\r\n" +
			"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nX-Keep: yes\r\nConnection: close\r\n\r\n"
		hop := []string{"X-Foo", "Keep-Alive", "Proxy-Connection"}
		// The same request straight to the server: it would see them.
		direct := rawHTTP(t, s.addr(), raw)
		var de echoReply
		if err := json.Unmarshal([]byte(direct.body), &de); err != nil {
			t.Fatalf("direct: %v: %q", err, direct.body)
		}
		for _, h := range hop {
			if de.Header.Get(h) == "" {
				t.Fatalf("control: the server does not show %s when sent directly: %v", h, de.Header)
			}
		}
		r := rawHTTP(t, addr, raw)
		var e echoReply
		if err := json.Unmarshal([]byte(r.body), &e); r.StatusCode != 200 || err != nil {
			t.Fatalf("status %d, body %q", r.StatusCode, r.body)
		}
		for _, h := range hop {
			if v, ok := e.Header[h]; ok {
				t.Errorf("hop-by-hop %s: %q reached the server", h, v)
			}
		}
		// TE is hop-by-hop too, but "trailers" says the client takes
		// trailer fields: lb tells the server so itself.
		if got := e.Header.Values("Te"); !slices.Equal(got, []string{"trailers"}) {
			t.Errorf("TE %q at the server, want lb's own [trailers]", got)
		}
		for _, v := range e.Header.Values("Connection") {
			if strings.Contains(strings.ToLower(v), "x-foo") {
				t.Errorf("the server got Connection: %s", v)
			}
		}
		for h, want := range map[string]string{"X-Keep": "yes", "Upgrade-Insecure-Requests": "1"} {
			if got := e.Header.Get(h); got != want {
				t.Errorf("end-to-end %s: %q reached the server, want %q", h, got, want)
			}
		}
		if !r.closed {
			t.Errorf("Connection: close from the client: lb kept the connection open")
		}
	})

	t.Run("hop-by-hop in responses", func(t *testing.T) {
		const raw = "GET /hop HTTP/1.1\r\nHost: h.test\r\nX-Echo-Hop: 1\r\n\r\n"
		direct := rawHTTP(t, s.addr(), raw)
		if direct.Header.Get("X-Resp-Hop") == "" || direct.Header.Get("Keep-Alive") == "" {
			t.Fatalf("control: the server did not send its hop-by-hop fields: %v", direct.Header)
		}
		r := rawHTTP(t, addr, raw)
		if r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		for _, h := range []string{"X-Resp-Hop", "Keep-Alive"} {
			if v, ok := r.Header[h]; ok {
				t.Errorf("hop-by-hop %s: %q reached the client", h, v)
			}
		}
		if v := r.Header.Get("Connection"); strings.Contains(strings.ToLower(v), "x-resp-hop") {
			t.Errorf("the client got Connection: %s", v)
		}
	})

	t.Run("Expect: 100-continue", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "POST /expect HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		// The body is held back until lb says to send it.
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("before the body: %q, %v; want a 100 Continue", line, err)
		}
		if end, err := br.ReadString('\n'); err != nil || end != "\r\n" {
			t.Fatalf("after the 100 Continue line: %q, %v", end, err)
		}
		if _, err := io.WriteString(c, "hello"); err != nil {
			t.Fatal(err)
		}
		r := readRaw(t, c, br, "POST")
		var e echoReply
		if err := json.Unmarshal([]byte(r.body), &e); err != nil || r.StatusCode != 200 || e.Body != "hello" {
			t.Fatalf("%d %q", r.StatusCode, r.body)
		}
		if v, ok := e.Header["Expect"]; ok {
			t.Errorf("the server got Expect: %q; lb answers it itself", v)
		}
	})
}

// streamSize is the size of each body TestHTTPStreamsLargeBodies moves.
const streamSize = 256 << 20

// streamRSSBound is the most lb's peak resident memory may reach while it
// moves streamSize bodies: far less than one body, so lb cannot have held
// one whole. (Measured: 32 MiB, start-up included, built with -race.)
const streamRSSBound = 80 << 20

// TestHTTPStreamsLargeBodies uploads and downloads streamSize bodies,
// framed by Content-Length and chunked, through lb, checks every byte,
// and checks that lb's peak memory stayed far below a body's size. It also
// checks that an upload the client aborts reaches the server cut, and
// that a server's answer before it read the body reaches the client.
func TestHTTPStreamsLargeBodies(t *testing.T) {
	type bodyRead struct {
		n   int64
		err error
	}
	uploads := make(chan bodyRead, 8)
	s := startHTTPBackendFunc(t, "bulk", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/upload"):
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			select {
			case uploads <- bodyRead{n, err}:
			default:
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x %q %d", n, h.Sum(nil), r.TransferEncoding, r.ContentLength)
		case r.URL.Path == "/early":
			// An answer before the body, which the server does not read.
			http.Error(w, "too large for me", http.StatusRequestEntityTooLarge)
		case r.URL.Path == "/download":
			n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			}
			_, _ = io.Copy(w, newPatternReader(n))
		}
	})
	p, addr := startHTTPLB(t, "", "", httpBackendTable("app", "", s))
	pid := p.cmd.Process.Pid
	c := newHTTPClient(t)
	if resp, err := c.Get("http://" + addr + "/warm-up"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	base := vmHWM(t, pid)

	h := sha256.New()
	if _, err := io.Copy(h, newPatternReader(streamSize)); err != nil {
		t.Fatal(err)
	}
	wantSum := fmt.Sprintf("%x", h.Sum(nil))

	for _, tc := range []struct {
		name    string
		upload  bool
		chunked bool
	}{
		{"upload content-length", true, false},
		{"upload chunked", true, true},
		{"download content-length", false, false},
		{"download chunked", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			var id string
			if tc.upload {
				req := newRequest(t, "POST", "http://"+addr+"/upload", newPatternReader(streamSize))
				req.ContentLength = streamSize
				if tc.chunked {
					req.ContentLength = -1 // unknown: chunked
					req.Body = io.NopCloser(newPatternReader(streamSize))
				}
				id = "up-" + strings.ReplaceAll(tc.name, " ", "-")
				req.Header.Set("X-Request-Id", id)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				te, cl := `[]`, strconv.Itoa(streamSize)
				if tc.chunked {
					te, cl = `["chunked"]`, "-1"
				}
				<-uploads
				want := fmt.Sprintf("%d %s %s %s", streamSize, wantSum, te, cl)
				if resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("status %d, the server got %q, want %q (size, sha256, framing)", resp.StatusCode, body, want)
				}
			} else {
				url := fmt.Sprintf("http://%s/download?n=%d", addr, streamSize)
				if tc.chunked {
					url += "&chunked=1"
				}
				req := newRequest(t, "GET", url, nil)
				id = "down-" + strings.ReplaceAll(tc.name, " ", "-")
				req.Header.Set("X-Request-Id", id)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				n, err := comparePattern(resp.Body, streamSize)
				resp.Body.Close()
				if resp.StatusCode != 200 || err != nil {
					t.Fatalf("status %d, after %d bytes: %v", resp.StatusCode, n, err)
				}
				if chunked := slices.Equal(resp.TransferEncoding, []string{"chunked"}); chunked != tc.chunked || (!chunked && resp.ContentLength != streamSize) {
					t.Errorf("framing: Transfer-Encoding %q, Content-Length %d", resp.TransferEncoding, resp.ContentLength)
				}
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			field := "bytes_out"
			if tc.upload {
				field = "bytes_in"
			}
			if l[field] != float64(streamSize) || l["end"] != "ok" {
				t.Errorf("access log %v: want %s %d, end ok", l, field, streamSize)
			}
			t.Logf("%d MiB in %v; lb VmRSS %d MiB, VmHWM %d MiB", streamSize>>20, time.Since(start).Round(time.Millisecond),
				vmRSS(t, pid)>>20, vmHWM(t, pid)>>20)
		})
	}
	t.Run("client aborts an upload", func(t *testing.T) {
		// The server must see the body cut, never a complete request.
		part := strings.Repeat("a", 64<<10)
		for _, head := range []string{
			"POST /upload/abort-cl HTTP/1.1\r\nHost: e.test\r\nContent-Length: 1048576\r\n\r\n",
			"POST /upload/abort-chunked HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
		} {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, head+part); err != nil {
				t.Fatal(err)
			}
			local := c.LocalAddr().String()
			time.Sleep(100 * time.Millisecond)
			c.Close()
			select {
			case got := <-uploads:
				if got.err == nil {
					t.Errorf("%.40q...: the server read a complete body of %d bytes from an aborted upload", head, got.n)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%.40q...: the server's request did not end", head)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == local })
			if l["end"] != "client_aborted" {
				t.Errorf("access log %v: want end client_aborted", l)
			}
		}
	})

	t.Run("server answers before the body", func(t *testing.T) {
		// The server refuses the upload at once, reads no more of it and
		// closes: lb must pass its answer on, not a 502 of its own (RFC
		// 9112 9.5: a client sending a body monitors the connection for
		// an error response, and stops sending when one comes).
		req := newRequest(t, "POST", "http://"+addr+"/early", newPatternReader(16<<20))
		req.ContentLength = 16 << 20
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "too large for me") {
			t.Errorf("%d %q; want the server's 413", resp.StatusCode, body)
		}
	})

	peak := vmHWM(t, pid)
	t.Logf("lb peak RSS: %d MiB after start-up, %d MiB after moving 4 x %d MiB", base>>20, peak>>20, streamSize>>20)
	if peak > streamRSSBound {
		t.Errorf("lb's peak RSS reached %d MiB moving %d MiB bodies, over the %d MiB bound: it holds bodies instead of streaming them",
			peak>>20, streamSize>>20, streamRSSBound>>20)
	}
}

// TestHTTPWebSocket opens WebSocket connections through lb to a server
// that completes a real RFC 6455 handshake and echoes frames, exchanges
// masked frames of every length encoding, and checks that the tunnel ends
// cleanly, on both sides, after a close handshake and after the client
// just closes its connection.
func TestHTTPWebSocket(t *testing.T) {
	done := make(chan error, 4)
	s := startHTTPBackendFunc(t, "ws", wsEcho(done))
	p, addr := startHTTPLB(t, "", "[[frontend.route]]\nbackend = \"short\"\npath_prefix = [\"/idle\"]\n",
		httpBackendTable("app", "", s)+httpBackendTable("short", "[backend.timeout]\ntunnel = \"500ms\"\n", s))
	big := make([]byte, 100<<10) // a 64-bit length
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name string
		// early sends the first frame with the handshake, before the 101.
		early bool
		// closeFrame ends with a close handshake, else the client closes
		// its connection.
		closeFrame bool
		// path is /greet for a server that speaks first.
		path string
	}{
		{"close handshake", false, true, "/chat"},
		{"frame before the 101", true, true, "/chat"},
		{"server speaks first", false, true, "/greet"},
		{"client closes", false, false, "/chat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			key := base64.StdEncoding.EncodeToString([]byte(tc.name + "-16bytes!")[:16])
			id := "ws-" + strings.ReplaceAll(tc.name, " ", "-")
			var out bytes.Buffer
			fmt.Fprintf(&out, "GET %s HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Request-Id: %s\r\n\r\n", tc.path, key, id)
			frames := []struct {
				op      byte
				payload []byte
			}{{wsText, []byte("hello")}, {wsBinary, big[:300]}, {wsBinary, big}, {wsText, []byte("bye")}}
			if tc.early {
				if err := wsWriteFrame(&out, frames[0].op, frames[0].payload, true); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Write(out.Bytes()); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("no handshake response: %v", err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) ||
				!strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
				t.Fatalf("handshake answered %d %v", resp.StatusCode, resp.Header)
			}
			if tc.path == "/greet" {
				if op, payload, _, err := wsReadFrame(br); err != nil || op != wsText || string(payload) != "welcome" {
					t.Fatalf("the server's first frame: opcode %d %q, %v", op, payload, err)
				}
			}
			for i, f := range frames {
				if !(tc.early && i == 0) {
					if err := wsWriteFrame(c, f.op, f.payload, true); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
				}
				op, payload, masked, err := wsReadFrame(br)
				if err != nil {
					t.Fatalf("frame %d: no echo: %v", i, err)
				}
				if op != f.op || !bytes.Equal(payload, f.payload) || masked {
					t.Fatalf("frame %d (opcode %d, %d bytes) echoed as opcode %d, %d bytes, masked %v", i, f.op, len(f.payload), op, len(payload), masked)
				}
			}
			var want error
			if tc.closeFrame {
				closeBody := []byte{0x03, 0xe8} // 1000, normal closure
				if err := wsWriteFrame(c, wsClose, closeBody, true); err != nil {
					t.Fatal(err)
				}
				if op, payload, _, err := wsReadFrame(br); err != nil || op != wsClose || !bytes.Equal(payload, closeBody) {
					t.Fatalf("close frame echoed as opcode %d %x, %v", op, payload, err)
				}
				// The server closed: lb must close the client's side too.
				if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Fatalf("after the close handshake: read %d bytes, %v; want EOF", n, err)
				}
				c.Close() // as a client does once the server has closed
			} else {
				want = io.EOF
				c.Close()
			}
			select {
			case err := <-done:
				if err != want {
					t.Fatalf("the server's side ended with %v, want %v", err, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server's side of the tunnel did not end within 10s")
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			if logStatus(l) != 101 || l["end"] != "tunnel_closed" || l["server"] != "ws" {
				t.Errorf("access log %v: want status 101, end tunnel_closed", l)
			}
			sent := float64(0)
			for _, f := range frames {
				sent += float64(len(f.payload))
			}
			if in, _ := l["bytes_in"].(float64); in < sent {
				t.Errorf("access log bytes_in %v, less than the %v payload bytes sent", l["bytes_in"], sent)
			}
			if o, _ := l["bytes_out"].(float64); o < sent {
				t.Errorf("access log bytes_out %v, less than the %v payload bytes echoed", l["bytes_out"], sent)
			}
		})
	}

	t.Run("idle tunnel times out", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		key := "dGhlIHNhbXBsZSBub25jZQ=="
		if _, err := io.WriteString(c, "GET /idle HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\nX-Request-Id: ws-idle\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if r := readRaw(t, c, br, "GET"); r.StatusCode != 101 {
			t.Fatalf("handshake: %d", r.StatusCode)
		}
		if err := wsWriteFrame(c, wsText, []byte("ping"), true); err != nil {
			t.Fatal(err)
		}
		if _, payload, _, err := wsReadFrame(br); err != nil || string(payload) != "ping" {
			t.Fatalf("echo %q, %v", payload, err)
		}
		// Then silence: lb closes the tunnel after timeout.tunnel.
		start := time.Now()
		n, err := br.Read(make([]byte, 1))
		took := time.Since(start)
		// The tunnel looks at its idle time every quarter of the timeout
		// (README): at most 1/4 late, plus scheduling.
		const tunnelTimeout = 500 * time.Millisecond
		limit := tunnelTimeout + tunnelTimeout/4 + timeoutLateness(0)
		if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) || took < 400*time.Millisecond || took > limit {
			t.Fatalf("an idle tunnel: read %d bytes, %v after %v; want it closed after the 500ms tunnel timeout, not later than %v", n, err, took, limit)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("the server's side ended with a close handshake that never happened")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the server's side of the idle tunnel stayed open")
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == "ws-idle" })
		if l["end"] != "tunnel_timeout" {
			t.Errorf("access log %v: want end tunnel_timeout", l)
		}
	})

	t.Run("refused upgrade", func(t *testing.T) {
		// The server answers 403: no tunnel, the connection goes on as
		// HTTP.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := io.WriteString(c, "GET /refuse HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r := readRaw(t, c, br, "GET"); r.StatusCode != http.StatusForbidden || r.Close {
			t.Fatalf("%d %q, close %v; want 403 on a connection kept open", r.StatusCode, r.body, r.Close)
		}
		if _, err := io.WriteString(c, "GET /refuse HTTP/1.1\r\nHost: ws.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r := readRaw(t, c, br, "GET"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("a plain request after the refused upgrade: %d %q", r.StatusCode, r.body)
		}
	})
}

// TestHTTPTLS terminates TLS: the certificate follows SNI, HTTP/2 is
// negotiated and forwarded to servers as HTTP/1.1, min_version is
// enforced; and lb speaks TLS to servers, verifying their certificates.
func TestHTTPTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	aCrt, aKey := ca.WriteLeaf(t, dir, "a", "a.test")
	bCrt, bKey := ca.WriteLeaf(t, dir, "b", "b.test")
	caFile := ca.WriteCA(t, dir)
	srvCert, srvKey := ca.Leaf(t, "127.0.0.1", "backend.test")
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	plain := startHTTPBackend(t, "plain")
	secure := startHTTPBackendTLS(t, "secure", nil, &tls.Config{Certificates: []tls.Certificate{pair}})
	modernPort := freePort(t)
	frontend := fmt.Sprintf(`
[frontend.tls]
cert = [
  { cert_file = %q, key_file = %q },
  { cert_file = %q, key_file = %q },
]

[[frontend.route]]
backend = "tls-ip"
path_prefix = ["/tls-ip/"]

[[frontend.route]]
backend = "tls-name"
path_prefix = ["/tls-name/"]

[[frontend.route]]
backend = "tls-wrong-name"
path_prefix = ["/tls-wrong-name/"]

[[frontend.route]]
backend = "tls-no-ca"
path_prefix = ["/tls-no-ca/"]

[[frontend]]
name = "modern"
bind = ["127.0.0.1:%d"]
default_backend = "app"

[frontend.tls]
cert = [{ cert_file = %q, key_file = %q }]
min_version = "1.3"
`, aCrt, aKey, bCrt, bKey, modernPort, aCrt, aKey)
	backends := httpBackendTable("app", "", plain) +
		httpBackendTable("tls-ip", fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\n", caFile), secure) +
		httpBackendTable("tls-name", fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\nserver_name = \"backend.test\"\n", caFile), secure) +
		httpBackendTable("tls-wrong-name", fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\nserver_name = \"wrong.test\"\n", caFile), secure) +
		httpBackendTable("tls-no-ca", "[backend.tls]\nenabled = true\n", secure)
	p, addr := startHTTPLB(t, "", frontend, backends)
	modern := fmt.Sprintf("127.0.0.1:%d", modernPort)

	t.Run("SNI", func(t *testing.T) {
		for _, tc := range []struct{ sni, want string }{
			{"a.test", "a.test"}, {"b.test", "b.test"}, {"B.TEST", "b.test"}, {"unknown.test", "a.test"}, {"", "a.test"},
		} {
			cfg := &tls.Config{ServerName: tc.sni, RootCAs: ca.Pool()}
			if tc.want != tc.sni {
				cfg.InsecureSkipVerify = true // a certificate for another name
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
			if err != nil {
				t.Errorf("SNI %q: %v", tc.sni, err)
				continue
			}
			got := c.ConnectionState().PeerCertificates[0].DNSNames
			c.Close()
			if !slices.Equal(got, []string{tc.want}) {
				t.Errorf("SNI %q: lb presented the certificate of %q, want %q", tc.sni, got, tc.want)
			}
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{ServerName: "b.test", RootCAs: ca.Pool()},
			ForceAttemptHTTP2: true,
		}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := strings.Repeat("x", 1000*i)
				req, err := http.NewRequest("POST", fmt.Sprintf("https://%s/h2/%d", addr, i), strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("X-Request-Id", fmt.Sprintf("h2-%d", i))
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var e echoReply
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
					errs <- fmt.Errorf("request %d: status %d: %v", i, resp.StatusCode, err)
					return
				}
				switch {
				case resp.ProtoMajor != 2:
					errs <- fmt.Errorf("request %d: the client spoke %s to lb, want HTTP/2", i, resp.Proto)
				case e.Server != "plain" || e.Proto != "HTTP/1.1" || e.Path != fmt.Sprintf("/h2/%d", i) || e.BodyLen != int64(len(body)) || e.Body != body[:min(len(body), 4096)]:
					errs <- fmt.Errorf("request %d: the server got %s %s from lb with %d body bytes (server %s), want HTTP/1.1, %d bytes",
						i, e.Proto, e.Path, e.BodyLen, e.Server, len(body))
				case e.Header.Get("X-Forwarded-Proto") != "https" || e.Host != addr:
					errs <- fmt.Errorf("request %d: X-Forwarded-Proto %q, Host %q", i, e.Header.Get("X-Forwarded-Proto"), e.Host)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == "h2-3" })
		if logStatus(l) != 200 || l["bytes_in"] != float64(3000) || l["end"] != "ok" {
			t.Errorf("access log of an HTTP/2 request: %v", l)
		}
	})

	t.Run("HTTP/1.1 over TLS", func(t *testing.T) {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()},
			TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
		}
		defer tr.CloseIdleConnections()
		resp, e := getEcho(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, newRequest(t, "GET", "https://"+addr+"/h1", nil))
		if resp.ProtoMajor != 1 || e.Header.Get("X-Forwarded-Proto") != "https" || e.Server != "plain" {
			t.Errorf("%s, X-Forwarded-Proto %q, server %q", resp.Proto, e.Header.Get("X-Forwarded-Proto"), e.Server)
		}
	})

	t.Run("min_version", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			addr     string
			max      uint16
			wantVers uint16 // 0: refused
		}{
			{"1.3 frontend, TLS 1.2 client", modern, tls.VersionTLS12, 0},
			{"1.3 frontend, TLS 1.3 client", modern, tls.VersionTLS13, tls.VersionTLS13},
			{"default frontend, TLS 1.2 client", addr, tls.VersionTLS12, tls.VersionTLS12},
			{"default frontend, TLS 1.1 client", addr, tls.VersionTLS11, 0},
		} {
			cfg := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tc.max}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tc.addr, cfg)
			switch {
			case tc.wantVers == 0 && err == nil:
				c.Close()
				t.Errorf("%s: the handshake succeeded", tc.name)
			case tc.wantVers != 0 && err != nil:
				t.Errorf("%s: %v", tc.name, err)
			case err == nil:
				if v := c.ConnectionState().Version; v != tc.wantVers {
					t.Errorf("%s: version %x, want %x", tc.name, v, tc.wantVers)
				}
				c.Close()
			}
		}
	})

	t.Run("silent client", func(t *testing.T) {
		// http_request (1s) bounds the TLS handshake too.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if took := time.Since(start); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) || took < 900*time.Millisecond || took > time.Second+timeoutLateness(time.Second) {
			t.Errorf("a client that never starts its handshake: read %d bytes, %v after %v; want the connection closed after http_request (1s), not later than %v", n, err, took, time.Second+timeoutLateness(time.Second))
		}
	})

	t.Run("TLS to servers", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for _, tc := range []struct {
			prefix string
			status int
			end    string
		}{
			{"/tls-ip/", 200, "ok"},
			{"/tls-name/", 200, "ok"},
			{"/tls-wrong-name/", 503, "connect_failed"},
			{"/tls-no-ca/", 503, "connect_failed"},
		} {
			id := "to-server-" + strings.Trim(tc.prefix, "/")
			req := newRequest(t, "GET", "https://"+addr+tc.prefix+"x", nil)
			req.Header.Set("X-Request-Id", id)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s: %v", tc.prefix, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%s: status %d (%q), want %d", tc.prefix, resp.StatusCode, body, tc.status)
			}
			if tc.status == 200 {
				var e echoReply
				if err := json.Unmarshal(body, &e); err != nil || e.Server != "secure" || e.Path != tc.prefix+"x" {
					t.Errorf("%s: body %q", tc.prefix, body)
				}
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			if logStatus(l) != tc.status || l["end"] != tc.end {
				t.Errorf("%s: access log %v, want status %d, end %s", tc.prefix, l, tc.status, tc.end)
			}
			if tc.status != 200 && !strings.Contains(fmt.Sprint(l["error"]), "certificate") {
				t.Errorf("%s: the log's error %q does not say what was wrong with the certificate", tc.prefix, l["error"])
			}
		}
		// TLS connections to servers are pooled like plain ones, even
		// though a TLS 1.3 server sends session tickets after its
		// handshake.
		before := secure.conns.Load()
		for i := range 10 {
			resp, err := c.Get(fmt.Sprintf("https://%s/tls-ip/again-%d", addr, i))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
		}
		if n := secure.conns.Load() - before; n > 1 {
			t.Errorf("10 sequential requests opened %d TLS connections to the server, want them to reuse one", n)
		}
	})
}

// TestHTTPTLSConfigErrors runs lb -c on TLS configurations whose files are
// missing, garbage or do not match, and checks that each error names the
// file and the line of the configuration that names it.
func TestHTTPTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	aCrt, aKey := ca.WriteLeaf(t, dir, "a", "a.test")
	bCrt, bKey := ca.WriteLeaf(t, dir, "b", "b.test")
	caFile := ca.WriteCA(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	expiredPEM, expiredKeyPEM := ca.LeafValidity(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "old.test")
	expired, expiredKey := filepath.Join(dir, "old.crt"), filepath.Join(dir, "old.key")
	for path, b := range map[string][]byte{expired: expiredPEM, expiredKey: expiredKeyPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.crt")
	s := startHTTPBackend(t, "s1")
	for _, tc := range []struct {
		name string
		// second is the second certificate of the frontend, caFile the
		// backend's CA file ("": no TLS to servers).
		secondCert, secondKey, caFile string
		// bad is the path the message must name; want, more it must say.
		bad, want string
	}{
		{"missing cert file", missing, bKey, "", missing, "no such file"},
		{"garbage cert file", garbage, bKey, "", garbage, "PEM"},
		{"garbage key file", bCrt, garbage, "", garbage, "PEM"},
		{"key of another certificate", bCrt, aKey, "", aKey, "does not match"},
		{"expired certificate", expired, expiredKey, "", expired, "expired"},
		{"missing CA file", bCrt, bKey, missing, missing, "no such file"},
		{"garbage CA file", bCrt, bKey, garbage, garbage, "PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frontend := fmt.Sprintf("[frontend.tls]\ncert = [\n  { cert_file = %q, key_file = %q },\n  { cert_file = %q, key_file = %q },\n]\n",
				aCrt, aKey, tc.secondCert, tc.secondKey)
			backend := ""
			if tc.caFile != "" {
				backend = fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\n", tc.caFile)
			}
			text := httpConfig(freePort(t), "", frontend, httpBackendTable("app", backend, s))
			// The line that names the bad file (the frontend's second
			// certificate, or the CA file): not the first certificate's.
			line := 0
			for i, l := range strings.Split(text, "\n") {
				if strings.Contains(l, fmt.Sprintf("%q", tc.bad)) && !strings.Contains(l, fmt.Sprintf("%q", aCrt)) {
					line = i + 1
					break
				}
			}
			if line == 0 {
				t.Fatalf("no line names %s in:\n%s", tc.bad, text)
			}
			code, stdout, stderr := runLB(t, "-c", "-f", writeConfig(t, text))
			if code != 1 || strings.Contains(stdout, "configuration is valid") {
				t.Fatalf("lb -c: exit %d, stdout %q, stderr %q; want exit 1", code, stdout, stderr)
			}
			wantPos := fmt.Sprintf("lb.toml:%d:", line)
			if !strings.Contains(stderr, wantPos) || !strings.Contains(stderr, fmt.Sprintf("%q", tc.bad)) || !strings.Contains(stderr, tc.want) {
				t.Errorf("lb -c says:\n%s\nwant %q, the path %q and %q", stderr, wantPos, tc.bad, tc.want)
			}
			t.Run("one error", func(t *testing.T) {
				// One mistake, one error: not a second, false one about
				// what depends on the object with the bad file.
				if !strings.Contains(stderr, "configuration is invalid: 1 error(s)") {
					t.Errorf("one bad file, but lb -c reports more than one error:\n%s", stderr)
				}
			})
		})
	}
	t.Run("valid", func(t *testing.T) {
		frontend := fmt.Sprintf("[frontend.tls]\ncert = [\n  { cert_file = %q, key_file = %q },\n  { cert_file = %q, key_file = %q },\n]\n", aCrt, aKey, bCrt, bKey)
		text := httpConfig(freePort(t), "", frontend, httpBackendTable("app", fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\n", caFile), s))
		if code, stdout, stderr := runLB(t, "-c", "-f", writeConfig(t, text)); code != 0 {
			t.Fatalf("lb -c on the valid files: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

// TestHTTPErrorStatuses provokes every error lb answers itself with a
// real fault (a server that closes, resets, talks nonsense, is dead, full
// or slow; a client that sends a malformed, oversized or stalled request)
// and checks the status, lb's own body, the closed connection, the access
// log's status and end, and that no request reached a server when lb
// refused it before choosing one.
func TestHTTPErrorStatuses(t *testing.T) {
	app := startHTTPBackend(t, "app1")
	closer := startRawBackend(t, "closer", func(c net.Conn) { readHead(c) })
	reset := startRawBackend(t, "resetter", func(c net.Conn) {
		readHead(c)
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	})
	garbage := startRawBackend(t, "garbage", func(c net.Conn) {
		readHead(c)
		_, _ = io.WriteString(c, "HELLO THERE\r\n\r\n")
	})
	busyIn, release := make(chan struct{}, 4), make(chan struct{})
	busy := startHTTPBackendFunc(t, "busy1", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy/hold" {
			busyIn <- struct{}{}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		b.echo(w, r)
	})
	type bodyRead struct {
		n   int64
		err error
	}
	sunk := make(chan bodyRead, 4)
	sink := startHTTPBackendFunc(t, "sink1", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		sunk <- bodyRead{n, err}
		fmt.Fprintf(w, "%d", n)
	})
	slow := startHTTPBackendFunc(t, "slow1", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
		b.echo(w, r)
	})
	const frontend = `
[frontend.timeout]
http_request = "500ms"
client = "1s"

[frontend.http]
max_body_bytes = 1024
max_header_bytes = 4096
max_headers = 20

[[frontend.route]]
backend = "closer"
path_prefix = ["/closer/"]

[[frontend.route]]
backend = "reset"
path_prefix = ["/reset/"]

[[frontend.route]]
backend = "garbage"
path_prefix = ["/garbage/"]

[[frontend.route]]
backend = "dead"
path_prefix = ["/dead/"]

[[frontend.route]]
backend = "down"
path_prefix = ["/down/"]

[[frontend.route]]
backend = "busy"
path_prefix = ["/busy/"]

[[frontend.route]]
backend = "slow"
path_prefix = ["/slow/"]

[[frontend.route]]
backend = "sink"
path_prefix = ["/sink/"]
`
	backends := httpBackendTable("app", "", app) +
		"[[backend]]\nname = \"closer\"\n" + closer.line() +
		"[[backend]]\nname = \"reset\"\n" + reset.line() +
		"[[backend]]\nname = \"garbage\"\n" + garbage.line() +
		"[[backend]]\nname = \"dead\"\n" + serverLine("d1", deadAddr(t), "") + serverLine("d2", deadAddr(t), "") +
		"[[backend]]\nname = \"down\"\n[backend.check]\ntype = \"tcp\"\ninterval = \"10s\"\n" + serverLine("x1", deadAddr(t), "") +
		"[[backend]]\nname = \"busy\"\n[backend.timeout]\nqueue = \"300ms\"\n" + serverLine(busy.name, busy.addr(), "maxconn = 1") +
		httpBackendTable("slow", "[backend.timeout]\nserver = \"300ms\"\n", slow) +
		httpBackendTable("sink", "", sink)
	p, addr := startHTTPLB(t, "", frontend, backends)

	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: e.test\r\n\r\n" }
	var manyHeaders, bigHeaders strings.Builder
	for i := range 25 {
		fmt.Fprintf(&manyHeaders, "X-H%d: %d\r\n", i, i)
	}
	for i := range 5 {
		fmt.Fprintf(&bigHeaders, "X-Big%d: %s\r\n", i, strings.Repeat("b", 1000))
	}
	chunk := strings.Repeat("c", 800)
	for _, tc := range []struct {
		name   string
		raw    string
		status int
		end    string
		// refused: lb answered before choosing a server; none may have
		// seen the request.
		refused bool
		// minTime is how long lb must have waited before answering.
		minTime time.Duration
	}{
		{"server closes without answering", get("/closer/x"), 502, "server_error", false, 0},
		{"server resets", get("/reset/x"), 502, "server_error", false, 0},
		{"server answers nonsense", get("/garbage/x"), 502, "bad_response", false, 0},
		{"every server refuses connections", get("/dead/x"), 503, "connect_failed", false, 0},
		{"every server down", get("/down/x"), 503, "no_server", false, 0},
		{"server slower than timeout.server", get("/slow/x"), 504, "server_timeout", false, 300 * time.Millisecond},
		{"malformed request line", "NOT-HTTP\r\n\r\n", 400, "bad_request", true, 0},
		{"bad character in target", "GET /a\x01b HTTP/1.1\r\nHost: e.test\r\n\r\n", 400, "bad_request", true, 0},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400, "bad_request", true, 0},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: e.test\r\nX-A: 1\r\n  folded\r\n\r\n", 400, "bad_request", true, 0},
		{"head stalls past http_request", "GET / HTTP/1.1\r\nHost: e.test\r\nX-Half: ", 408, "client_timeout", true, 500 * time.Millisecond},
		{"Content-Length over max_body_bytes", "POST / HTTP/1.1\r\nHost: e.test\r\nContent-Length: 2000\r\n\r\n", 413, "body_too_large", true, 0},
		{"request line over max_header_bytes", get("/" + strings.Repeat("u", 5000)), 414, "bad_request", true, 0},
		{"head over max_header_bytes", "GET / HTTP/1.1\r\nHost: e.test\r\n" + bigHeaders.String() + "\r\n", 431, "bad_request", true, 0},
		{"more than max_headers", "GET / HTTP/1.1\r\nHost: e.test\r\n" + manyHeaders.String() + "\r\n", 431, "bad_request", true, 0},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: e.test\r\n\r\n", 505, "bad_request", true, 0},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "bad_request", true, 0},
		{"CONNECT", "CONNECT e.test:443 HTTP/1.1\r\nHost: e.test:443\r\n\r\n", 405, "bad_request", true, 0},
		// The start of a TLS ClientHello, with no line end: lb must not
		// wait for one (then it would answer 408).
		{"TLS to the plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "bad_request", true, 0},
		// The cases below reach the app server, which may accept lb's
		// connection after lb has answered: they come after every refused
		// case, whose check counts what the app server saw.
		{"chunked over max_body_bytes", "POST / HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" + chunk + "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n",
			413, "body_too_large", false, 0},
		{"body stalls past timeout.client", "POST /stall HTTP/1.1\r\nHost: e.test\r\nContent-Length: 100\r\n\r\n0123456789", 408, "client_timeout", false, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := app.requests.Load() + app.conns.Load()
			start := time.Now()
			r := rawHTTP(t, addr, tc.raw)
			took := time.Since(start)
			if r.StatusCode != tc.status || !strings.HasPrefix(r.body, "lb: ") || !r.closed {
				t.Errorf("answered %d %q (connection closed: %v), want %d from lb, then the connection closed", r.StatusCode, r.body, r.closed, tc.status)
			}
			if took < tc.minTime {
				t.Errorf("answered after %v, before the %v timeout", took, tc.minTime)
			}
			if limit := tc.minTime + timeoutLateness(tc.minTime); tc.minTime > 0 && took > limit {
				t.Errorf("answered after %v: the %v timeout fired late (documented: at most 1/8 late; allowed with scheduling %v)", took, tc.minTime, limit)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == r.client })
			if logStatus(l) != tc.status || l["end"] != tc.end {
				t.Errorf("access log %v: want status %d, end %s", l, tc.status, tc.end)
			}
			if tc.refused && app.requests.Load()+app.conns.Load() != before {
				t.Errorf("lb refused the request, but the server got it")
			}
		})
	}

	t.Run("bodies at max_body_bytes", func(t *testing.T) {
		// The limit itself is allowed, framed either way.
		body := strings.Repeat("m", 1024)
		for _, raw := range []string{
			"POST /sink/cl HTTP/1.1\r\nHost: e.test\r\nContent-Length: 1024\r\n\r\n" + body,
			"POST /sink/chunked HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" + body[:512] + "\r\n200\r\n" + body[512:] + "\r\n0\r\n\r\n",
		} {
			r := rawHTTP(t, addr, raw)
			if r.StatusCode != 200 || r.body != "1024" {
				t.Errorf("%.40q...: %d %q, want 200 and the server reading 1024 bytes", raw, r.StatusCode, r.body)
			}
			if got := <-sunk; got.n != 1024 || got.err != nil {
				t.Errorf("%.40q...: the server read %d bytes, %v", raw, got.n, got.err)
			}
		}
	})

	t.Run("queue", func(t *testing.T) {
		c := newHTTPClient(t)
		held := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://" + addr + "/busy/hold")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			held <- err
		}()
		select {
		case <-busyIn:
		case <-time.After(5 * time.Second):
			t.Fatal("the first request never reached the server")
		}
		// The server's one slot is taken: the next request waits in the
		// queue, for 300ms, and gets 503.
		start := time.Now()
		r := rawHTTP(t, addr, get("/busy/queued"))
		if took := time.Since(start); r.StatusCode != 503 || took < 300*time.Millisecond {
			t.Errorf("a request queued behind a full server: %d after %v, want 503 after the 300ms queue timeout", r.StatusCode, took)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == r.client })
		if logStatus(l) != 503 || l["end"] != "queue_timeout" {
			t.Errorf("access log %v: want status 503, end queue_timeout", l)
		}
		// A request that gets the slot within the queue timeout is served.
		type result struct {
			r   rawResponse
			err error
		}
		queued := make(chan result, 1)
		go func() {
			r, err := tryRawHTTP(addr, get("/busy/later"))
			queued <- result{r, err}
		}()
		time.Sleep(100 * time.Millisecond)
		close(release)
		if err := <-held; err != nil {
			t.Errorf("the request that held the server: %v", err)
		}
		if q := <-queued; q.err != nil || q.r.StatusCode != 200 {
			t.Errorf("a request queued while the slot freed: %v, want 200", q)
		}
		if got := busy.seen(); !slices.Equal(got, []string{"/busy/hold", "/busy/later"}) {
			t.Errorf("the busy server saw %q", got)
		}
	})
}

// TestHTTPSmuggling sends requests framed two ways, or hiding a second
// request in a body, and checks that lb refuses the ambiguous ones before
// any server sees a byte, and forwards a hidden request only as the body
// it is.
func TestHTTPSmuggling(t *testing.T) {
	app := startHTTPBackend(t, "app1")
	_, addr := startHTTPLB(t, "", "", httpBackendTable("app", "", app))
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: e.test\r\n\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		status []int
		// headOK: the head is valid, the body's framing is not, which
		// lb only finds once it streams the body to a server: the server
		// may see a connection, but no request.
		headOK bool
	}{
		{"Content-Length then Transfer-Encoding",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, []int{400}, false},
		{"Transfer-Encoding then Content-Length",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n" + hidden, []int{400}, false},
		{"lower-case names",
			"POST /a HTTP/1.1\r\nhost: e.test\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n" + hidden, []int{400}, false},
		{"space before the colon",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: 44\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + hidden, []int{400}, false},
		{"chunked not last",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + hidden, []int{400, 501}, false},
		{"obfuscated chunked",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + hidden, []int{400, 501}, false},
		{"two Content-Lengths",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n" + hidden, []int{400}, false},
		{"Content-Length list that differs",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: 0, 44\r\n\r\n" + hidden, []int{400}, false},
		{"signed Content-Length",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: +44\r\n\r\n" + hidden, []int{400}, false},
		{"Transfer-Encoding in HTTP/1.0",
			"POST /a HTTP/1.0\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, []int{400}, false},
		{"bare LF in a chunk size line",
			"POST /a HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + hidden, []int{400}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests, conns := app.requests.Load(), app.conns.Load()
			r := rawHTTP(t, addr, tc.raw)
			if !slices.Contains(tc.status, r.StatusCode) || !r.closed {
				t.Errorf("answered %d %q (closed: %v), want one of %v and the connection closed", r.StatusCode, r.body, r.closed, tc.status)
			}
			if n := app.requests.Load() - requests; n != 0 {
				t.Errorf("the server saw %d requests (paths %q); want none", n, app.seen())
			}
			if n := app.conns.Load() - conns; n != 0 && !tc.headOK {
				t.Errorf("lb opened %d connections to the server for a request it had to refuse", n)
			}
		})
	}

	for _, tc := range []struct {
		name, carrier string
	}{
		{"hidden in a Content-Length body", fmt.Sprintf("POST /carrier HTTP/1.1\r\nHost: e.test\r\nContent-Length: %d\r\n\r\n%s", len(hidden), hidden)},
		{"hidden in a chunk", fmt.Sprintf("POST /carrier HTTP/1.1\r\nHost: e.test\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n0\r\n\r\n%s\r\n0\r\n\r\n", len("0\r\n\r\n"+hidden), hidden)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			// The carrier and a next request, pipelined in one write.
			if _, err := io.WriteString(c, tc.carrier+"GET /after HTTP/1.1\r\nHost: e.test\r\nConnection: close\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			first := readRaw(t, c, br, "POST")
			var e echoReply
			if err := json.Unmarshal([]byte(first.body), &e); err != nil || first.StatusCode != 200 || e.Path != "/carrier" {
				t.Fatalf("the carrier: %d %q", first.StatusCode, first.body)
			}
			wantBody := hidden
			if strings.Contains(tc.carrier, "chunked") {
				wantBody = "0\r\n\r\n" + hidden
			}
			if e.Body != wantBody {
				t.Errorf("the server got the body %q, want %q", e.Body, wantBody)
			}
			second := readRaw(t, c, br, "GET")
			if err := json.Unmarshal([]byte(second.body), &e); err != nil || second.StatusCode != 200 || e.Path != "/after" {
				t.Fatalf("the request after the carrier: %d %q", second.StatusCode, second.body)
			}
			if got := app.seen(); slices.Contains(got, "/smuggled") {
				t.Errorf("the server saw the hidden request: paths %q", got)
			}
		})
	}
	if got := app.seen(); !slices.Equal(got, []string{"/carrier", "/after", "/carrier", "/after"}) {
		t.Errorf("the server saw %q, want the carriers and the requests after them", got)
	}
}

// TestHTTPRetries checks lb's two retries. A request whose server refuses
// the connection goes to another server: with a dead server next to a live
// one every request is answered by the live one, those that tried the dead
// one first say so in the log (retries), and a request with a body is
// retried as well, since nothing was sent. And an idempotent request
// without a body sent on a pooled connection that the server closes is
// sent again on a new one; a POST is not.
func TestHTTPRetries(t *testing.T) {
	live := startHTTPBackend(t, "live")
	// flaky answers the first request of each connection, keeping it
	// open, and closes it without answering when a second one comes: as
	// a server does that closes an idle connection just as lb reuses it.
	flaky := startRawBackend(t, "flaky", func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		_, _ = br.Peek(1) // the next request: close without a word
	})
	backend := "[[backend]]\nname = \"app\"\nretries = 2\n" + serverLine("dead", deadAddr(t), "") + serverLine(live.name, live.addr(), "") +
		"[[backend]]\nname = \"flaky\"\n" + flaky.line()
	p, addr := startHTTPLB(t, "", "[[frontend.route]]\nbackend = \"flaky\"\npath_prefix = [\"/flaky/\"]\n", backend)

	t.Run("reused connection closed", func(t *testing.T) {
		c := newHTTPClient(t)
		for _, tc := range []struct {
			method, path, body string
			status             int
		}{
			{"GET", "/flaky/1", "", 200},
			// lb reuses the connection, which the server closes: a GET is
			// sent again on a new connection.
			{"GET", "/flaky/2", "", 200},
			{"DELETE", "/flaky/3", "", 200},
			// A POST is not: the server may have acted on it.
			{"POST", "/flaky/4", "data", 502},
		} {
			req := newRequest(t, tc.method, "http://"+addr+tc.path, strings.NewReader(tc.body))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.status == 200 && string(body) != tc.path) {
				t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
		}
		// One connection for /flaky/1, a new one each for /flaky/2 and
		// /flaky/3 after the reused one failed, none for the POST.
		if n := flaky.accepted.Load(); n != 3 {
			t.Errorf("flaky accepted %d connections, want 3", n)
		}
	})

	t.Run("connect failure", func(t *testing.T) {
		c := newHTTPClient(t)
		const n = 10
		for i := range n {
			method, body := "GET", ""
			if i%2 == 1 {
				method, body = "POST", fmt.Sprintf("body of request %d", i)
			}
			req := newRequest(t, method, fmt.Sprintf("http://%s/r/%d", addr, i), strings.NewReader(body))
			req.Header.Set("X-Request-Id", fmt.Sprintf("retry-%d", i))
			_, e := getEcho(t, c, req)
			if e.Server != "live" || e.Body != body || e.Method != method {
				t.Fatalf("request %d: %s answered %s with body %q", i, e.Server, e.Method, e.Body)
			}
		}
		retried := 0
		for i := range n {
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == fmt.Sprintf("retry-%d", i) })
			if l["server"] != "live" || logStatus(l) != 200 {
				t.Errorf("access log %v", l)
			}
			if l["retries"] == float64(1) {
				retried++
			}
		}
		// Round robin over two servers: at least every other request tried
		// the dead one first (every one does when the retry moves the turn on).
		if retried < n/2 {
			t.Errorf("%d of %d requests logged retries: 1, want at least half", retried, n)
		}
		fails := 0
		for _, l := range p.logLines(t, "connect failed") {
			if l["server"] == "dead" {
				fails++
			}
		}
		if fails != retried {
			t.Errorf("%d connect failed lines about the dead server, want %d (one per retried request)", fails, retried)
		}
	})
}

// TestHTTPKeepAlive checks connection reuse on both sides: a client's
// sequential requests share one connection to lb, and lb carries them to
// the server over pooled connections; pipelined requests are answered in
// order; HTTP/1.0 keeps the connection only when asked; an idle
// connection is closed after http_keep_alive.
func TestHTTPKeepAlive(t *testing.T) {
	s := startHTTPBackend(t, "s1")
	quick := startHTTPBackendIdle(t, "quick", nil, nil, 100*time.Millisecond)
	p, addr := startHTTPLB(t, "", "[frontend.timeout]\nhttp_keep_alive = \"400ms\"\n\n[[frontend.route]]\nbackend = \"quick\"\npath_prefix = [\"/quick/\"]\n",
		httpBackendTable("app", "", s)+httpBackendTable("quick", "", quick))

	t.Run("sequential requests", func(t *testing.T) {
		c := newHTTPClient(t)
		const n = 40
		var reused, dialled int
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			} else {
				dialled++
			}
		}}
		for i := range n {
			method, body := "GET", ""
			if i%4 == 3 {
				method, body = "POST", strings.Repeat("p", 100*i)
			}
			req := newRequest(t, method, fmt.Sprintf("http://%s/ka/%d", addr, i), strings.NewReader(body))
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			req.Header.Set("X-Request-Id", fmt.Sprintf("ka-%d", i))
			if _, e := getEcho(t, c, req); e.BodyLen != int64(len(body)) {
				t.Fatalf("request %d: the server got %d body bytes, want %d", i, e.BodyLen, len(body))
			}
		}
		if dialled != 1 || reused != n-1 {
			t.Errorf("the client dialled %d connections and reused one %d times for %d requests, want 1 and %d", dialled, reused, n, n-1)
		}
		clients := map[any]bool{}
		for i := range n {
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == fmt.Sprintf("ka-%d", i) })
			clients[l["client"]] = true
		}
		if len(clients) != 1 {
			t.Errorf("lb logged the requests from %d client connections, want 1: %v", len(clients), clients)
		}
		if got := s.conns.Load(); got > 2 {
			t.Errorf("lb opened %d connections to the server for %d sequential requests; it does not reuse them", got, n)
		}
		t.Logf("%d requests: 1 client connection, %d server connections", n, s.conns.Load())
	})

	t.Run("concurrent clients", func(t *testing.T) {
		// Pooled server connections carry many clients' requests: every
		// answer must be the one to its own request.
		const clients, each = 16, 15
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := newHTTPClient(t)
				for j := range each {
					path := fmt.Sprintf("/mix/%d/%d", i, j)
					body := strings.Repeat(fmt.Sprint(i), j*50)
					resp, err := c.Post("http://"+addr+path, "text/plain", strings.NewReader(body))
					if err != nil {
						errs <- err
						return
					}
					var e echoReply
					err = json.NewDecoder(resp.Body).Decode(&e)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || e.Path != path || e.Body != body {
						errs <- fmt.Errorf("%s: %d, the answer to %s with body %q (%v)", path, resp.StatusCode, e.Path, e.Body, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := s.conns.Load(); got > clients+2 {
			t.Errorf("lb opened %d connections to the server for %d clients' requests", got, clients)
		}
	})

	t.Run("server closes idle connections", func(t *testing.T) {
		// The server closes a connection idle for 100ms; lb must notice
		// before it reuses one, for a POST is not sent twice.
		c := newHTTPClient(t)
		for i := range 3 {
			if i > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			body := fmt.Sprintf("post %d", i)
			_, e := getEcho(t, c, newRequest(t, "POST", fmt.Sprintf("http://%s/quick/%d", addr, i), strings.NewReader(body)))
			if e.Body != body || e.Server != "quick" {
				t.Fatalf("POST %d: %s got %q", i, e.Server, e.Body)
			}
		}
		if n := quick.conns.Load(); n != 3 {
			t.Errorf("the server accepted %d connections for 3 requests 300ms apart, want 3", n)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var out strings.Builder
		for i := range 5 {
			fmt.Fprintf(&out, "GET /pipe/%d HTTP/1.1\r\nHost: e.test\r\n\r\n", i)
		}
		out.WriteString("POST /pipe/last HTTP/1.1\r\nHost: e.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast")
		if _, err := io.WriteString(c, out.String()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for i, want := range []string{"/pipe/0", "/pipe/1", "/pipe/2", "/pipe/3", "/pipe/4", "/pipe/last"} {
			r := readRaw(t, c, br, "GET")
			var e echoReply
			if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Path != want {
				t.Fatalf("response %d: %d %q, want the answer to %s", i, r.StatusCode, r.body, want)
			}
			if want == "/pipe/last" && (!r.closed || e.Body != "last") {
				t.Errorf("the last request (Connection: close, body %q): connection closed %v", e.Body, r.closed)
			}
		}
	})

	t.Run("HTTP/1.0", func(t *testing.T) {
		r := rawHTTP(t, addr, "GET /old HTTP/1.0\r\nHost: e.test\r\n\r\n")
		if r.StatusCode != 200 || !r.closed {
			t.Errorf("HTTP/1.0 without keep-alive: %d, connection closed %v; want 200 and closed", r.StatusCode, r.closed)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i := range 2 {
			if _, err := io.WriteString(c, "GET /old-ka HTTP/1.0\r\nHost: e.test\r\nConnection: keep-alive\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			r := readRaw(t, c, br, "GET")
			if r.StatusCode != 200 || r.Close || !strings.EqualFold(r.Header.Get("Connection"), "keep-alive") {
				t.Fatalf("HTTP/1.0 keep-alive request %d: %d, Connection %q", i, r.StatusCode, r.Header.Get("Connection"))
			}
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := io.WriteString(c, "GET /idle HTTP/1.1\r\nHost: e.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if r := readRaw(t, c, br, "GET"); r.StatusCode != 200 || r.Close {
			t.Fatalf("%d, close %v", r.StatusCode, r.Close)
		}
		start := time.Now()
		n, err := br.Read(make([]byte, 1))
		const keepAlive = 400 * time.Millisecond
		// The keep-alive timeout runs from the end of the response, which
		// the client sees a moment later: 50ms of slack below.
		if took := time.Since(start); n != 0 || err != io.EOF || took < keepAlive-50*time.Millisecond || took > keepAlive+timeoutLateness(keepAlive) {
			t.Errorf("an idle keep-alive connection: read %d bytes, %v after %v; want EOF after the 400ms http_keep_alive, not later than %v", n, err, took, keepAlive+timeoutLateness(keepAlive))
		}
	})
}

// TestHTTPPassiveChecksCount5xx sends traffic to backends whose first
// server fails (500 on a kept-alive connection, 500 then a closed
// connection, a connection closed without an answer) and whose second
// works; with error_limit = 2 passive checks must take the failing server
// down, and traffic then goes to the other one only.
func TestHTTPPassiveChecksCount5xx(t *testing.T) {
	fail500 := func(closeConn bool) func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		return func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
			if closeConn {
				w.Header().Set("Connection", "close")
			}
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}
	var backends, routes strings.Builder
	for _, tc := range []struct {
		backend string
		addr    string
	}{
		{"keepalive500", startHTTPBackendFunc(t, "bad", fail500(false)).addr()},
		{"close500", startHTTPBackendFunc(t, "bad", fail500(true)).addr()},
		{"hangup", startRawBackend(t, "bad", readHead).addr()},
	} {
		good := startHTTPBackend(t, "good")
		fmt.Fprintf(&backends, "[[backend]]\nname = %q\n[backend.check]\ntype = \"tcp\"\ninterval = \"10s\"\nerror_limit = 2\n%s%s",
			tc.backend, serverLine("bad", tc.addr, ""), serverLine("good", good.addr(), ""))
		fmt.Fprintf(&routes, "[[frontend.route]]\nbackend = %q\npath_prefix = [\"/%s/\"]\n", tc.backend, tc.backend)
	}
	backends.WriteString(httpBackendTable("app", "", startHTTPBackend(t, "default")))
	sock := filepath.Join(t.TempDir(), "admin.sock")
	p, addr := startHTTPLB(t, fmt.Sprintf("admin_socket = %q", sock), routes.String(), backends.String())

	health := func(backend string) string {
		for _, line := range strings.Split(adminQuery(t, sock, "show servers state"), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == backend && f[1] == "bad" {
				return f[3]
			}
		}
		t.Fatalf("no server %s/bad in show servers state", backend)
		return ""
	}
	for _, backend := range []string{"keepalive500", "close500", "hangup"} {
		t.Run(backend, func(t *testing.T) {
			if h := health(backend); h != "up" {
				t.Fatalf("bad is %s before any traffic", h)
			}
			c := newHTTPClient(t)
			var statuses []int
			// Round robin: every other request goes to bad; two failures
			// in a row must be enough, allow twice that.
			for i := 0; i < 8 && health(backend) == "up"; i++ {
				resp, err := c.Get(fmt.Sprintf("http://%s/%s/%d", addr, backend, i))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses = append(statuses, resp.StatusCode)
				time.Sleep(20 * time.Millisecond) // lets the checker act on a trigger
			}
			// The checker acts on a trigger in a goroutine of its own.
			for deadline := time.Now().Add(2 * time.Second); health(backend) == "up" && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if h := health(backend); h != "down" {
				t.Fatalf("after answers %v, bad is still %s: its failures were not counted", statuses, h)
			}
			p.waitOutput(t, `"message":"server `+backend+`/bad is DOWN: 2 consecutive connection errors`)
			for i := range 4 {
				resp, err := c.Get(fmt.Sprintf("http://%s/%s/after-%d", addr, backend, i))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("X-Server") != "good" {
					t.Fatalf("with bad down: %d %q from %q", resp.StatusCode, body, resp.Header.Get("X-Server"))
				}
			}
		})
	}
}

// TestHTTPResponseFraming has a raw server answer with every way a
// response body can be framed (or not be there at all) and checks, over
// one client connection, that lb passes each on whole and keeps the
// connection usable: a body delimited by the server's close, HEAD, 204,
// 304, chunked with a trailer (passed on to HTTP/1.1 clients, dropped for
// HTTP/1.0 ones), a 103 before the response, and HTTP/1.0.
func TestHTTPResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	answers := map[string]cannedAnswer{
		"/until-close": {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + big, true},
		"/head":        {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false},
		"/204":         {"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", false},
		"/304":         {"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1000\r\n\r\n", false},
		"/chunked":     {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: t\r\n\r\n", false},
		"/103":         {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints", false},
		"/http10":      {"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nolder", true},
		// Cut short: the server closes before the end of the body.
		"/short":         {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", true},
		"/short-chunked": {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true},
	}
	srv := startCannedBackend(t, "raw", answers)
	p, addr := startHTTPLB(t, "", "", "[[backend]]\nname = \"app\"\n"+srv.line())
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		trailer      http.Header
	}{
		{"GET", "/until-close", 200, big, nil},
		{"HEAD", "/head", 200, "", nil},
		{"GET", "/204", 204, "", nil},
		{"GET", "/304", 304, "", nil},
		{"GET", "/chunked", 200, "hello world", http.Header{"X-T": {"t"}}},
		{"GET", "/103", 200, "hints", nil},
		{"GET", "/http10", 200, "older", nil},
		{"GET", "/until-close", 200, big, nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			id := fmt.Sprintf("framing-%s-%d", strings.Trim(tc.path, "/"), time.Now().UnixNano())
			if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: f.test\r\nX-Request-Id: %s\r\n\r\n", tc.method, tc.path, id); err != nil {
				t.Fatal(err)
			}
			r := readRaw(t, c, br, tc.method)
			if tc.path == "/103" {
				// lb passes the early hints on, then the response.
				if r.StatusCode != 103 || r.Header.Get("Link") != "</s.css>; rel=preload" {
					t.Fatalf("first %d %v, want the 103 with its Link", r.StatusCode, r.Header)
				}
				r = readRaw(t, c, br, tc.method)
			}
			if r.StatusCode != tc.status || r.body != tc.body {
				t.Fatalf("%d with a %d-byte body, want %d with %d bytes", r.StatusCode, len(r.body), tc.status, len(tc.body))
			}
			if len(r.Trailer) != 0 || tc.trailer != nil {
				if !maps.EqualFunc(r.Trailer, tc.trailer, slices.Equal) {
					t.Errorf("trailer %v, want %v", r.Trailer, tc.trailer)
				}
			}
			if r.Close {
				t.Fatalf("lb closed the client's connection after it (Connection: close)")
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["request_id"] == id })
			if logStatus(l) != tc.status || l["end"] != "ok" || l["bytes_out"] != float64(len(tc.body)) {
				t.Errorf("access log %v: want status %d, end ok, bytes_out %d", l, tc.status, len(tc.body))
			}
		})
	}
	// The client's connection carried every request: lb never closed it.
	clients := map[any]bool{}
	for _, l := range p.logLines(t, "request") {
		clients[l["client"]] = true
	}
	if len(clients) != 1 {
		t.Errorf("requests came on %d client connections, want 1", len(clients))
	}

	t.Run("HTTP/1.0 client, chunked response", func(t *testing.T) {
		// HTTP/1.0 knows no chunked coding: lb must delimit the body by
		// closing the connection, at once, keep-alive or not.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetDeadline(start.Add(2500 * time.Millisecond)) // http_keep_alive is 5s
		if _, err := io.WriteString(c, "GET /chunked HTTP/1.0\r\nHost: f.test\r\nConnection: keep-alive\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || !resp.Close {
			t.Errorf("%d, Transfer-Encoding %q, Connection: close %v; want the body delimited by the close, for HTTP/1.0", resp.StatusCode, resp.TransferEncoding, resp.Close)
		}
		if err != nil {
			t.Errorf("after %v, body %q: %v: lb said Connection: close but kept the connection open (until http_keep_alive)", time.Since(start).Round(time.Millisecond), body, err)
		} else if string(body) != "hello world" {
			t.Errorf("body %q", body)
		}
		// The body ends with the connection: no place for the trailer,
		// which is dropped, nor for announcing it.
		if v, ok := resp.Header["Trailer"]; ok || len(resp.Trailer) != 0 {
			t.Errorf("Trailer: %q, trailers %v, to an HTTP/1.0 client", v, resp.Trailer)
		}
	})

	// A response the server cuts short must reach the client cut short:
	// never as a complete one.
	for _, path := range []string{"/short", "/short-chunked"} {
		t.Run("cut "+path, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: f.test\r\n\r\n", path); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("no response head: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Errorf("status %d, body %q read to a clean end: the client cannot tell the response was cut", resp.StatusCode, body)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
			if l["end"] != "server_error" {
				t.Errorf("access log %v: want end server_error", l)
			}
		})
	}
}
