package h2pool

import (
	"bytes"
	"context"
	"errors"
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

	"lb/h1"
)

// h2cServer is a real net/http HTTP/2 server (cleartext, prior
// knowledge) that counts its connections.
type h2cServer struct {
	addr          string
	opened, ended atomic.Int64
}

func startServer(t *testing.T, maxStreams int, h http.HandlerFunc) *h2cServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2cServer{addr: ln.Addr().String()}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:   h,
		Protocols: &protos,
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.ended.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// get sends a GET over a connection from p, again on another when the
// server did not process it (Unsent), as lb does.
func get(p *Pool, path string) error {
	var req h1.Request
	req.SetRequestLine("GET", path, 1)
	req.AddString("Host", p.opts.Addr)
	var st *Stream
	var resp h1.Response
	for attempt := 0; ; attempt++ {
		cc, _, err := p.Get(context.Background())
		if err != nil {
			return err
		}
		st, err = cc.Open(&req, true)
		if err == nil {
			_, err = st.ReadHead(&resp, func(int, *h1.Head) error { return nil })
		}
		if err == nil {
			break
		}
		if attempt == 2 || !Unsent(err) {
			return err
		}
	}
	defer st.Cancel(errors.New("done"))
	body, err := io.ReadAll(st)
	if err != nil || resp.Status != 200 || string(body) != path {
		return fmt.Errorf("%s: %d %q %v", path, resp.Status, body, err)
	}
	return nil
}

func echoPath(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }

// A burst of requests on a cold pool shares the one connection it opens.
func TestBurstSharesOneConnection(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		echoPath(w, r)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			if err := get(p, fmt.Sprintf("/%d", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.opened.Load(); n != 1 || p.Len() != 1 {
		t.Errorf("50 requests at once: the server saw %d connections, the pool holds %d; want 1", n, p.Len())
	}
}

// A request that finds every connection at the server's stream limit
// opens another.
func TestFullConnectionsOpenAnother(t *testing.T) {
	release := make(chan struct{})
	var waiting atomic.Int64
	s := startServer(t, 2, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			waiting.Add(1)
			<-release
		}
		echoPath(w, r)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	// A first request, so that the server's SETTINGS (2 streams) are in.
	if err := get(p, "/first"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			if err := get(p, "/block"); err != nil {
				errs <- err
			}
		})
	}
	for deadline := time.Now().Add(10 * time.Second); waiting.Load() < 6 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.opened.Load(); n != 3 {
		t.Errorf("6 requests at once, 2 streams a connection: %d connections, want 3", n)
	}
}

// A connection idle for the idle timeout is closed.
func TestIdleConnectionsClose(t *testing.T) {
	s := startServer(t, 0, echoPath)
	p := New(Options{Addr: s.addr, IdleTimeout: 200 * time.Millisecond})
	defer p.Close()
	if err := get(p, "/a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for (p.Len() > 0 || s.ended.Load() == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Len() != 0 || s.ended.Load() != 1 {
		t.Fatalf("after the idle timeout the pool holds %d connections, the server saw %d end", p.Len(), s.ended.Load())
	}
	// The pool opens a new one when asked again.
	if err := get(p, "/b"); err != nil || s.opened.Load() != 2 {
		t.Errorf("%v; %d connections opened, want 2", err, s.opened.Load())
	}
}

// Requests that wait for a connection being opened share its failure.
func TestDialFailureIsShared(t *testing.T) {
	var dials atomic.Int64
	start := make(chan struct{})
	p := New(Options{Addr: "127.0.0.1:1", Dial: func(context.Context) (net.Conn, error) {
		dials.Add(1)
		<-start
		return nil, errors.New("no route")
	}})
	defer p.Close()
	var wg sync.WaitGroup
	var failed, started atomic.Int64
	for range 10 {
		wg.Go(func() {
			started.Add(1)
			if _, _, err := p.Get(context.Background()); err != nil {
				failed.Add(1)
			}
		})
	}
	// The dial is held until all 10 have started, and a while after,
	// so that they wait for it (a busy machine may keep one from Get a
	// little longer: it dials again, and fails at once).
	for deadline := time.Now().Add(10 * time.Second); started.Load() < 10 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(start)
	wg.Wait()
	if failed.Load() != 10 || dials.Load() > 3 {
		t.Errorf("%d of 10 failed, after %d dials; want all, after 1 (or a few more, for those that came late)", failed.Load(), dials.Load())
	}
}

func TestUnsent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{ErrRefused, true},
		{fmt.Errorf("wrapped: %w", ErrGoAway), true},
		{ErrUnsent, true},
		{&StreamError{Code: http2.ErrCodeCancel}, false},
		{&ConnError{io.ErrUnexpectedEOF}, false},
	} {
		if got := Unsent(c.err); got != c.want {
			t.Errorf("Unsent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// open opens a POST on a connection from p; the body goes through the
// stream's Write and CloseWrite.
func open(t *testing.T, p *Pool, path string, trailer string) *Stream {
	t.Helper()
	var req h1.Request
	req.SetRequestLine("POST", path, 1)
	req.AddString("Host", "example.com")
	if trailer != "" {
		req.AddString("Trailer", trailer)
	}
	cc, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := cc.Open(&req, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Cancel(errors.New("test over")) })
	return st
}

// openBodiless opens a stream from p for a request without a body.
func openBodiless(t *testing.T, p *Pool, method, path string) *Stream {
	t.Helper()
	var req h1.Request
	req.SetRequestLine(method, path, 1)
	req.AddString("Host", "example.com")
	cc, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := cc.Open(&req, true)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Bodies much larger than every flow-control window go both ways at
// once: the server echoes the request body as it reads it.
func TestLargeBodiesBothWays(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.Copy(w, r.Body)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	st := open(t, p, "/echo", "")
	const size = 8 << 20
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i % 251)
	}
	upErr := make(chan error, 1)
	go func() {
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := st.Write(chunk); err != nil {
				upErr <- err
				return
			}
		}
		upErr <- st.CloseWrite(nil)
	}()
	var resp h1.Response
	if _, err := st.ReadHead(&resp, func(int, *h1.Head) error { return nil }); err != nil || resp.Status != 200 {
		t.Fatalf("head: %d %v", resp.Status, err)
	}
	got := int64(0)
	buf := make([]byte, 32<<10)
	for {
		n, err := st.Read(buf)
		for i := 0; i < n; i++ {
			if buf[i] != byte((int(got)+i)%(64<<10)%251) {
				t.Fatalf("byte %d differs", got+int64(i))
			}
		}
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	if err := <-upErr; err != nil || got != size {
		t.Fatalf("upload: %v; %d bytes came back, want %d", err, got, size)
	}
}

// Interim responses come before the final head; trailer fields go both
// ways.
func TestInterimAndTrailers(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(103)
		body, _ := io.ReadAll(r.Body)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		fmt.Fprintf(w, "%s with %s", body, r.Trailer.Get("X-Client"))
		w.Header().Set("X-Sum", "42")
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	st := open(t, p, "/t", "X-Client")
	if _, err := st.Write([]byte("body")); err != nil {
		t.Fatal(err)
	}
	var tr h1.Head
	tr.AddString("X-Client", "c1")
	if err := st.CloseWrite(&tr); err != nil {
		t.Fatal(err)
	}
	var interims []string
	var resp h1.Response
	_, err := st.ReadHead(&resp, func(status int, h *h1.Head) error {
		v, _ := h.Get("link")
		interims = append(interims, fmt.Sprintf("%d %s", status, v))
		return nil
	})
	if err != nil || resp.Status != 200 || len(interims) != 1 || interims[0] != "103 </a.css>; rel=preload" {
		t.Fatalf("head %d, interims %q, %v", resp.Status, interims, err)
	}
	body, err := io.ReadAll(st)
	if err != nil || string(body) != "body with c1" {
		t.Fatalf("body %q, %v", body, err)
	}
	if trailer := st.Trailer(); trailer == nil || string(first(trailer, "x-sum")) != "42" {
		t.Errorf("trailer %+v", trailer)
	}
}

func first(h *h1.Head, name string) []byte {
	v, _ := h.Get(name)
	return v
}

// A server that answers without reading the body resets the stream once
// its response is whole: the response is read to its end, the upload
// stops.
func TestResetAfterWholeResponse(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(413)
		_, _ = io.WriteString(w, "too large")
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	st := open(t, p, "/big", "")
	upErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 16<<10)
		for range 1000 { // 16 MB, more than the windows allow without the server reading
			if _, err := st.Write(chunk); err != nil {
				upErr <- err
				return
			}
		}
		upErr <- nil
	}()
	var resp h1.Response
	if _, err := st.ReadHead(&resp, func(int, *h1.Head) error { return nil }); err != nil || resp.Status != 413 {
		t.Fatalf("head: %d %v", resp.Status, err)
	}
	if body, err := io.ReadAll(st); err != nil || string(body) != "too large" {
		t.Fatalf("body %q, %v", body, err)
	}
	select {
	case err := <-upErr:
		if err == nil {
			t.Errorf("the upload of 16 MB went whole to a server that read none of it")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the upload did not stop")
	}
}

// A HEAD response's content-length is not its body's.
func TestHeadResponse(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	st := openBodiless(t, p, "HEAD", "/h")
	var resp h1.Response
	if _, err := st.ReadHead(&resp, func(int, *h1.Head) error { return nil }); err != nil || resp.Status != 200 {
		t.Fatalf("head: %d %v", resp.Status, err)
	}
	if body, err := io.ReadAll(st); err != nil || len(body) != 0 {
		t.Errorf("body %q, %v", body, err)
	}
	if n := st.Declared(); n != 1000 {
		t.Errorf("Declared() = %d", n)
	}
}

// rawServer serves one HTTP/2 connection (h2c) frame by frame: it answers
// the n-th request with the fields of answers[n], in one HEADERS frame
// that ends the stream or, with split, spread over CONTINUATION frames.
// Its HPACK encoder indexes the fields, bad ones too, as a server's may:
// lb's decoder must keep its table in step whatever it makes of them.
func rawServer(t *testing.T, split bool, answers ...[]hpack.HeaderField) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go serveRaw(c, split, answers)
		}
	}()
	return ln.Addr().String(), conns
}

func serveRaw(c net.Conn, split bool, answers [][]hpack.HeaderField) {
	defer c.Close()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	n := 0
	serveFrames(c, func(fr *http2.Framer, f http2.Frame) bool {
		hf, ok := f.(*http2.HeadersFrame)
		if !ok || n >= len(answers) {
			return n < len(answers)
		}
		buf.Reset()
		for _, field := range answers[n] {
			_ = enc.WriteField(field)
		}
		n++
		block := buf.Bytes()
		if !split || len(block) < 3 {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: block, EndStream: true, EndHeaders: true})
			return n < len(answers)
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: block[:1], EndStream: true})
		_ = fr.WriteContinuation(hf.StreamID, false, block[1:2])
		_ = fr.WriteContinuation(hf.StreamID, true, block[2:])
		return n < len(answers)
	})
	_, _ = io.Copy(io.Discard, c) // until lb closes
}

// serveFrames is a raw HTTP/2 server's side of c: it reads the client
// preface, sends its SETTINGS, acknowledges the client's, and hands every
// other frame to on, until on returns false or a read fails (20 s at
// most).
func serveFrames(c net.Conn, on func(fr *http2.Framer, f http2.Frame) bool) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if !sf.IsAck() {
				_ = fr.WriteSettingsAck()
			}
			continue
		}
		if !on(fr, f) {
			return
		}
	}
}

// TestResponseHeadChecks: a response head HTTP/1.1 could not carry as it
// is, or that is not a response's, fails its stream alone; the next
// request on the connection gets its answer, whose fields refer to the
// table entries the bad head made.
func TestResponseHeadChecks(t *testing.T) {
	f := func(nv ...string) []hpack.HeaderField {
		var out []hpack.HeaderField
		for i := 0; i < len(nv); i += 2 {
			out = append(out, hpack.HeaderField{Name: nv[i], Value: nv[i+1]})
		}
		return out
	}
	bad := []struct {
		name   string
		fields []hpack.HeaderField
		reason string
	}{
		{"control character", f(":status", "200", "x-keep", "1", "x-a", "a\rb"), "control character"},
		{"upper-case name", f(":status", "200", "x-keep", "1", "X-Upper", "1"), `"X-Upper"`},
		{"name not a token", f(":status", "200", "x-keep", "1", "x a", "1"), `"x a"`},
		{"request pseudo-header", f(":status", "200", ":path", "/", "x-keep", "1"), ":path"},
		{"two :status", f(":status", "200", ":status", "204", "x-keep", "1"), ":status"},
		{"pseudo-header after a field", f("x-keep", "1", ":status", "200"), "after a regular field"},
		{"no :status", f("x-keep", "1"), "no valid :status"},
	}
	for _, split := range []bool{false, true} {
		for _, tc := range bad {
			t.Run(fmt.Sprintf("%s/split=%v", tc.name, split), func(t *testing.T) {
				addr, conns := rawServer(t, split, tc.fields, f(":status", "200", "x-keep", "1", "content-length", "0"))
				p := New(Options{Addr: addr})
				defer p.Close()
				for i, want := range []string{tc.reason, ""} {
					st := openBodiless(t, p, "GET", "/")
					var resp h1.Response
					_, err := st.ReadHead(&resp, func(int, *h1.Head) error { return nil })
					st.Cancel(errors.New("done"))
					switch {
					case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
						t.Errorf("request %d: %d, error %v; want an error about %s", i, resp.Status, err, want)
					case want == "" && err != nil:
						t.Errorf("request %d after the bad head: %v", i, err)
					case want == "" && resp.Status != 200:
						t.Errorf("request %d after the bad head: %d, want 200", i, resp.Status)
					case want == "":
						if v, ok := resp.Get("x-keep"); !ok || string(v) != "1" {
							t.Errorf("request %d after the bad head: x-keep %q, want 1", i, v)
						}
					}
				}
				if n := conns.Load(); n != 1 {
					t.Errorf("%d connections, want the 2 requests on 1", n)
				}
			})
		}
	}
}

// TestBadHeadersFrames: a server's HEADERS frame whose padding is longer
// than its payload, or one whose header block a frame other than
// CONTINUATION interrupts, ends the connection with GOAWAY
// PROTOCOL_ERROR (RFC 9113 6.2, 6.10), and the request fails.
func TestBadHeadersFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer, id uint32)
	}{
		{"padding too long", func(fr *http2.Framer, id uint32) {
			_ = fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, id, []byte{9, 0x88})
		}},
		{"block interrupted", func(fr *http2.Framer, id uint32) {
			_ = fr.WriteRawFrame(http2.FrameHeaders, 0, id, []byte{0x88})
			_ = fr.WritePing(false, [8]byte{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			goAway := make(chan http2.ErrCode, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				serveFrames(c, func(fr *http2.Framer, f http2.Frame) bool {
					switch f := f.(type) {
					case *http2.HeadersFrame:
						tc.write(fr, f.StreamID)
					case *http2.GoAwayFrame:
						goAway <- f.ErrCode
						return false
					}
					return true
				})
				close(goAway)
			}()
			p := New(Options{Addr: ln.Addr().String()})
			defer p.Close()
			st := openBodiless(t, p, "GET", "/")
			var resp h1.Response
			if _, err := st.ReadHead(&resp, func(int, *h1.Head) error { return nil }); err == nil {
				t.Errorf("the request got %d, want an error", resp.Status)
			}
			select {
			case code, ok := <-goAway:
				if !ok || code != http2.ErrCodeProtocol {
					t.Errorf("the server got GOAWAY %v (%v), want PROTOCOL_ERROR", code, ok)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no GOAWAY within 15 s")
			}
		})
	}
}
