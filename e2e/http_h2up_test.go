package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"lb/internal/testcert"
)

// Backends with proto = "h2": lb speaks HTTP/2 to the servers, in
// cleartext with prior knowledge or over TLS, many requests at once on a
// connection.

// startH2Backend starts an httpBackend that speaks HTTP/2: over TLS with tc
// (h2 by ALPN), or h2c with prior knowledge when tc is nil. HTTP/1.1 is
// refused, so that a request that reaches it came over HTTP/2.
func startH2Backend(t *testing.T, name string, h func(b *httpBackend, w http.ResponseWriter, r *http.Request), tc *tls.Config) *httpBackend {
	t.Helper()
	var protos http.Protocols
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	return startBackendProtos(t, name, h, tc, 30*time.Second, &protos)
}

// h2BackendTLS returns the TLS configuration of an HTTP/2 server whose
// certificate ca signs for 127.0.0.1, and the [backend.tls] table that
// trusts ca.
func h2BackendTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "srv", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := ca.WriteCA(t, dir)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, fmt.Sprintf("[backend.tls]\nenabled = true\nca_file = %q\n", caFile)
}

// TestH2Backend: requests from HTTP/1.1 and HTTP/2 clients reach h2c and
// TLS servers over HTTP/2, with their bodies, trailers both ways and
// streaming responses; many requests at once share a connection.
func TestH2Backend(t *testing.T) {
	tc, tlsTable := h2BackendTLS(t)
	handler := func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/sec") {
		case "/trailer":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s got %d bytes, trailer %q", r.Proto, len(body), r.Trailer.Get("X-Client-Sum"))
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Undeclared", "yes")
		case "/slow":
			time.Sleep(200 * time.Millisecond)
			b.echo(w, r)
		default:
			b.echo(w, r)
		}
	}
	plain := startH2Backend(t, "h2c", handler, nil)
	secure := startH2Backend(t, "h2tls", handler, tc)
	backends := httpBackendTable("app", `proto = "h2"`, plain) + "\n" + httpBackendTable("sec", "proto = \"h2\"\n"+tlsTable, secure)
	_, addr := startH2LB(t, "", `
[[frontend.route]]
path_prefix = ["/sec/"]
backend = "sec"
`, backends)

	clients := map[string]*http.Client{"HTTP/1.1": newTLSClient(t, false), "HTTP/2": newTLSClient(t, true)}
	for cname, client := range clients {
		for _, srv := range []struct {
			prefix string
			b      *httpBackend
		}{{"", plain}, {"/sec", secure}} {
			t.Run(cname+" to "+srv.b.name, func(t *testing.T) {
				req := newRequest(t, "POST", "https://"+addr+srv.prefix+"/echo?q=1", strings.NewReader("hello"))
				req.Header.Set("X-Test", "a")
				resp, e := getEcho(t, client, req)
				if e.Proto != "HTTP/2.0" || e.Server != srv.b.name || e.Method != "POST" || e.Path != srv.prefix+"/echo" ||
					e.Query != "q=1" || e.Body != "hello" || e.Header.Get("X-Test") != "a" || e.Header.Get("X-Forwarded-For") != "127.0.0.1" ||
					e.Host != addr || e.Header.Get("User-Agent") != "Go-http-client/"+map[bool]string{true: "2.0", false: "1.1"}[cname == "HTTP/2"] {
					t.Errorf("the server got %+v", e)
				}
				if resp.Header.Get("X-Server") != srv.b.name {
					t.Errorf("response head %v", resp.Header)
				}

				// A streamed body with a trailer each way.
				pr, pw := io.Pipe()
				go func() {
					_, _ = pw.Write([]byte("part one, "))
					time.Sleep(20 * time.Millisecond)
					_, _ = pw.Write([]byte("part two"))
					_ = pw.Close()
				}()
				req = newRequest(t, "POST", "https://"+addr+srv.prefix+"/trailer", pr)
				req.Trailer = http.Header{"X-Client-Sum": {"7"}}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != `HTTP/2.0 got 18 bytes, trailer "7"` {
					t.Fatalf("%d %q %v", resp.StatusCode, body, err)
				}
				if resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Undeclared") != "yes" {
					t.Errorf("trailer %v", resp.Trailer)
				}
			})
		}
	}

	// 100 slow requests at once over HTTP/2 clients' connections: the
	// server gets them on as few connections as its stream limit (Go's
	// server: 250) allows: one.
	before := plain.conns.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := clients["HTTP/2"].Get(fmt.Sprintf("https://%s/slow?%d", addr, i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var e echoReply
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Query != fmt.Sprint(i) {
				errs <- fmt.Errorf("request %d: %+v, %v", i, e, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := plain.conns.Load() - before; n > 1 {
		t.Errorf("100 concurrent requests opened %d connections to the server, want at most 1 (the one kept)", n)
	}
}

// newTLSClient returns a client of lb's TLS frontend (its certificate is
// not checked) that speaks HTTP/2 when h2, else HTTP/1.1.
func newTLSClient(t *testing.T, h2 bool) *http.Client {
	t.Helper()
	var protos http.Protocols
	if h2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{
		Protocols:          &protos,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableCompression: true,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// TestH2BackendH2load: h2load, 4 connections of 50 concurrent streams
// each, through lb to an HTTP/2 server: every request succeeds, and the
// server sees them on a few connections, many streams each.
func TestH2BackendH2load(t *testing.T) {
	h2load := lookTool(t, "h2load", "apt-get install nghttp2-client")
	srv := startH2Backend(t, "s1", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(time.Millisecond) // so that streams overlap
		_, _ = io.WriteString(w, "ok\n")
	}, nil)
	p, addr := startH2LB(t, "", "", httpBackendTable("app", `proto = "h2"`, srv))
	r := runCmd(t, 2*time.Minute, nil, h2load, "-c", "4", "-m", "50", "-n", "20000", "https://"+addr+"/")
	if r.code != 0 || !strings.Contains(r.stdout, "20000 succeeded, 0 failed, 0 errored") || !strings.Contains(r.stdout, "status codes: 20000 2xx") {
		var bad []string
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, `"end":`) && !strings.Contains(l, `"end":"ok"`) && len(bad) < 5 {
				bad = append(bad, l)
			}
		}
		t.Fatalf("h2load: %s\nlb's first requests that did not end well:\n%s", r, strings.Join(bad, "\n"))
	}
	// Go's server allows 250 streams a connection: lb needs one for 200
	// at once; a second may open while the first's SETTINGS are on their
	// way.
	if n := srv.conns.Load(); n > 2 {
		t.Errorf("the server got %d connections for 200 concurrent streams, want 1 or 2", n)
	}
	if n := srv.requests.Load(); n != 20000 {
		t.Errorf("the server got %d requests, want 20000", n)
	}
}

// firstConnListener hands the first connection it accepts to first (a
// server of the test's own, speaking HTTP/2 frame by frame), and the
// others to the http.Server that accepts from it.
type firstConnListener struct {
	net.Listener
	once  sync.Once
	first func(c net.Conn)
}

func (l *firstConnListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		first := false
		l.once.Do(func() { first = true })
		if !first {
			return c, nil
		}
		go func() {
			defer c.Close()
			l.first(c)
		}()
	}
}

// startFirstConnBackend starts an h2c backend whose first connection is
// served by first, and the others by an echo.
func startFirstConnBackend(t *testing.T, first func(c net.Conn)) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: "s1", ln: ln}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	b.srv = &http.Server{Handler: b, Protocols: &protos, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = b.srv.Serve(&firstConnListener{Listener: ln, first: first}) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// serveFrames reads the client's preface, sends SETTINGS, and hands each
// HEADERS frame to headers, with a framer to answer it, until the
// connection ends or headers says to stop.
func serveFrames(c net.Conn, headers func(fr *http2.Framer, f *http2.HeadersFrame) bool) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if !headers(fr, f) {
				return
			}
		}
	}
}

// TestH2BackendLostConnectionRetry: an idempotent request whose reused
// connection the server closed under it, before any response, goes again
// on a new connection.
func TestH2BackendLostConnectionRetry(t *testing.T) {
	// The first connection answers its first request, and is closed,
	// without a GOAWAY, when the second comes.
	var requests atomic.Int64
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	b := startFirstConnBackend(t, func(c net.Conn) {
		serveFrames(c, func(fr *http2.Framer, f *http2.HeadersFrame) bool {
			if requests.Add(1) > 1 {
				return false
			}
			hbuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
			return true
		})
	})
	p, addr := startHTTPLB(t, "", "", httpBackendTable("app", `proto = "h2"`, b))
	client := newHTTPClient(t)
	resp, err := client.Get("http://" + addr + "/first")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	_, e := getEcho(t, client, newRequest(t, "GET", "http://"+addr+"/second", nil))
	if e.Path != "/second" || e.Proto != "HTTP/2.0" {
		t.Errorf("the server got %+v", e)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("the first connection got %d requests, want 2", n)
	}
	l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == "/second" })
	if l["retries"] != 1.0 {
		t.Errorf("the log says %v retries, want 1: %v", l["retries"], l)
	}
}

// TestH2BackendGoAwayRetry: a request whose stream the server's GOAWAY
// left unprocessed goes again, with its body, on a new connection, though
// its method is not idempotent.
func TestH2BackendGoAwayRetry(t *testing.T) {
	// The first connection answers the first stream with a GOAWAY that
	// leaves it unprocessed (last stream 0).
	var requests atomic.Int64
	b := startFirstConnBackend(t, func(c net.Conn) {
		serveFrames(c, func(fr *http2.Framer, f *http2.HeadersFrame) bool {
			if requests.Add(1) == 1 {
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, []byte("going away"))
			}
			return true
		})
	})
	p, addr := startHTTPLB(t, "", "", httpBackendTable("app", `proto = "h2"`, b))
	body := strings.Repeat("x", 10_000)
	req := newRequest(t, "POST", "http://"+addr+"/retried", strings.NewReader(body))
	_, e := getEcho(t, newHTTPClient(t), req)
	if e.Proto != "HTTP/2.0" || e.Body != body[:4096] || e.BodyLen != int64(len(body)) {
		t.Errorf("the server got %s %s with %d bytes of body", e.Proto, e.Method, e.BodyLen)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the GOAWAY server got %d requests, want 1", n)
	}
	l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == "/retried" })
	if l["retries"] != 1.0 {
		t.Errorf("the log says %v retries, want 1: %v", l["retries"], l)
	}
}

// TestH2BackendHealthChecks: the HTTP check of an HTTP/2 backend speaks
// HTTP/2: the HTTP/2 server stays up, a server that speaks only HTTP/1.1
// goes down, with the reason.
func TestH2BackendHealthChecks(t *testing.T) {
	good := startH2Backend(t, "good", nil, nil)
	old := startHTTPBackend(t, "old")
	backend := "[[backend]]\nname = \"app\"\nproto = \"h2\"\n\n[backend.check]\ntype = \"http\"\ninterval = \"100ms\"\nfall = 2\nrise = 2\n\n" +
		serverLine(good.name, good.addr(), "") + serverLine(old.name, old.addr(), "")
	p, addr := startHTTPLB(t, "", "", backend)
	p.waitOutput(t, `server app/old is DOWN: bad HTTP response`)
	client := newHTTPClient(t)
	for i := range 10 {
		_, e := getEcho(t, client, newRequest(t, "GET", fmt.Sprintf("http://%s/%d", addr, i), nil))
		if e.Server != "good" || e.Proto != "HTTP/2.0" {
			t.Fatalf("request %d went to %s in %s", i, e.Server, e.Proto)
		}
	}
	if strings.Contains(p.stderr.String(), "server app/good is DOWN") {
		t.Errorf("the HTTP/2 server went down:\n%s", p.stderr.String())
	}
	// (The checks' HTTP/2 preface reads as a request "PRI *" to it.)
	for _, path := range old.seen() {
		if path != "*" {
			t.Errorf("the HTTP/1.1 server got a request for %q", path)
		}
	}
}

// TestH2BackendTimeouts: timeout.server bounds an HTTP/2 server that
// stalls before its head (504) and within its body (the response is cut),
// and the server's stream is reset either way.
func TestH2BackendTimeouts(t *testing.T) {
	reset := make(chan string, 2)
	srv := startH2Backend(t, "slow", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "first part")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
			reset <- r.URL.Path
		case <-time.After(20 * time.Second):
		}
	}, nil)
	p, addr := startHTTPLB(t, "", "", httpBackendTable("app", "proto = \"h2\"\n[backend.timeout]\nserver = \"500ms\"\n", srv))
	client := newHTTPClient(t)

	start := time.Now()
	resp, err := client.Get("http://" + addr + "/head")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 || time.Since(start) > 10*time.Second {
		t.Errorf("a server silent before its head: %d after %v, want 504 after timeout.server", resp.StatusCode, time.Since(start))
	}
	l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == "/head" })
	if l["end"] != "server_timeout" {
		t.Errorf("log: %v", l)
	}

	resp, err = client.Get("http://" + addr + "/body")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err == nil || string(body) != "first part" {
		t.Errorf("a server silent within its body: %d %q %v, want the first part, then an error", resp.StatusCode, body, err)
	}
	l = waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == "/body" })
	if l["end"] != "server_timeout" {
		t.Errorf("log: %v", l)
	}
	for range 2 {
		select {
		case <-reset:
		case <-time.After(10 * time.Second):
			t.Fatal("the server's stream was not reset")
		}
	}
}
