package h2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"lb/h1"
)

// handlerFunc adapts a function to Handler.
type handlerFunc func(st *Stream)

func (f handlerFunc) ServeStream(st *Stream) { f(st) }

// testClient speaks HTTP/2 (cleartext, prior knowledge) to a Server over a
// real loopback connection, frame by frame.
type testClient struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	ebuf bytes.Buffer
	dec  *hpack.Decoder
}

// startConn serves one connection with s and returns a client that has
// exchanged prefaces and SETTINGS (with settings of its own, if any). The
// test waits for the server's side to end.
func startConn(t *testing.T, s *Server, settings ...http2.Setting) *testClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		s.ServeConn(c, c.(*net.TCPConn))
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("ServeConn did not return after the client closed")
		}
	})
	c := &testClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	c.enc = hpack.NewEncoder(&c.ebuf)
	c.dec = hpack.NewDecoder(4096, nil)
	c.fr.ReadMetaHeaders = c.dec
	if _, err := io.WriteString(nc, preface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	sf := c.read().(*http2.SettingsFrame)
	if v, ok := sf.Value(http2.SettingInitialWindowSize); !ok || v != streamWindow {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d %v, want %d", v, ok, streamWindow)
	}
	if wu := c.read().(*http2.WindowUpdateFrame); wu.StreamID != 0 || wu.Increment != connWindow-65535 {
		t.Errorf("first WINDOW_UPDATE %+v, want the connection's to %d", wu, connWindow)
	}
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); !f.Header().Flags.Has(http2.FlagSettingsAck) {
		t.Fatalf("got %v, want the SETTINGS ACK", f)
	}
	return c
}

// read returns the next frame, failing the test after 10 s.
func (c *testClient) read() http2.Frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// readStream returns the next frame that is not a WINDOW_UPDATE or PING.
func (c *testClient) readStream() http2.Frame {
	c.t.Helper()
	for {
		switch f := c.read().(type) {
		case *http2.WindowUpdateFrame, *http2.PingFrame:
		default:
			return f
		}
	}
}

// headers sends a header block on stream id.
func (c *testClient) headers(id uint32, end bool, lines ...string) {
	c.t.Helper()
	c.ebuf.Reset()
	for _, f := range fields(lines...) {
		_ = c.enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.ebuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// result is a stream's response.
type result struct {
	status        string
	head, trailer map[string]string
	body          []byte
}

// response reads stream id's response.
func (c *testClient) response(id uint32) (status string, head map[string]string, body []byte, trailer map[string]string) {
	c.t.Helper()
	r := c.responses(id)[id]
	return r.status, r.head, r.body, r.trailer
}

// responses reads the responses of streams ids, in whatever order their
// frames come, sending WINDOW_UPDATEs as bodies come.
func (c *testClient) responses(ids ...uint32) map[uint32]*result {
	c.t.Helper()
	out := map[uint32]*result{}
	for _, id := range ids {
		out[id] = &result{head: map[string]string{}}
	}
	for open := len(ids); open > 0; {
		f := c.readStream()
		id := f.Header().StreamID
		r := out[id]
		if r == nil {
			c.t.Fatalf("frame %v on another stream than %v", f, ids)
		}
		end := false
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if r.status == "" || strings.HasPrefix(r.status, "1") {
				r.status = f.PseudoValue("status")
				r.head = map[string]string{}
				for _, hf := range f.RegularFields() {
					r.head[hf.Name] = hf.Value
				}
			} else {
				r.trailer = map[string]string{}
				for _, hf := range f.Fields {
					r.trailer[hf.Name] = hf.Value
				}
			}
			end = f.StreamEnded()
		case *http2.DataFrame:
			r.body = append(r.body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				_ = c.fr.WriteWindowUpdate(0, n)
				_ = c.fr.WriteWindowUpdate(id, n)
			}
			end = f.StreamEnded()
		case *http2.RSTStreamFrame:
			c.t.Fatalf("stream %d reset: %v", id, f.ErrCode)
		default:
			c.t.Fatalf("unexpected frame %v", f)
		}
		if end {
			open--
		}
	}
	return out
}

// echo answers a request with its body, its method and path in fields,
// and a trailer field.
func echo(st *Stream) {
	if st.Err() != nil {
		return
	}
	body, err := io.ReadAll(st)
	if err != nil {
		return
	}
	req := st.Request()
	var h h1.Head
	h.Add("X-Method", req.Method)
	h.Add("X-Target", req.Target)
	h.Add("Connection", []byte("close")) // HTTP/2 forbids it: not sent
	if st.WriteHeader(200, &h, false) != nil {
		return
	}
	_, _ = st.Write(body)
	var tr h1.Head
	tr.Add("X-Sum", []byte("ok"))
	_ = st.Close(&tr)
}

func TestConnServesStreams(t *testing.T) {
	s := &Server{Handler: handlerFunc(echo)}
	c := startConn(t, s)
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /up", ":authority: a", "content-length: 5")
	if err := c.fr.WriteData(1, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.headers(3, true, ":method: GET", ":scheme: https", ":path: /get", ":authority: a")
	for id, r := range c.responses(1, 3) {
		want := map[uint32]string{1: "hello", 3: ""}[id]
		if r.status != "200" || string(r.body) != want || r.trailer["x-sum"] != "ok" || r.head["connection"] != "" {
			t.Errorf("stream %d: %s %v %q %v", id, r.status, r.head, r.body, r.trailer)
		}
	}
}

// TestConnMalformedRequest: a request lb cannot forward is a stream error
// (RST_STREAM PROTOCOL_ERROR), the handler only sees it to log it, and the
// connection goes on.
func TestConnMalformedRequest(t *testing.T) {
	seen := make(chan error, 10)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		seen <- st.Err()
		echo(st)
	})}
	c := startConn(t, s)
	// The body the client sends before it learns of the reset is
	// ignored: no second error for stream 1 (response(5) would fail on
	// one).
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /a b", ":authority: a")
	if err := c.fr.WriteData(1, true, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.StreamID != 1 || f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR on stream 1", f)
	}
	c.headers(3, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a", "Upper: 1")
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.StreamID != 3 || f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR on stream 3", f)
	}
	c.headers(5, true, ":method: GET", ":scheme: https", ":path: /ok", ":authority: a")
	if status, _, _, _ := c.response(5); status != "200" {
		t.Errorf("the next stream got %s", status)
	}
	// The handlers run in goroutines of their own, in any order.
	malformed, ok := 0, 0
	for range 3 {
		select {
		case err := <-seen:
			var me *MalformedError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &me):
				malformed++
			default:
				t.Errorf("the handler saw %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a handler was not called")
		}
	}
	if malformed != 2 || ok != 1 {
		t.Errorf("the handler saw %d malformed requests and %d good ones, want 2 and 1", malformed, ok)
	}
}

// TestConnRepeatedSettings: values of one setting are applied in order
// (RFC 9113 6.5.3), here a stream window of 100 then 1 byte.
func TestConnRepeatedSettings(t *testing.T) {
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		if st.WriteHeader(200, nil, false) == nil {
			_, _ = io.WriteString(st, "abc")
			_ = st.Close(nil)
		}
	})}
	c := startConn(t, s, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	c.headers(1, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
	if f := c.readStream(); f.Header().Type != http2.FrameHeaders {
		t.Fatalf("got %v, want HEADERS", f)
	}
	if f, ok := c.readStream().(*http2.DataFrame); !ok || len(f.Data()) != 1 {
		t.Fatalf("got %v, want a DATA frame of 1 byte", f)
	}
}

// TestConnFlowControl moves bodies larger than every window both ways.
func TestConnFlowControl(t *testing.T) {
	const size = 3 << 20
	s := &Server{Handler: handlerFunc(echo)}
	c := startConn(t, s)
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /big", ":authority: a")
	sent := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	// Send as the windows allow: 64 KiB at first, then what the server
	// gives back.
	connWin, streamWin := int64(connWindow), int64(streamWindow)
	rest := sent
	for len(rest) > 0 {
		n := min(int64(len(rest)), connWin, streamWin, 16384)
		if err := c.fr.WriteData(1, int64(len(rest)) == n, rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		connWin -= n
		streamWin -= n
		for connWin <= 0 || streamWin <= 0 {
			f := c.read()
			wu, ok := f.(*http2.WindowUpdateFrame)
			if !ok {
				t.Fatalf("got %v while the windows are closed, want WINDOW_UPDATE", f)
			}
			if wu.StreamID == 0 {
				connWin += int64(wu.Increment)
			} else {
				streamWin += int64(wu.Increment)
			}
		}
	}
	status, _, body, _ := c.response(1)
	if status != "200" || !bytes.Equal(body, sent) {
		t.Errorf("status %s, %d bytes back of %d (equal: %v)", status, len(body), len(sent), bytes.Equal(body, sent))
	}
}

// TestConnShutdown: GOAWAY names the last stream, which completes; a new
// stream is refused; then the connection closes.
func TestConnShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		started <- struct{}{}
		<-release
		echo(st)
	})}
	c := startConn(t, s)
	c.headers(1, true, ":method: GET", ":scheme: https", ":path: /slow", ":authority: a")
	<-started
	s.Shutdown()
	ga, ok := c.readStream().(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != 1 || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("got %v, want GOAWAY NO_ERROR naming stream 1", ga)
	}
	c.headers(3, true, ":method: GET", ":scheme: https", ":path: /late", ":authority: a")
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("got %v, want RST_STREAM REFUSED_STREAM on stream 3", f)
	}
	close(release)
	if status, _, _, _ := c.response(1); status != "200" {
		t.Errorf("stream 1 got %s", status)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := c.fr.ReadFrame(); err != io.EOF {
		t.Errorf("after the last stream: %v %v, want the connection closed (EOF)", f, err)
	}
	// A connection that comes after the shutdown is told to go away.
	c2 := startConn(t, s)
	if ga, ok := c2.readStream().(*http2.GoAwayFrame); !ok || ga.LastStreamID != 0 {
		t.Errorf("a new connection got %v, want GOAWAY naming no stream", ga)
	}
}

// TestConnClientReset: a stream the client resets is over for its handler:
// Done closes and the body read fails.
func TestConnClientReset(t *testing.T) {
	got := make(chan error, 1)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		<-st.Done()
		_, err := st.Read(make([]byte, 10))
		got <- err
	})}
	c := startConn(t, s)
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /", ":authority: a")
	if err := c.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrStreamReset) {
			t.Errorf("Read after the reset: %v, want ErrStreamReset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not see the reset")
	}
}

// TestConnMaxStreams refuses a stream over the limit.
func TestConnMaxStreams(t *testing.T) {
	release := make(chan struct{})
	s := &Server{MaxStreams: 2, Handler: handlerFunc(func(st *Stream) { <-release; echo(st) })}
	c := startConn(t, s)
	for _, id := range []uint32{1, 3, 5} {
		c.headers(id, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
	}
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.StreamID != 5 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("got %v, want RST_STREAM REFUSED_STREAM on stream 5", f)
	}
	close(release)
	for id, r := range c.responses(1, 3) {
		if r.status != "200" {
			t.Errorf("stream %d got %s", id, r.status)
		}
	}
}

// TestConnMaxStreamsCountsOpenOnes: a stream whose response and request
// ended is closed for the client, which may open another at once, though
// its handler has not returned yet; a stream the client reset counts until
// its handler returns.
func TestConnMaxStreamsCountsOpenOnes(t *testing.T) {
	release := make(chan struct{})
	s := &Server{MaxStreams: 4, Handler: handlerFunc(func(st *Stream) {
		if string(st.Request().Target) == "/wait" {
			<-st.Done()
		} else {
			echo(st)
		}
		<-release
	})}
	c := startConn(t, s)
	defer close(release)
	get := func(id uint32, path string) {
		c.headers(id, true, ":method: GET", ":scheme: https", ":path: "+path, ":authority: a")
	}
	get(1, "/")
	get(3, "/")
	c.responses(1, 3)
	// Their handlers still run, but streams 1 and 3 are closed: 4 more
	// may open. Stream 5 is reset by the client while its handler runs.
	get(5, "/wait")
	if err := c.fr.WriteRSTStream(5, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	get(7, "/")
	c.responses(7)
	for _, id := range []uint32{9, 11, 13} {
		get(id, "/wait")
	}
	// Open: 5 (reset, its handler running), 9, 11, 13.
	get(15, "/")
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.StreamID != 15 || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("got %v, want RST_STREAM REFUSED_STREAM on stream 15", f)
	}
}

// TestConnTimeouts: a body that stalls fails the read after Timeout; an
// idle connection gets GOAWAY and closes after IdleTimeout.
func TestConnTimeouts(t *testing.T) {
	got := make(chan error, 1)
	s := &Server{Timeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, Handler: handlerFunc(func(st *Stream) {
		_, err := io.ReadAll(st)
		got <- err
		if st.WriteHeader(408, nil, true) != nil {
			return
		}
	})}
	c := startConn(t, s)
	start := time.Now()
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /", ":authority: a")
	select {
	case err := <-got:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stalled body: %v, want os.ErrDeadlineExceeded", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("the read failed after %v, before the 200ms timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled body read did not time out")
	}
	if status, _, _, _ := c.response(1); status != "408" {
		t.Errorf("got %s", status)
	}
	// Stream 1 is over on lb's side but not on the client's, which
	// did not end its body: lb resets it.
	if f, ok := c.readStream().(*http2.RSTStreamFrame); !ok || f.ErrCode != http2.ErrCodeNo {
		t.Fatalf("got %v, want RST_STREAM NO_ERROR", f)
	}
	idle := time.Now()
	if ga, ok := c.readStream().(*http2.GoAwayFrame); !ok || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("got %v, want GOAWAY once idle", ga)
	}
	if d := time.Since(idle); d < 200*time.Millisecond {
		t.Errorf("GOAWAY %v after the last stream, before the 300ms idle timeout", d)
	}
}

// TestConnFrameTooLarge: lb reads frames of 16 KiB at most, the
// protocol's default size, and a larger one is a connection error.
func TestConnFrameTooLarge(t *testing.T) {
	s := &Server{Handler: handlerFunc(echo)}
	c := startConn(t, s)
	c.headers(1, false, ":method: POST", ":scheme: https", ":path: /", ":authority: a")
	if err := c.fr.WriteData(1, true, make([]byte, 16385)); err != nil {
		t.Fatal(err)
	}
	for {
		f := c.read()
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeFrameSize {
				t.Errorf("GOAWAY %v, want FRAME_SIZE_ERROR", ga.ErrCode)
			}
			return
		}
	}
}

// TestConnShutdownAsLastStreamEnds races Shutdown with the end of the
// connection's last stream: however they interleave, the client gets
// GOAWAY before the connection closes (a stream ending after the
// connection turned to going away once let it close before its GOAWAY was
// out: clients saw an unexpected EOF).
func TestConnShutdownAsLastStreamEnds(t *testing.T) {
	for i := range 400 {
		release := make(chan struct{})
		s := &Server{Handler: handlerFunc(func(st *Stream) {
			<-release
			echo(st)
		})}
		c := startConn(t, s)
		c.headers(1, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
		go func() {
			time.Sleep(time.Duration(i%10) * 20 * time.Microsecond)
			s.Shutdown()
		}()
		close(release)
		goaway := false
		_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				if !goaway {
					t.Fatalf("round %d: the connection ended (%v) before GOAWAY", i, err)
				}
				break
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				goaway = true
			}
		}
		c.nc.Close()
	}
}

// goroutineID returns the calling goroutine's number, from its stack
// trace's first line ("goroutine 12 [running]:").
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// TestWorkers: streams served one after another run on the same goroutine;
// the idle ones end after the reaper's period, and at Shutdown.
func TestWorkers(t *testing.T) {
	ids := make(chan string, 10)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		ids <- goroutineID()
		echo(st)
	})}
	s.workers.linger = 100 * time.Millisecond
	c := startConn(t, s)
	seen := map[string]bool{}
	for id := uint32(1); id <= 5; id += 2 {
		c.headers(id, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
		if status, _, _, _ := c.response(id); status != "200" {
			t.Fatalf("stream %d: %s", id, status)
		}
		seen[<-ids] = true
	}
	if len(seen) != 1 {
		t.Errorf("3 streams one after another ran on goroutines %v, want one", seen)
	}
	counts := func() (live, idle int) {
		s.workers.mu.Lock()
		defer s.workers.mu.Unlock()
		return s.workers.live, len(s.workers.idle)
	}
	waitWorkers := func(when string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if live, _ := counts(); live == 0 {
				return
			}
			if time.Now().After(deadline) {
				live, idle := counts()
				t.Fatalf("%s: %d workers left (%d idle) after 10 s", when, live, idle)
			}
		}
	}
	waitWorkers("idle")

	// A worker idle at Shutdown ends then, long before the reaper.
	s.workers.mu.Lock()
	s.workers.linger = time.Hour
	s.workers.mu.Unlock()
	c.headers(7, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
	if status, _, _, _ := c.response(7); status != "200" {
		t.Fatalf("stream 7: %s", status)
	}
	<-ids
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		live, n := counts()
		if live == 1 && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers after stream 7, want 1", n)
		}
	}
	s.Shutdown()
	waitWorkers("Shutdown")
}

// TestConnHeaderBlockOverLimits: a header block spread over HEADERS and
// CONTINUATION frames and over the limits opens its stream with a 431
// error for the handler to answer, and the connection goes on: the whole
// block was decoded, so the fields it added to the decoder's table are
// there for the next request to refer to.
func TestConnHeaderBlockOverLimits(t *testing.T) {
	s := &Server{Limits: h1.Limits{MaxHeaderBytes: 1024}, Handler: handlerFunc(func(st *Stream) {
		var e *h1.Error
		if errors.As(st.Err(), &e) {
			_ = st.WriteHeader(e.Status, &h1.Head{}, true)
			return
		}
		echo(st)
	})}
	c := startConn(t, s)
	// Literal fields with incremental indexing: the encoder adds each to
	// its table, and refers to them by index in the next block.
	c.ebuf.Reset()
	for _, f := range fields(":method: GET", ":scheme: https", ":path: /big", ":authority: a") {
		_ = c.enc.WriteField(f)
	}
	for i := range 8 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: "x-big-" + string(rune('a'+i)), Value: strings.Repeat("v", 300)})
	}
	block := c.ebuf.Bytes()
	third := len(block) / 3
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:third], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteContinuation(1, false, block[third:2*third]); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteContinuation(1, true, block[2*third:]); err != nil {
		t.Fatal(err)
	}
	if status, _, _, _ := c.response(1); status != "431" {
		t.Errorf("stream 1 over the limits: %s, want 431", status)
	}
	// Within the limits, with a field the encoder sends by index only.
	c.headers(3, true, ":method: GET", ":scheme: https", ":path: /small", ":authority: a", "x-big-a: "+strings.Repeat("v", 300))
	if status, head, _, _ := c.response(3); status != "200" || head["x-target"] != "/small" {
		t.Errorf("stream 3 after it: %s %v, want 200 for /small", status, head)
	}
}

// TestConnContinuationFlood: CONTINUATION frames that go on past the
// limits end the connection (GOAWAY PROTOCOL_ERROR) rather than have lb
// decode them as long as they come.
func TestConnContinuationFlood(t *testing.T) {
	s := &Server{Limits: h1.Limits{MaxHeaderBytes: 1024}, Handler: handlerFunc(echo)}
	c := startConn(t, s)
	c.ebuf.Reset()
	for _, f := range fields(":method: GET", ":scheme: https", ":path: /", ":authority: a") {
		_ = c.enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.ebuf.Bytes(), EndStream: true}); err != nil {
		t.Fatal(err)
	}
	// Each frame is one whole literal field of 1,000 bytes, without
	// indexing: decoding each costs lb a field.
	c.ebuf.Reset()
	_ = c.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 1000), Sensitive: true})
	frag := append([]byte(nil), c.ebuf.Bytes()...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			if c.fr.WriteContinuation(1, false, frag) != nil {
				return
			}
		}
	}()
	for {
		f := c.read()
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
			}
			break
		}
	}
	c.nc.Close()
	<-done
}

// TestConnWaitsForFinishingHandlers: when a limit's worth of handlers are
// still finishing streams closed for the client, a new stream waits for
// one of them to return rather than be refused: the client kept to the
// limit.
func TestConnWaitsForFinishingHandlers(t *testing.T) {
	release := make(chan struct{})
	s := &Server{MaxStreams: 2, Handler: handlerFunc(func(st *Stream) {
		echo(st)
		<-release
	})}
	c := startConn(t, s)
	defer close(release)
	get := func(id uint32) {
		c.headers(id, true, ":method: GET", ":scheme: https", ":path: /", ":authority: a")
	}
	get(1)
	get(3)
	c.responses(1, 3)
	get(5)
	// Nothing comes for stream 5 while both handlers hold on, least of all
	// a REFUSED_STREAM.
	_ = c.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if f, err := c.fr.ReadFrame(); err == nil {
		t.Fatalf("got %v while the handlers of streams 1 and 3 were finishing, want nothing yet", f)
	}
	release <- struct{}{}
	if status, _, _, _ := c.response(5); status != "200" {
		t.Errorf("stream 5: %s, want 200", status)
	}
}

// TestConnClientResetLate: Done, first asked for after the client reset
// the stream, is closed already (Gone said so without it); a Read that
// waits for body bytes when the reset comes is woken by it.
func TestConnClientResetLate(t *testing.T) {
	got := make(chan string, 2)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		if string(st.Request().Target) == "/read" {
			_, err := st.Read(make([]byte, 10)) // waits: no body byte comes
			if !errors.Is(err, ErrStreamReset) {
				got <- fmt.Sprintf("Read: %v, want ErrStreamReset", err)
				return
			}
			got <- "ok"
			return
		}
		for end := time.Now().Add(10 * time.Second); !st.Gone(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				got <- "Gone still false 10 s after the reset"
				return
			}
		}
		select {
		case <-st.Done():
			got <- "ok"
		default:
			got <- "Done, asked for after the reset, is not closed"
		}
	})}
	c := startConn(t, s)
	for i, path := range []string{"/late", "/read"} {
		id := uint32(2*i + 1)
		c.headers(id, false, ":method: POST", ":scheme: https", ":path: "+path, ":authority: a")
		if path == "/read" {
			time.Sleep(50 * time.Millisecond) // most likely waiting in Read by then; either way it must see the reset
		}
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-got:
			if msg != "ok" {
				t.Errorf("%s: %s", path, msg)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: the handler did not see the reset", path)
		}
	}
}

// watcherFunc adapts a function to DoneWatcher.
type watcherFunc func()

func (f watcherFunc) StreamDone() { f() }

// TestStreamWatch: a watcher is told when the client resets the stream,
// not after Unwatch, and at once when the stream is done already.
func TestStreamWatch(t *testing.T) {
	told := make(chan string, 10)
	s := &Server{Handler: handlerFunc(func(st *Stream) {
		path := string(st.Request().Target)
		st.Watch(watcherFunc(func() { told <- path }))
		if path == "/unwatched" {
			st.Unwatch()
		}
		if st.WriteHeader(200, &h1.Head{}, false) != nil {
			return
		}
		<-st.Done()
		if path == "/late" {
			st.Watch(watcherFunc(func() { told <- "late watcher" }))
		}
	})}
	c := startConn(t, s)
	for i, path := range []string{"/unwatched", "/watched", "/late"} {
		id := uint32(2*i + 1)
		c.headers(id, true, ":method: GET", ":scheme: https", ":path: "+path, ":authority: a")
		if f, ok := c.readStream().(*http2.MetaHeadersFrame); !ok || f.StreamID != id {
			t.Fatalf("got %v, want the response head on stream %d", f, id)
		}
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for len(got) < 3 {
		select {
		case p := <-told:
			got[p] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("told of %v after 10 s, want /watched, /late and the late watcher", got)
		}
	}
	if !got["/watched"] || !got["/late"] || !got["late watcher"] || got["/unwatched"] {
		t.Errorf("told of %v, want /watched, /late and the late watcher", got)
	}
}
