package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
)

// backend is a real TCP server on loopback that runs handle for every
// connection and counts them.
type backend struct {
	ln       *net.TCPListener
	accepted atomic.Int64
	active   atomic.Int64
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func startBackend(t testing.TB, handle func(c *net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.active.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer b.active.Add(-1)
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return b
}

// echo copies everything back, then closes.
func echo(c *net.TCPConn) { _, _ = io.Copy(c, c) }

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// logBuffer collects log lines safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the JSON log lines whose message is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	return l.where(t, func(m string) bool { return m == msg })
}

// linesPrefixed returns the JSON log lines whose message starts with
// prefix.
func (l *logBuffer) linesPrefixed(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	return l.where(t, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

// where returns the JSON log lines whose message keep accepts.
func (l *logBuffer) where(t *testing.T, keep func(msg string) bool) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if msg, _ := m["message"].(string); keep(msg) {
			out = append(out, m)
		}
	}
	return out
}

type setup struct {
	servers  []*balancer.Server
	retries  int
	maxconn  int
	client   time.Duration
	server   time.Duration
	algo     string
	frontend *Frontend
	addr     string
	logs     *logBuffer
}

// start builds a frontend over s.servers, serves it on a loopback port and
// stops it when the test ends.
func (s *setup) start(t testing.TB) *setup {
	t.Helper()
	if s.algo == "" {
		s.algo = "roundrobin"
	}
	pool, err := balancer.NewPool("app", s.algo, s.servers)
	if err != nil {
		t.Fatal(err)
	}
	s.logs = &logBuffer{}
	be := &Backend{Pool: pool, Retries: s.retries, ConnectTimeout: time.Second, ServerTimeout: s.server}
	s.frontend = &Frontend{
		Name:    "web",
		Backend: be,
		MaxConn: s.maxconn,
		Handler: &TCP{Name: "web", Backend: be, ClientTimeout: s.client, Log: zerolog.New(s.logs)},
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.frontend.Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		waitFor(t, "connections to end", func() bool { return s.frontend.Active() == 0 })
		s.frontend.Wait()
	})
	return s
}

func (s *setup) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp4", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func srv(name, addr string, weight int) *balancer.Server {
	return balancer.NewServer(name, addr, weight, 0, false)
}

func TestLargeTransferBothWaysIntact(t *testing.T) {
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: 10 * time.Second, server: 10 * time.Second}).start(t)
	c := s.dial(t)

	payload := make([]byte, 16<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v; logs %v", err, s.logs.lines(t, "connection"))
	}
	if n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes, digest mismatch=%v; want %d identical bytes", n, !bytes.Equal(h.Sum(nil), want[:]), len(payload))
	}
	c.Close()
	waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
	l := s.logs.lines(t, "connection")[0]
	if l["bytes_in"] != float64(len(payload)) || l["bytes_out"] != float64(len(payload)) {
		t.Errorf("log bytes_in=%v bytes_out=%v, want %d each", l["bytes_in"], l["bytes_out"], len(payload))
	}
	if l["end"] != "client_closed" || l["server"] != "s1" || l["frontend"] != "web" || l["backend"] != "app" {
		t.Errorf("log line %v: want end=client_closed server=s1 frontend=web backend=app", l)
	}
	if cl, _ := l["client"].(string); cl != c.LocalAddr().String() {
		t.Errorf("log client=%q, want %q", cl, c.LocalAddr())
	}
}

func TestHalfCloseKeepsOtherDirection(t *testing.T) {
	// The server reads the whole request up to the client's FIN, and only
	// then answers and closes.
	b := startBackend(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("got: "), req...))
	})
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: 5 * time.Second, server: 5 * time.Second}).start(t)
	c := s.dial(t)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer after half-close: %v", err)
	}
	if string(got) != "got: hello" {
		t.Fatalf("answer %q, want %q", got, "got: hello")
	}
}

func TestRetrySkipsDeadServer(t *testing.T) {
	b := startBackend(t, echo)
	dead := deadAddr(t)
	s := (&setup{
		servers: []*balancer.Server{srv("dead", dead, 1), srv("live", b.addr(), 1)},
		retries: 1, client: 5 * time.Second, server: 5 * time.Second,
	}).start(t)
	for i := range 20 {
		c := s.dial(t)
		msg := []byte("ping")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("connection %d: %v (a dead server must be skipped by retry)", i, err)
		}
		c.Close()
	}
	if got := b.accepted.Load(); got != 20 {
		t.Fatalf("live server accepted %d connections, want 20", got)
	}
	waitFor(t, "20 log lines", func() bool { return len(s.logs.lines(t, "connection")) == 20 })
	for _, l := range s.logs.lines(t, "connection") {
		if l["server"] != "live" || l["end"] != "client_closed" {
			t.Errorf("log line %v: want server=live end=client_closed", l)
		}
	}
	if n := len(s.logs.lines(t, "connect failed")); n == 0 {
		t.Error("no connect failure was logged, so the dead server was never tried: the test proves nothing")
	}
}

func TestConnectFailureClosesClient(t *testing.T) {
	s := (&setup{
		servers: []*balancer.Server{srv("a", deadAddr(t), 1), srv("b", deadAddr(t), 1)},
		retries: 3, client: time.Minute, server: time.Minute,
	}).start(t)
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || (err != io.EOF && !isReset(err)) {
		t.Fatalf("read = %d, %v; want the connection closed (EOF or reset)", n, err)
	}
	waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connect failed")) == 4 })
	l := s.logs.lines(t, "connection")
	if len(l) != 1 || l[0]["end"] != "connect_failed" || l[0]["level"] != "warn" {
		t.Fatalf("connection log %v, want one warn line with end=connect_failed", l)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

func TestNoUsableServerClosesClient(t *testing.T) {
	s := (&setup{servers: []*balancer.Server{srv("zero", deadAddr(t), 0)}}).start(t)
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("read = %d, %v; want the connection closed at once", n, err)
	}
	waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
	if l := s.logs.lines(t, "connection")[0]; l["end"] != "no_server" {
		t.Fatalf("end=%v, want no_server", l["end"])
	}
}

func TestIdleTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server time.Duration
		wantEnd        string
	}{
		{"client", 200 * time.Millisecond, 10 * time.Second, "client_timeout"},
		{"server", 10 * time.Second, 200 * time.Millisecond, "server_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, echo)
			s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: tc.client, server: tc.server}).start(t)
			// Measured from before the dial: lb's idle clock cannot start
			// earlier, and the test goroutine may be descheduled after it.
			start := time.Now()
			c := s.dial(t)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("read data on an idle connection")
			} else if isTimeout(err) {
				t.Fatalf("idle connection not closed by lb within 5s: %v", err)
			}
			// A connection that waits for bytes times out on time
			// (README); 300ms of slack for scheduling on a busy machine.
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Fatalf("closed after %v, before the 200ms timeout", d)
			} else if d > 500*time.Millisecond {
				t.Fatalf("closed after %v: the 200ms timeout fired late", d)
			}
			waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
			if l := s.logs.lines(t, "connection")[0]; l["end"] != tc.wantEnd {
				t.Fatalf("end=%v, want %s", l["end"], tc.wantEnd)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A download to a client that sends nothing is activity on the client side:
// the client timeout must not cut it.
func TestActiveTransferIsNotIdle(t *testing.T) {
	b := startBackend(t, func(c *net.TCPConn) {
		for range 15 {
			if _, err := c.Write([]byte("tick\n")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: 200 * time.Millisecond, server: 200 * time.Millisecond}).start(t)
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if want := strings.Repeat("tick\n", 15); string(got) != want {
		t.Fatalf("got %d bytes, want %d: a 750ms stream was cut by a 200ms idle timeout", len(got), len(want))
	}
	waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
	if l := s.logs.lines(t, "connection")[0]; l["end"] != "server_closed" {
		t.Fatalf("end=%v, want server_closed", l["end"])
	}
}

// A client that keeps sending while it reads nothing is not idle: the
// download that waits for it to read is not cut by timeout.client, since
// bytes still move the other way. A client that stops sending too is.
func TestUploadWhileNotReadingIsNotIdle(t *testing.T) {
	const download = 16 << 20 // more than every socket buffer on the way holds
	b := startBackend(t, func(c *net.TCPConn) {
		read := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, c); close(read) }()
		if _, err := c.Write(make([]byte, download)); err == nil {
			_ = c.CloseWrite()
		}
		<-read // closing before the upload ends would reset it
	})
	const timeout = 300 * time.Millisecond
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: timeout, server: 10 * time.Second}).start(t)

	c := s.dial(t)
	for range 50 { // 1 s of upload, several timeouts long, nothing read
		if _, err := c.Write(make([]byte, 1024)); err != nil {
			t.Fatalf("upload: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != download {
		t.Fatalf("downloaded %d bytes (%v), want %d: the download was cut while the client sent", n, err, download)
	}
	c.Close()
	waitFor(t, "the connection log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
	if l := s.logs.lines(t, "connection")[0]; l["end"] != "server_closed" {
		t.Fatalf("end=%v, want server_closed", l["end"])
	}

	// Neither reading nor sending: the client times out.
	start := time.Now() // lb's idle clock cannot start earlier
	c = s.dial(t)
	if _, err := c.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second connection's log line", func() bool { return len(s.logs.lines(t, "connection")) == 2 })
	if l := s.logs.lines(t, "connection")[1]; l["end"] != "client_timeout" {
		t.Fatalf("end=%v, want client_timeout", l["end"])
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("timed out after %v, before timeout.client %v", d, timeout)
	}
}

func TestFrontendMaxConnLeavesExtraInKernelQueue(t *testing.T) {
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, maxconn: 2, client: 10 * time.Second, server: 10 * time.Second}).start(t)
	first := []*net.TCPConn{s.dial(t), s.dial(t)}
	waitFor(t, "two proxied connections", func() bool { return b.active.Load() == 2 })
	third := s.dial(t) // completes in the kernel, is not accepted
	if _, err := third.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := b.accepted.Load(); got != 2 {
		t.Fatalf("backend saw %d connections with frontend maxconn 2, want 2", got)
	}
	first[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(third, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("queued connection after a slot freed: %q, %v", buf, err)
	}
}

func TestServerMaxConnSkipsFullServer(t *testing.T) {
	full := startBackend(t, echo)
	other := startBackend(t, echo)
	s := (&setup{
		servers: []*balancer.Server{balancer.NewServer("small", full.addr(), 1, 1, false), srv("big", other.addr(), 1)},
		algo:    "first", client: 10 * time.Second, server: 10 * time.Second,
	}).start(t)
	for range 4 {
		s.dial(t)
	}
	waitFor(t, "four proxied connections", func() bool { return full.active.Load()+other.active.Load() == 4 })
	if full.active.Load() != 1 || other.active.Load() != 3 {
		t.Fatalf("small (maxconn 1) has %d, big has %d; want 1 and 3", full.active.Load(), other.active.Load())
	}
}

func TestIdleDeadline(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		client, server time.Duration
		want           time.Time
	}{
		{0, 0, time.Time{}},
		{time.Minute, 0, start.Add(time.Second + time.Minute)},
		{0, 2 * time.Second, start.Add(3 * time.Second)},
		{time.Minute, 2 * time.Second, start.Add(3 * time.Second)},
	} {
		s := &session{start: start, timeouts: [2]time.Duration{tc.client, tc.server}}
		s.last.Store(int64(time.Second))
		if got := s.idleDeadline(); !got.Equal(tc.want) {
			t.Errorf("idleDeadline(%v, %v) = %v, want %v", tc.client, tc.server, got, tc.want)
		}
	}
}
