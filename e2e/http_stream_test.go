package e2e

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
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lb/internal/testcert"
)

// Tests of bodies that flow both ways at once: a response streamed in
// pieces (server-sent events) must reach the client piece by piece, a
// request body goes to the server while the response comes back (a
// streaming echo), a server may answer before it read the body, and a
// client that fails its body after the response started ends the exchange
// without lb writing anything of its own after the server's head.

// stepWait bounds how long a client waits for a piece that lb must pass on
// at once (the server is blocked meanwhile, so it cannot be waiting for
// more data from the server).
const stepWait = 3 * time.Second

// stepGate blocks a server between the pieces it sends until the test lets
// it go on. It is unbuffered: the test's next only returns once the server
// took it, so whatever the client received before was received while the
// server was blocked.
type stepGate struct {
	ch   chan struct{}
	stop chan struct{}
	once sync.Once
}

func newStepGate() *stepGate {
	return &stepGate{ch: make(chan struct{}), stop: make(chan struct{})}
}

// openOnCleanup opens g for good when the test ends. It must be called
// after the server that waits on g is started, so that g opens before that
// server's cleanup waits for its handlers.
func (g *stepGate) openOnCleanup(t *testing.T) {
	t.Cleanup(func() { g.once.Do(func() { close(g.stop) }) })
}

// wait is the server's: it reports false when the test ended or did not
// let it go on within 10 s.
func (g *stepGate) wait() bool {
	select {
	case <-g.ch:
		return true
	case <-g.stop:
		return false
	case <-time.After(10 * time.Second):
		return false
	}
}

// next lets the server go on.
func (g *stepGate) next(t *testing.T) {
	t.Helper()
	select {
	case g.ch <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not come to wait for the test's go-ahead within 5s")
	}
}

// dialStream opens a raw connection to addr, closed when the test ends,
// with an overall deadline of 20 s.
func dialStream(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// readWithin reads exactly n bytes from r, c's reader, within d.
func readWithin(c net.Conn, r io.Reader, n int, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, n)
	k, err := io.ReadFull(r, b)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return string(b[:k]), err
}

// readHeadWithin reads a response head from br, c's reader, within d.
func readHeadWithin(c net.Conn, br *bufio.Reader, method string, d time.Duration) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return resp, err
}

// writeString writes s to c, failing the test on error.
func writeString(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("writing %.60q: %v", s, err)
	}
}

// chunkOf is data as one chunk of a chunked body.
func chunkOf(data string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(data), data) }

// bodyEnd is how a server's read of a request body ended: n bytes, then
// err (nil: the whole body).
type bodyEnd struct {
	path string
	n    int64
	err  error
}

// bodyEnds collects the ends of the request bodies a server read.
type bodyEnds chan bodyEnd

func (e bodyEnds) report(path string, n int64, err error) {
	select {
	case e <- bodyEnd{path, n, err}:
	default:
	}
}

// waitMaybe waits up to d for the end of the body of the request for
// path, and reports whether it came.
func (e bodyEnds) waitMaybe(path string, d time.Duration) (bodyEnd, bool) {
	timeout := time.After(d)
	for {
		select {
		case b := <-e:
			if b.path == path {
				return b, true
			}
		case <-timeout:
			return bodyEnd{}, false
		}
	}
}

// wait waits up to d for the end of the body of the request for path.
func (e bodyEnds) wait(t *testing.T, path string, d time.Duration) bodyEnd {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case b := <-e:
			if b.path == path {
				return b
			}
		case <-timeout:
			t.Fatalf("the server's read of the body of %s did not end within %v", path, d)
			return bodyEnd{}
		}
	}
}

// duplexEcho returns an httpBackend handler that sends its 200 head at
// once, then echoes the request body as it reads it, each piece flushed,
// and ends the response when the body ends. It reports the end of each
// body on ends.
func duplexEcho(ends bodyEnds) func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
	return func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			ends.report(r.URL.Path, 0, err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Server", b.name)
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			ends.report(r.URL.Path, 0, err)
			return
		}
		buf := make([]byte, 32<<10)
		var n int64
		for {
			k, err := r.Body.Read(buf)
			n += int64(k)
			if k > 0 {
				if _, werr := w.Write(buf[:k]); werr != nil {
					ends.report(r.URL.Path, n, fmt.Errorf("writing the echo: %w", werr))
					return
				}
				if werr := rc.Flush(); werr != nil {
					ends.report(r.URL.Path, n, fmt.Errorf("flushing the echo: %w", werr))
					return
				}
			}
			if err == io.EOF {
				ends.report(r.URL.Path, n, nil)
				return
			}
			if err != nil {
				ends.report(r.URL.Path, n, err)
				return
			}
		}
	}
}

// h2Frontend returns a second [[frontend]] table, "secure", that
// terminates TLS (HTTP/2 offered) on a free port and sends to "app", its
// address, and an HTTP/2 client for it.
func h2Frontend(t *testing.T) (table, addr string, c *http.Client) {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "d", "d.test")
	port := freePort(t)
	table = fmt.Sprintf("\n[[frontend]]\nname = \"secure\"\nbind = [\"127.0.0.1:%d\"]\ndefault_backend = \"app\"\n\n[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n",
		port, crt, key)
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{ServerName: "d.test", RootCAs: ca.Pool()},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return table, fmt.Sprintf("127.0.0.1:%d", port), &http.Client{Transport: tr}
}

// TestHTTPStreamSSE checks that a response the server sends in pieces,
// pausing between them, reaches the client piece by piece while the
// server is paused, whatever its framing: chunked server-sent events, a
// Content-Length body, a body delimited by the close of the connection.
func TestHTTPStreamSSE(t *testing.T) {
	events := []string{"id: 1\nevent: tick\ndata: event one\n\n", "id: 2\nevent: tick\ndata: event two\n\n"}
	sseGate, clGate, closeGate := newStepGate(), newStepGate(), newStepGate()
	sse := startHTTPBackendFunc(t, "sse", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for _, ev := range events {
			if _, err := io.WriteString(w, ev); err != nil {
				return
			}
			if rc.Flush() != nil || !sseGate.wait() {
				return
			}
		}
	})
	sseGate.openOnCleanup(t)
	pieces := []string{"the first half of a body ", "and the second half of it\n"}
	cl := startRawBackend(t, "cl", func(c net.Conn) {
		readHead(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(pieces[0])+len(pieces[1]), pieces[0])
		if clGate.wait() {
			_, _ = io.WriteString(c, pieces[1])
			clGate.wait()
		}
	})
	clGate.openOnCleanup(t)
	closing := startRawBackend(t, "closing", func(c net.Conn) {
		readHead(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n%s", pieces[0])
		if closeGate.wait() {
			_, _ = io.WriteString(c, pieces[1])
			closeGate.wait()
		}
		// The handler's return closes the connection: the end of the body.
	})
	closeGate.openOnCleanup(t)
	frontend := "[[frontend.route]]\nbackend = \"cl\"\npath_prefix = [\"/length/\"]\n\n[[frontend.route]]\nbackend = \"closing\"\npath_prefix = [\"/closing/\"]\n"
	backends := httpBackendTable("app", "", sse) +
		"[[backend]]\nname = \"cl\"\n" + cl.line() +
		"[[backend]]\nname = \"closing\"\n" + closing.line()
	p, addr := startHTTPLB(t, "", frontend, backends)

	for _, tc := range []struct {
		name, path string
		gate       *stepGate
		pieces     []string
		chunked    bool // the client gets a chunked response
	}{
		{"chunked event stream", "/events", sseGate, events, true},
		{"content-length in two pieces", "/length/", clGate, pieces, false},
		{"delimited by close", "/closing/", closeGate, pieces, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialStream(t, addr)
			writeString(t, c, "GET "+tc.path+" HTTP/1.1\r\nHost: sse.test\r\nAccept: text/event-stream\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := readHeadWithin(c, br, "GET", stepWait)
			if err != nil {
				t.Fatalf("no response head within %v while the server holds its body's next piece (lb keeps it?): %v", stepWait, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || slices.Equal(resp.TransferEncoding, []string{"chunked"}) != tc.chunked {
				t.Fatalf("status %d, Transfer-Encoding %q, Content-Length %d", resp.StatusCode, resp.TransferEncoding, resp.ContentLength)
			}
			if tc.path == "/events" && resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			for i, piece := range tc.pieces {
				start := time.Now()
				got, err := readWithin(c, resp.Body, len(piece), stepWait)
				if err != nil || got != piece {
					t.Fatalf("piece %d: got %q (%v) after %v, want %q: lb did not pass on what the server sent while the server waits",
						i+1, got, err, time.Since(start).Round(time.Millisecond), piece)
				}
				tc.gate.next(t)
			}
			_ = c.SetReadDeadline(time.Now().Add(stepWait))
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("after the last piece: %q, %v; want the end of the body", rest, err)
			}
			total := 0
			for _, piece := range tc.pieces {
				total += len(piece)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == tc.path })
			if logStatus(l) != 200 || l["end"] != "ok" || l["bytes_out"] != float64(total) {
				t.Errorf("access log %v: want status 200, end ok, bytes_out %d", l, total)
			}
		})
	}
}

// TestHTTPDuplexPingPong sends a request body piece by piece, and waits
// for the server's echo of each piece before sending the next: lb must
// send each piece on as it comes and pass each echo back as it comes, over
// HTTP/1.1 (chunked and Content-Length bodies) and over HTTP/2 (to lb;
// HTTP/1.1 to the server).
func TestHTTPDuplexPingPong(t *testing.T) {
	const rounds = 10
	ends := make(bodyEnds, 16)
	s := startHTTPBackendFunc(t, "echo", duplexEcho(ends))
	secure, h2addr, h2c := h2Frontend(t)
	p, addr := startHTTPLB(t, "", secure, httpBackendTable("app", "", s))
	ping := func(i int) string { return fmt.Sprintf("ping %02d\n", i) }
	total := rounds * len(ping(0))

	for _, chunked := range []bool{true, false} {
		name := "HTTP/1.1 content-length"
		path := "/pingpong/cl"
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: d.test\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", path, total)
		if chunked {
			name, path = "HTTP/1.1 chunked", "/pingpong/chunked"
			head = "POST " + path + " HTTP/1.1\r\nHost: d.test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
		}
		t.Run(name, func(t *testing.T) {
			c := dialStream(t, addr)
			br := bufio.NewReader(c)
			var resp *http.Response
			for i := 1; i <= rounds; i++ {
				piece := ping(i)
				if chunked {
					piece = chunkOf(piece)
				}
				if i == 1 {
					piece = head + piece
				}
				writeString(t, c, piece)
				if i == 1 {
					var err error
					if resp, err = readHeadWithin(c, br, "POST", stepWait); err != nil {
						t.Fatalf("no response head within %v of the first piece: %v", stepWait, err)
					}
					defer resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("status %d", resp.StatusCode)
					}
				}
				if got, err := readWithin(c, resp.Body, len(ping(i)), stepWait); err != nil || got != ping(i) {
					t.Fatalf("round %d: echo %q (%v), want %q within %v: the piece or its echo is held up", i, got, err, ping(i), stepWait)
				}
			}
			if chunked {
				writeString(t, c, "0\r\n\r\n")
			}
			_ = c.SetReadDeadline(time.Now().Add(stepWait))
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("after the last round: %q, %v; want the end of the response", rest, err)
			}
			if e := ends.wait(t, path, 5*time.Second); e.err != nil || e.n != int64(total) {
				t.Errorf("the server read %d body bytes, then %v; want %d and the end", e.n, e.err, total)
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
			if logStatus(l) != 200 || l["end"] != "ok" || l["bytes_in"] != float64(total) || l["bytes_out"] != float64(total) {
				t.Errorf("access log %v: want status 200, end ok, %d bytes each way", l, total)
			}
			// The exchange ended well: the connection carries the next
			// request.
			conns := s.conns.Load()
			writeString(t, c, "POST "+path+"/next HTTP/1.1\r\nHost: d.test\r\nContent-Length: 5\r\n\r\nnext\n")
			next := readRaw(t, c, br, "POST")
			if next.StatusCode != 200 || next.body != "next\n" {
				t.Errorf("the next request on the connection: %d %q", next.StatusCode, next.body)
			}
			if n := s.conns.Load() - conns; n != 0 {
				t.Errorf("lb opened %d new server connections for the next request, want it to reuse the one of the full-duplex exchange", n)
			}
		})
	}

	t.Run("HTTP/2", func(t *testing.T) {
		const path = "/pingpong/h2"
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		req, err := http.NewRequestWithContext(ctx, "POST", "https://"+h2addr+path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		// step runs f, cancelling the request if it takes more than
		// stepWait; it reports whether f was in time.
		step := func(f func()) bool {
			timer := time.AfterFunc(stepWait, cancel)
			f()
			return timer.Stop()
		}
		// The head reaches the server with the body's first bytes: the
		// first piece goes before the response can come.
		first := make(chan error, 1)
		go func() {
			_, err := io.WriteString(pw, ping(1))
			first <- err
		}()
		var resp *http.Response
		if !step(func() { resp, err = h2c.Do(req) }) || err != nil {
			t.Fatalf("no response head within %v of the first piece: %v", stepWait, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("status %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(ping(0)))
		for i := 1; i <= rounds; i++ {
			if i > 1 {
				if !step(func() { _, err = io.WriteString(pw, ping(i)) }) || err != nil {
					t.Fatalf("round %d: sending the piece: %v", i, err)
				}
			}
			var n int
			if !step(func() { n, err = io.ReadFull(resp.Body, buf) }) || err != nil || string(buf[:n]) != ping(i) {
				t.Fatalf("round %d: echo %q (%v), want %q within %v: the piece or its echo is held up", i, buf[:n], err, ping(i), stepWait)
			}
		}
		pw.Close()
		var rest []byte
		if !step(func() { rest, err = io.ReadAll(resp.Body) }) || err != nil || len(rest) != 0 {
			t.Fatalf("after the last round: %q, %v; want the end of the response", rest, err)
		}
		if e := ends.wait(t, path, 5*time.Second); e.err != nil || e.n != int64(total) {
			t.Errorf("the server read %d body bytes, then %v; want %d and the end", e.n, e.err, total)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 200 || l["end"] != "ok" || l["bytes_in"] != float64(total) || l["bytes_out"] != float64(total) {
			t.Errorf("access log %v: want status 200, end ok, %d bytes each way", l, total)
		}
	})
}

// duplexSize is the body of the large echo tests.
const duplexSize = 64 << 20

// TestHTTPDuplexLargeEcho uploads a large body to a server that echoes it
// as it reads it: both directions move at once through lb, which must
// neither deadlock (each side's buffers are far smaller than the body) nor
// lose, repeat or reorder a byte.
func TestHTTPDuplexLargeEcho(t *testing.T) {
	ends := make(bodyEnds, 16)
	s := startHTTPBackendFunc(t, "echo", duplexEcho(ends))
	secure, h2addr, h2c := h2Frontend(t)
	p, addr := startHTTPLB(t, "", secure, httpBackendTable("app", "", s))

	check := func(t *testing.T, path string, start time.Time) {
		t.Helper()
		if e := ends.wait(t, path, 10*time.Second); e.err != nil || e.n != duplexSize {
			t.Errorf("the server read %d body bytes, then %v; want %d and the end", e.n, e.err, duplexSize)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 200 || l["end"] != "ok" || l["bytes_in"] != float64(duplexSize) || l["bytes_out"] != float64(duplexSize) {
			t.Errorf("access log %v: want status 200, end ok, %d bytes each way", l, duplexSize)
		}
		t.Logf("%d MiB each way in %v", duplexSize>>20, time.Since(start).Round(time.Millisecond))
	}

	t.Run("HTTP/1.1", func(t *testing.T) {
		const path = "/echo/h1"
		start := time.Now()
		c := dialStream(t, addr)
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		sent := make(chan error, 1)
		go func() {
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: d.test\r\nContent-Length: %d\r\n\r\n", path, duplexSize)
			_, err := io.Copy(c, io.MultiReader(strings.NewReader(head), newPatternReader(duplexSize)))
			sent <- err
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("no response head (lb waits for the whole body before it reads the response?): %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if n, err := comparePattern(resp.Body, duplexSize); err != nil {
			t.Fatalf("the echo, after %d bytes: %v", n, err)
		}
		if err := <-sent; err != nil {
			t.Fatalf("sending the body: %v", err)
		}
		check(t, path, start)
	})

	t.Run("HTTP/2", func(t *testing.T) {
		const path = "/echo/h2"
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "POST", "https://"+h2addr+path, io.NopCloser(newPatternReader(duplexSize)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = duplexSize
		resp, err := h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("status %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
		}
		if n, err := comparePattern(resp.Body, duplexSize); err != nil {
			t.Fatalf("the echo, after %d bytes: %v", n, err)
		}
		check(t, path, start)
	})
}

// TestHTTPEarlyAnswerLingeringClose has a server refuse a large upload
// from its head alone: it answers 413 while the client is still sending,
// and then closes at once (its close resets lb's connection, since the
// body is unread) or keeps the connection without reading. lb passes the
// answer on and closes the client connection, but after a lingering close
// (its side shut, the rest of the body read away), so that the client,
// which reads while it writes, gets the whole answer and then the end of
// the connection, every time, rather than a reset. lb closes the server
// connection too: it does not reuse it.
func TestHTTPEarlyAnswerLingeringClose(t *testing.T) {
	const answer = "the server wants none of this body\n"
	ends := make(bodyEnds, 64)
	stop := make(chan struct{})
	s := startRawBackend(t, "refuser", func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		keep := strings.HasPrefix(req.URL.Path, "/keep/")
		closeField := "Connection: close\r\n"
		if keep {
			closeField = ""
		}
		fmt.Fprintf(c, "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s", len(answer), closeField, answer)
		if !keep {
			return // closes the connection, the body unread
		}
		// Read nothing for a while, then see lb close the connection.
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, br)
		ends.report(req.URL.Path, n, err)
	})
	t.Cleanup(func() { close(stop) })
	secure, h2addr, h2c := h2Frontend(t)
	p, addr := startHTTPLB(t, "", secure, "[[backend]]\nname = \"app\"\n"+s.line())

	checkLog := func(t *testing.T, path string) {
		t.Helper()
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 413 || l["server"] != "refuser" || l["end"] != "ok" {
			t.Errorf("access log %v: want status 413 from the server refuser, end ok", l)
		}
	}
	// round sends a request with a 64 MiB body to path from a goroutine
	// and, meanwhile, reads the answer (after late, when not 0); it
	// reports whether the answer said Connection: close.
	round := func(t *testing.T, path string, late time.Duration) (saysClose bool) {
		t.Helper()
		c := dialStream(t, addr)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		stopWriting := make(chan struct{})
		written := make(chan error, 1)
		go func() {
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: e.test\r\nContent-Length: %d\r\n\r\n", path, duplexSize)
			if _, err := io.WriteString(c, head); err != nil {
				written <- err
				return
			}
			buf := make([]byte, 64<<10)
			for n := 0; n < duplexSize; n += len(buf) {
				select {
				case <-stopWriting:
					written <- nil
					return
				default:
				}
				if _, err := c.Write(buf); err != nil {
					written <- err
					return
				}
			}
			written <- nil
		}()
		defer func() {
			close(stopWriting)
			c.Close()
			select {
			case err := <-written:
				// The client closed the connection itself (net.ErrClosed)
				// once it read the end: lb must not have reset it before.
				if err != nil && !errors.Is(err, net.ErrClosed) {
					t.Errorf("sending the body: %v; lb reset the connection rather than read the body away", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("the client's writer did not stop")
			}
		}()
		if late > 0 {
			// A client busy sending reads the answer late, after lb
			// closed the connection.
			time.Sleep(late)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("no response while the body was still going up: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 413 || string(body) != answer {
			t.Fatalf("%d %q (%v); want the server's 413 %q, whole", resp.StatusCode, body, err, answer)
		}
		// lb closes its side once the answer is out (it does not want the
		// rest of the body): the client reads the end, not a reset.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("after the answer: %d bytes, %v; want the connection's end (EOF)", n, err)
		}
		return resp.Close
	}

	noClose, rounds := 0, 0
	t.Run("server closes", func(t *testing.T) {
		for i := range 20 {
			path := fmt.Sprintf("/close/%d", i)
			late := time.Duration(0)
			if i%2 == 1 {
				late = 150 * time.Millisecond
			}
			rounds++
			if !round(t, path, late) {
				noClose++
			}
			checkLog(t, path)
			if t.Failed() {
				t.Fatalf("round %d failed", i)
			}
		}
	})
	t.Run("server keeps the connection", func(t *testing.T) {
		for i := range 4 {
			path := fmt.Sprintf("/keep/%d", i)
			round(t, path, 0)
			checkLog(t, path)
			// lb does not keep the server connection, half-way through a
			// body, for another request: the server sees its end.
			if e := ends.wait(t, path, 6*time.Second); e.err != nil || e.n >= duplexSize {
				t.Errorf("the server read %d body bytes after its answer, then %v; want lb to close the connection", e.n, e.err)
			}
			if t.Failed() {
				t.Fatalf("round %d failed", i)
			}
		}
	})
	t.Run("HTTP/2", func(t *testing.T) {
		for i := range 4 {
			path := fmt.Sprintf("/close/h2/%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", "https://"+h2addr+path, io.NopCloser(newPatternReader(duplexSize)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = duplexSize
			resp, err := h2c.Do(req)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 413 || string(body) != answer {
				t.Fatalf("round %d: %d %q (%v); want the server's 413 %q, whole", i, resp.StatusCode, body, err, answer)
			}
			checkLog(t, path)
		}
	})
	t.Run("says Connection: close", func(t *testing.T) {
		// RFC 9112 9.5: a client sending a body stops when it sees a
		// response "that indicates the server does not wish to receive
		// the message body and is closing the connection". The server's
		// answer said Connection: close, with the body still coming, and
		// lb closed the client connection after it: lb's answer must say
		// so too (it did before bodies went up beside the response).
		if noClose > 0 {
			t.Errorf("%d of %d early 413 answers over HTTP/1.1 did not say Connection: close, though the server's did and lb closed the connection after each",
				noClose, rounds)
		}
	})
}

// TestHTTPDuplexClientAbort has a client go away in the middle of its
// body, after the server's response started: lb logs client_aborted with
// the server's status, and closes the server connection so that the
// server sees the body cut.
func TestHTTPDuplexClientAbort(t *testing.T) {
	ends := make(bodyEnds, 16)
	s := startHTTPBackendFunc(t, "echo", duplexEcho(ends))
	secure, h2addr, h2c := h2Frontend(t)
	p, addr := startHTTPLB(t, "", secure, httpBackendTable("app", "", s))
	const part = "the first part of a longer body\n"

	for _, chunked := range []bool{false, true} {
		name, path := "HTTP/1.1 content-length", "/abort/cl"
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: d.test\r\nContent-Length: %d\r\n\r\n%s", path, 1<<20, part)
		if chunked {
			name, path = "HTTP/1.1 chunked", "/abort/chunked"
			head = "POST " + path + " HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkOf(part)
		}
		t.Run(name, func(t *testing.T) {
			c := dialStream(t, addr)
			writeString(t, c, head)
			br := bufio.NewReader(c)
			resp, err := readHeadWithin(c, br, "POST", stepWait)
			if err != nil {
				t.Fatalf("no response head: %v", err)
			}
			if got, err := readWithin(c, resp.Body, len(part), stepWait); err != nil || got != part {
				t.Fatalf("echo %q (%v), want %q", got, err, part)
			}
			local := c.LocalAddr().String()
			c.Close()
			gone := time.Now()
			e := ends.wait(t, path, 5*time.Second)
			if e.err == nil || e.n != int64(len(part)) {
				t.Errorf("the server read %d body bytes, then %v; want %d and an error (the connection closed)", e.n, e.err, len(part))
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == local })
			if logStatus(l) != 200 || l["end"] != "client_aborted" || l["path"] != path {
				t.Errorf("access log %v: want status 200, end client_aborted", l)
			}
			t.Logf("the server saw the body cut %v after the client left", time.Since(gone).Round(time.Millisecond))
		})
	}

	t.Run("HTTP/2 stream reset", func(t *testing.T) {
		const path = "/abort/h2"
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		req, err := http.NewRequestWithContext(ctx, "POST", "https://"+h2addr+path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		go func() { _, _ = io.WriteString(pw, part) }()
		resp, err := h2c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, len(part))
		timer := time.AfterFunc(stepWait, cancel)
		n, err := io.ReadFull(resp.Body, buf)
		if !timer.Stop() || err != nil || string(buf[:n]) != part {
			t.Fatalf("echo %q (%v), want %q within %v", buf[:n], err, part, stepWait)
		}
		// The client resets the stream (Go's transport sends the
		// RST_STREAM once the body's read under way returns).
		cancel()
		pw.CloseWithError(errors.New("the client gives up"))
		e := ends.wait(t, path, 5*time.Second)
		if e.err == nil || e.n != int64(len(part)) {
			t.Errorf("the server read %d body bytes, then %v; want %d and an error (the connection closed)", e.n, e.err, len(part))
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 200 || l["end"] != "client_aborted" {
			t.Errorf("access log %v: want status 200, end client_aborted", l)
		}
	})
}

// readToEnd reads br, c's reader that records what it reads, until the
// connection ends (within d), and returns how it ended.
func readToEnd(c net.Conn, br *bufio.Reader, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	if err == nil {
		err = io.EOF
	}
	return err
}

// startEchoAndReader starts lb with frontend (which routes /reader/ to
// the reader) in front of an echo server (duplexEcho, the default
// backend) and a server that reads the whole body before it answers
// (readAllFirst); both report how their bodies ended on ends.
func startEchoAndReader(t *testing.T, frontend string) (p *lbProc, addr string, ends bodyEnds, reader *httpBackend) {
	t.Helper()
	ends = make(bodyEnds, 16)
	echo := startHTTPBackendFunc(t, "echo", duplexEcho(ends))
	reader = startHTTPBackendFunc(t, "reader", readAllFirst(ends))
	p, addr = startHTTPLB(t, "", frontend, httpBackendTable("app", "", echo)+httpBackendTable("reader", "", reader))
	return p, addr, ends, reader
}

// echoing is a raw client connection to lb whose request went out with
// the first part of its body, and whose response head and echo of that
// part came back.
type echoing struct {
	c    net.Conn
	br   *bufio.Reader
	raw  *bytes.Buffer // every byte read from c
	resp *http.Response
	sent time.Time // when the request went out
}

// startEcho sends request (a head and the first part of a body) to addr
// and reads the response head and the echo, which must be echo.
func startEcho(t *testing.T, addr, request, echo string) *echoing {
	t.Helper()
	e := &echoing{c: dialStream(t, addr), raw: new(bytes.Buffer)}
	e.br = bufio.NewReader(io.TeeReader(e.c, e.raw))
	writeString(t, e.c, request)
	e.sent = time.Now()
	var err error
	if e.resp, err = readHeadWithin(e.c, e.br, "POST", stepWait); err != nil {
		t.Fatalf("no response head: %v", err)
	}
	if got, err := readWithin(e.c, e.resp.Body, len(echo), stepWait); err != nil || got != echo {
		t.Fatalf("echo of %d bytes %.40q (%v), want the %d bytes sent %.40q", len(got), got, err, len(echo), echo)
	}
	return e
}

// expectCut checks the end of a response whose chunked body lb had to cut
// after the server's head went out: the client reads what the server
// sent, up to want more bytes of the body, then the connection ends in
// the middle of the body; raw, all the client read, holds nothing of
// lb's own (no error response after the server's). resetOK accepts a
// reset as the end: lb closes with the client's last bytes unread. It
// returns when the connection ended.
func expectCut(t *testing.T, c net.Conn, br *bufio.Reader, resp *http.Response, raw *bytes.Buffer, want int, resetOK bool) time.Time {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, resp.Body)
	ended := time.Now()
	reset := resetOK && errors.Is(err, syscall.ECONNRESET)
	if n > int64(want) || !(errors.Is(err, io.ErrUnexpectedEOF) || reset) {
		t.Errorf("after the head: %d more body bytes (want at most %d), then %v; want the connection's end in the middle of the chunked body (io.ErrUnexpectedEOF)",
			n, want, err)
	}
	if err := readToEnd(c, br, time.Second); err != io.EOF && !(reset && errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("the connection did not end cleanly: %v", err)
	}
	if reset {
		t.Logf("lb reset the connection (it closed with the client's last bytes unread)")
	}
	if got := raw.String(); strings.Contains(got, "lb:") || strings.Count(got, "HTTP/1.1 ") != 1 {
		t.Errorf("the client got, after the server's head, a response of lb's own:\n%q", got)
	}
	return ended
}

// expectIncomplete checks that the server b, whose handler reports on
// ends, got no complete request for path: no request at all, or one whose
// body read failed.
func expectIncomplete(t *testing.T, ends bodyEnds, path string, b *httpBackend) {
	t.Helper()
	e, ok := ends.waitMaybe(path, time.Second)
	if !ok && !slices.Contains(b.seen(), path) {
		t.Logf("the server got no request")
		return
	}
	if !ok {
		e = ends.wait(t, path, 5*time.Second)
	}
	if e.err == nil {
		t.Errorf("the server read a complete body of %d bytes", e.n)
	} else {
		t.Logf("the server read %d body bytes, then %v", e.n, e.err)
	}
}

// readAllFirst returns an httpBackend handler that reads the whole request
// body before it answers (200 when the body was complete), and reports
// the end of each body on ends.
func readAllFirst(ends bodyEnds) func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
	return func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		ends.report(r.URL.Path, n, err)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "a complete body of %d bytes\n", n)
	}
}

// TestHTTPDuplexClientStall has a client stop sending its body, past
// timeout.client. After the server's response started, lb closes the
// client connection having sent exactly what the server sent (no error
// response of its own after the server's head), logs client_timeout with
// the server's status, and closes the server connection. Before, lb
// answers 408 itself.
func TestHTTPDuplexClientStall(t *testing.T) {
	const clientTimeout = 500 * time.Millisecond
	p, addr, ends, reader := startEchoAndReader(t, "[frontend.timeout]\nclient = \"500ms\"\n\n[[frontend.route]]\nbackend = \"reader\"\npath_prefix = [\"/reader/\"]\n")
	const part = "the first part of a body that stalls\n"

	for _, chunked := range []bool{false, true} {
		name, path := "content-length", "/stall/cl"
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: d.test\r\nContent-Length: %d\r\n\r\n%s", path, 1<<20, part)
		if chunked {
			name, path = "chunked", "/stall/chunked"
			head = "POST " + path + " HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkOf(part)
		}
		t.Run(name, func(t *testing.T) {
			ex := startEcho(t, addr, head, part)
			// The client sends nothing more, and waits.
			took := expectCut(t, ex.c, ex.br, ex.resp, ex.raw, 0, false).Sub(ex.sent)
			if took < clientTimeout-50*time.Millisecond || took > 4*time.Second {
				t.Errorf("lb closed the connection %v after the body stalled, want about timeout.client (%v)", took.Round(time.Millisecond), clientTimeout)
			}
			e := ends.wait(t, path, 5*time.Second)
			if e.err == nil || e.n != int64(len(part)) {
				t.Errorf("the server read %d body bytes, then %v; want %d and an error (the connection closed)", e.n, e.err, len(part))
			}
			l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
			if logStatus(l) != 200 || l["end"] != "client_timeout" || l["bytes_out"] != float64(len(part)) {
				t.Errorf("access log %v: want status 200, end client_timeout, bytes_out %d", l, len(part))
			}
			t.Logf("closed %v after the stall", took.Round(time.Millisecond))
		})
	}

	t.Run("before the response head", func(t *testing.T) {
		const path = "/reader/stall"
		c := dialStream(t, addr)
		writeString(t, c, "POST "+path+" HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkOf(part))
		r := readRaw(t, c, bufio.NewReader(c), "POST")
		if r.StatusCode != 408 || !strings.HasPrefix(r.body, "lb: ") || !r.closed {
			t.Errorf("%d %q (closed: %v); want lb's 408 and the connection closed", r.StatusCode, r.body, r.closed)
		}
		expectIncomplete(t, ends, path, reader)
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 408 || l["end"] != "client_timeout" {
			t.Errorf("access log %v: want status 408, end client_timeout", l)
		}
	})
}

// TestHTTPDuplexBodyTooLarge sends a chunked body that goes over
// http.max_body_bytes once the server's response started: lb cuts the
// exchange, writing nothing of its own after the server's head, and logs
// body_too_large with the server's status. Before the head, lb answers
// 413 itself. The server never gets a complete body.
func TestHTTPDuplexBodyTooLarge(t *testing.T) {
	const limit = 64 << 10
	p, addr, ends, reader := startEchoAndReader(t, fmt.Sprintf("[frontend.http]\nmax_body_bytes = %d\n\n[[frontend.route]]\nbackend = \"reader\"\npath_prefix = [\"/reader/\"]\n", limit))
	piece := strings.Repeat("x", 40<<10) // two go over the limit

	t.Run("after the response head", func(t *testing.T) {
		const path = "/large"
		ex := startEcho(t, addr, "POST "+path+" HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkOf(piece), piece)
		writeString(t, ex.c, chunkOf(piece))
		// lb may pass on the echo of the bytes it sent, up to the limit.
		expectCut(t, ex.c, ex.br, ex.resp, ex.raw, limit-len(piece), true)
		if e := ends.wait(t, path, 5*time.Second); e.err == nil || e.n > limit {
			t.Errorf("the server read %d body bytes, then %v; want at most %d and an error", e.n, e.err, limit)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 200 || l["end"] != "body_too_large" {
			t.Errorf("access log %v: want status 200 (the server's), end body_too_large", l)
		}
	})

	t.Run("before the response head", func(t *testing.T) {
		const path = "/reader/large"
		c := dialStream(t, addr)
		writeString(t, c, "POST "+path+" HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkOf(piece))
		time.Sleep(100 * time.Millisecond)
		writeString(t, c, chunkOf(piece))
		br := bufio.NewReader(c)
		r := readRaw(t, c, br, "POST")
		if r.StatusCode != 413 || !strings.HasPrefix(r.body, "lb: ") || !r.Close {
			t.Errorf("%d %q (Connection: close: %v); want lb's 413, closing", r.StatusCode, r.body, r.Close)
		}
		if !r.closed {
			// The README promises a graceful close: lb shuts its sending
			// side and reads the rest of the body away (linger), so the
			// client reads the 413 whole and then the end, never a
			// reset that could destroy the response.
			t.Errorf("after lb's 413 the connection did not end cleanly: lb must close its side and read the rest away")
		}
		expectIncomplete(t, ends, path, reader)
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 413 || l["end"] != "body_too_large" {
			t.Errorf("access log %v: want status 413, end body_too_large", l)
		}
	})
}

// TestHTTPStreamBadChunk sends a chunked body whose good chunks reach the
// server before a bad one comes: the server never gets a complete
// request; the client gets lb's 400 when no response head was sent yet,
// and nothing of lb's own when the server's head was sent already.
func TestHTTPStreamBadChunk(t *testing.T) {
	p, addr, ends, reader := startEchoAndReader(t, "[[frontend.route]]\nbackend = \"reader\"\npath_prefix = [\"/reader\"]\n")
	good := chunkOf("first good chunk\n") + chunkOf("second good chunk\n")
	const goodData = "first good chunk\nsecond good chunk\n"
	goodLen := int64(len(goodData))
	const bad = "zz\r\nnot a chunk\r\n0\r\n\r\n"

	t.Run("before the response head", func(t *testing.T) {
		const path = "/reader/bad"
		c := dialStream(t, addr)
		writeString(t, c, "POST "+path+" HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"+good)
		// Let the good chunks go through to the server.
		time.Sleep(200 * time.Millisecond)
		writeString(t, c, bad)
		r := readRaw(t, c, bufio.NewReader(c), "POST")
		if r.StatusCode != 400 || !strings.HasPrefix(r.body, "lb: ") || !r.closed {
			t.Errorf("%d %q (closed: %v); want lb's 400 and the connection closed", r.StatusCode, r.body, r.closed)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 400 || l["end"] != "bad_request" {
			t.Errorf("access log %v: want status 400, end bad_request", l)
		}
		// The server may have had the head and the good chunks, or
		// nothing; never the whole request.
		expectIncomplete(t, ends, path, reader)
	})

	t.Run("after the response head", func(t *testing.T) {
		const path = "/echo/bad"
		ex := startEcho(t, addr, "POST "+path+" HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"+good, goodData)
		writeString(t, ex.c, bad)
		expectCut(t, ex.c, ex.br, ex.resp, ex.raw, 0, false)
		e := ends.wait(t, path, 5*time.Second)
		if e.err == nil || e.n != goodLen {
			t.Errorf("the server read %d body bytes, then %v; want %d and an error", e.n, e.err, goodLen)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 200 || l["end"] != "bad_request" {
			t.Errorf("access log %v: want status 200 (the server's), end bad_request", l)
		}
	})
}

// TestHTTPDuplexUpgradeWithBody upgrades a connection with a request that
// has a body, which the client sends after the head: the server reads the
// whole body, then switches protocols and echoes. lb sends the body whole
// before the tunnel starts, never beside it (lb's race detector report
// fails the test when it ends).
func TestHTTPDuplexUpgradeWithBody(t *testing.T) {
	const body, data = "hello", "data in the tunnel\n"
	ends := make(bodyEnds, 16)
	s := startRawBackend(t, "upgrader", func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, err := io.ReadAll(req.Body)
		ends.report(req.URL.Path, int64(len(b)), err)
		if err != nil || string(b) != body {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, br)
	})
	p, addr := startHTTPLB(t, "", "", "[[backend]]\nname = \"app\"\n"+s.line())
	for i := range 3 {
		path := fmt.Sprintf("/upgrade/%d", i)
		c := dialStream(t, addr)
		writeString(t, c, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: u.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: %d\r\n\r\n", path, len(body)))
		time.Sleep(50 * time.Millisecond)
		writeString(t, c, body)
		br := bufio.NewReader(c)
		resp, err := readHeadWithin(c, br, "POST", stepWait)
		if err != nil {
			t.Fatalf("round %d: no response head: %v", i, err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("round %d: status %d, want 101", i, resp.StatusCode)
		}
		if e := ends.wait(t, path, 5*time.Second); e.err != nil || e.n != int64(len(body)) {
			t.Errorf("round %d: the server read %d body bytes, then %v", i, e.n, e.err)
		}
		writeString(t, c, data)
		if got, err := readWithin(c, br, len(data), stepWait); err != nil || got != data {
			t.Fatalf("round %d: the tunnel echoed %q (%v), want %q", i, got, err, data)
		}
		c.Close()
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == path })
		if logStatus(l) != 101 || l["end"] != "tunnel_closed" {
			t.Errorf("round %d: access log %v: want status 101, end tunnel_closed", i, l)
		}
	}
}
