package health

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
)

// logSink collects a Checker's log lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// entries returns the lines logged so far at level (any level if "").
func (s *logSink) entries(t *testing.T, level string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if level == "" || m["level"] == level {
			out = append(out, m)
		}
	}
	return out
}

// transitions returns the messages of the state change lines, in order.
func (s *logSink) transitions(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range s.entries(t, "") {
		msg, _ := m["message"].(string)
		if strings.Contains(msg, " is UP: ") || strings.Contains(msg, " is DOWN: ") {
			out = append(out, msg)
		}
	}
	return out
}

// waitTransitions waits until n state changes are logged, and returns them.
func (s *logSink) waitTransitions(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	waitFor(t, 2*time.Second, fmt.Sprintf("%d state change logs", n), func() bool {
		got = s.transitions(t)
		return len(got) >= n
	})
	return got
}

func newLog() (*logSink, zerolog.Logger) {
	s := &logSink{}
	return s, zerolog.New(s).Level(zerolog.DebugLevel)
}

// newPool returns a pool "app" of one server per name, each at weight 100.
func newPool(t *testing.T, names ...string) (*balancer.Pool, []*balancer.Server) {
	t.Helper()
	var servers []*balancer.Server
	for _, n := range names {
		servers = append(servers, balancer.NewServer(n, "127.0.0.1:1", 100, 0, false))
	}
	p, err := balancer.NewPool("app", "roundrobin", servers)
	if err != nil {
		t.Fatal(err)
	}
	return p, servers
}

// tcpSettings are fast TCP check settings against addr.
func tcpSettings(addr string) Settings {
	return Settings{
		Type: TypeTCP, Addr: addr, Rise: 2, Fall: 3,
		Interval: 50 * time.Millisecond, FastInterval: 20 * time.Millisecond,
		DownInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond,
	}
}

// tcpServer is a listener on 127.0.0.1 that counts the connections it
// accepts.
type tcpServer struct {
	ln    net.Listener
	n     atomic.Int64
	first atomic.Int64 // unix ns of the first accept
	done  chan struct{}
}

func listenTCP(t *testing.T, addr string) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) serve() {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.first.CompareAndSwap(0, time.Now().UnixNano())
		s.n.Add(1)
		c.Close()
	}
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) close() {
	s.ln.Close()
	<-s.done
}

// deadAddr returns an address on 127.0.0.1 where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// httpServer serves handler and counts requests.
type httpServer struct {
	*httptest.Server
	n atomic.Int64
}

func serveHTTP(t *testing.T, handler http.HandlerFunc) *httpServer {
	t.Helper()
	s := &httpServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *httpServer) addr() string { return s.Listener.Addr().String() }

// start runs c until the test ends, then checks that Run returns promptly.
// It returns a function that stops c early (and may be called again).
func start(t *testing.T, c *Checker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("Run did not return within 2s of its context ending")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(begin)
}

// state returns the checker's snapshot of server.
func state(t *testing.T, c *Checker, server string) Snapshot {
	t.Helper()
	for _, sn := range c.states() {
		if sn.Server == server {
			return sn
		}
	}
	t.Fatalf("no state for server %q", server)
	return Snapshot{}
}
