package httpproxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"lb/balancer"
	"lb/h1"
	"lb/internal/testcert"
	"lb/proxy"
)

// Pooled server connections the server closed: the check before reuse
// (alive), and forward's retry when a reused connection fails before any
// response. Real sockets on loopback; the kernel's TCP states are read
// with TCP_INFO to set each case up without sleeping.

// Linux TCP states (include/net/tcp_states.h).
const (
	stateClose     = tcpClose
	stateCloseWait = 8
)

// tcpState returns c's TCP state.
func tcpState(t *testing.T, c net.Conn) uint8 {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	if cerr := rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// waitTCPState waits up to 10 s for c to be in state want.
func waitTCPState(t *testing.T, c net.Conn, want uint8) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s := tcpState(t, c)
		if s == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP state %d, want %d", s, want)
		}
	}
}

// waitReadable waits up to 10 s for bytes to read on c.
func waitReadable(c net.Conn) error {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var n int
	if cerr := rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err = unix.Poll(p, 10000)
	}); cerr != nil {
		return cerr
	}
	if n != 1 {
		return fmt.Errorf("nothing to read after 10s (%v)", err)
	}
	return nil
}

// mustReadable is waitReadable failing the test.
func mustReadable(t *testing.T, c net.Conn) {
	t.Helper()
	if err := waitReadable(c); err != nil {
		t.Fatal(err)
	}
}

// poolServer is a server on loopback. The test takes the server side of
// the first connection itself (lb's pooled connection); handle serves
// each later one (lb's fresh connections).
type poolServer struct {
	ln       net.Listener
	handle   func(s *poolServer, c net.Conn)
	accepted atomic.Int64 // connections after the first
	wg       sync.WaitGroup

	mu  sync.Mutex
	got []string // "METHOD id body" of each request read, on any connection
}

func newPoolServer(t *testing.T, handle func(s *poolServer, c net.Conn)) *poolServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &poolServer{ln: ln, handle: handle}
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// serve accepts and serves the connections after the first.
func (s *poolServer) serve() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				s.handle(s, c)
			}()
		}
	}()
}

// read reads one request from br and records it.
func (s *poolServer) read(br *bufio.Reader) (id string, err error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return "", err
	}
	id = req.Header.Get("X-Id")
	s.mu.Lock()
	s.got = append(s.got, fmt.Sprintf("%s %s %s", req.Method, id, body))
	s.mu.Unlock()
	return id, nil
}

func (s *poolServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// answer serves requests, each with a 200 whose body is its X-Id.
func answer(s *poolServer, c net.Conn) {
	br := bufio.NewReader(c)
	for {
		id, err := s.read(br)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(id), id)
	}
}

// readAndClose reads a request and closes without an answer, as a server
// that crashes on it.
func readAndClose(s *poolServer, c net.Conn) { _, _ = s.read(bufio.NewReader(c)) }

// errorLog is a passive health check that remembers the errors it hears.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (o *errorLog) ObserveConn(_ *balancer.Server, err error) {
	if err != nil {
		o.mu.Lock()
		o.errs = append(o.errs, err)
		o.mu.Unlock()
	}
}

func (o *errorLog) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.errs)
}

// newPoolBackend returns a backend of one server at addr.
func newPoolBackend(t testing.TB, addr string) (*Backend, *balancer.Server, *errorLog) {
	t.Helper()
	srv := balancer.NewServer("s1", addr, 1, 0, false)
	pool, err := balancer.NewPool("app", "roundrobin", []*balancer.Server{srv})
	if err != nil {
		t.Fatal(err)
	}
	obs := &errorLog{}
	return NewBackend(&proxy.Backend{Pool: pool, ConnectTimeout: 5 * time.Second, ServerTimeout: 10 * time.Second, Observer: obs}), srv, obs
}

// pooled returns a connection of be to s's server as it comes out of the
// pool (it served a request before), and the server's side of it.
func pooled(t *testing.T, be *Backend, srv *balancer.Server, s *poolServer) (*serverConn, net.Conn) {
	t.Helper()
	sc, err := be.connect(srv, true)
	if err != nil {
		t.Fatal(err)
	}
	server, err := s.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	sc.used = true
	return sc, server
}

// testClient is the client side of an exchange under test: it remembers
// the status of lb's own answer. Other methods are not expected.
type testClient struct {
	client
	status int
}

func (c *testClient) writeError(status int) { c.status = status }
func (c *testClient) abortBody()            {}
func (c *testClient) resumeBody()           {}

// newPoolExchange returns an exchange of raw's request, read from a
// client buffer, to be sent on sc. src, when set, is where the body is
// read from instead: a body not yet in the buffer.
func newPoolExchange(t *testing.T, be *Backend, sc *serverConn, raw string, src io.Reader) (*exchange, *testClient, *bufio.Reader) {
	t.Helper()
	cl := &testClient{}
	f := &Frontend{Name: "web", Default: be, Log: zerolog.Nop()}
	x := &exchange{f: f, cl: cl, be: be}
	in := io.Reader(strings.NewReader(raw))
	if src != nil {
		in = io.MultiReader(in, src)
	}
	br := bufio.NewReaderSize(in, bufSize)
	if err := h1.ReadRequest(br, &x.req, f.Limits); err != nil {
		t.Fatal(err)
	}
	x.reqIn = br
	if x.req.Body.Kind == h1.BodyLength {
		x.reqBody, x.reqLen = io.LimitReader(br, x.req.Body.Length), x.req.Body.Length
	}
	if x.srv = be.Pool.Pick(&balancer.Request{}); x.srv == nil {
		t.Fatal("no server")
	}
	x.sc = sc
	t.Cleanup(func() {
		if x.sc != nil {
			x.sc.close()
		}
		if x.srv != nil {
			x.srv.Release()
		}
	})
	return x, cl, br
}

const pipelined = "GET /next HTTP/1.1\r\nHost: lb\r\n\r\n"

// TestForwardResendsOnStaleConn hands forward a pooled connection that
// the server closed before it could read lb's request: its kernel resets
// the connection, which proves the request unread. The POST goes again,
// once, on a fresh connection; the server gets it once; the stale
// connection is not held against the server; the body left the client's
// buffer exactly once (the pipelined request after it is intact).
func TestForwardResendsOnStaleConn(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stale closes the server's side of sc, before lb sends the
		// request or as it arrives.
		stale func(t *testing.T, sc *serverConn, server net.Conn)
	}{
		{"reset before the request", func(t *testing.T, sc *serverConn, server net.Conn) {
			// Bytes the server does not read make its close a reset; lb
			// has it before it writes (the write fails: EPIPE or
			// ECONNRESET).
			if _, err := sc.c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			mustReadable(t, server)
			server.Close()
			waitTCPState(t, sc.c, stateClose)
		}},
		{"FIN before the request", func(t *testing.T, sc *serverConn, server net.Conn) {
			// The FIN came after alive's check: lb writes, the server's
			// kernel answers with a reset, lb reads end of file and waits
			// for the reset (awaitReset).
			server.Close()
			waitTCPState(t, sc.c, stateCloseWait)
		}},
		{"closed with the request unread", func(t *testing.T, sc *serverConn, server net.Conn) {
			// The server closes as the request arrives, without reading
			// it: a reset instead of a FIN; lb's read fails with
			// ECONNRESET.
			go func() {
				_ = waitReadable(server)
				server.Close()
			}()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPoolServer(t, answer)
			be, srv, obs := newPoolBackend(t, s.ln.Addr().String())
			sc, server := pooled(t, be, srv, s)
			s.serve()
			body := "the body of post 1"
			x, cl, br := newPoolExchange(t, be, sc, fmt.Sprintf("POST /p HTTP/1.1\r\nHost: lb\r\nX-Id: post-1\r\nContent-Length: %d\r\n\r\n%s%s", len(body), body, pipelined), nil)
			tc.stale(t, sc, server)

			if !x.forward() {
				t.Fatalf("forward failed: lb answered %d, error %v", cl.status, x.err)
			}
			if x.resp.Status != 200 || x.retries != 1 || x.sc == sc || x.sc.used {
				t.Errorf("status %d after %d retries (fresh connection: %v), want 200 after 1 on a fresh one", x.resp.Status, x.retries, x.sc != sc && !x.sc.used)
			}
			if got, err := x.sc.br.Peek(6); string(got) != "post-1" {
				t.Errorf("response body %q (%v), want post-1", got, err)
			}
			if got, want := s.requests(), []string{"POST post-1 " + body}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("the server got %q, want %q", got, want)
			}
			if n := s.accepted.Load(); n != 1 {
				t.Errorf("%d fresh connections, want 1", n)
			}
			if n, e := obs.count(), srv.Stats().Errors; n != 0 || e != 0 {
				t.Errorf("the stale connection counted against the server: %d errors observed, %d counted", n, e)
			}
			if rest, _ := io.ReadAll(br); string(rest) != pipelined {
				t.Errorf("the client's buffer holds %q after the exchange, want the next request %q", rest, pipelined)
			}
			if x.bytesIn != int64(len(body)) {
				t.Errorf("bytesIn %d, want %d", x.bytesIn, len(body))
			}
		})
	}
}

// TestForwardNoResendAfterServerRead hands forward a pooled connection on
// which the server reads the request and closes without an answer (its
// FIN acknowledges the request: nothing proves it unread). A POST is not
// sent again: 502, counted against the server. A GET is, once: the fresh
// connection fails the same way, and there is no third try.
func TestForwardNoResendAfterServerRead(t *testing.T) {
	for _, tc := range []struct {
		method   string
		status   int
		fresh    int64 // connections the retries opened
		requests int   // requests the server read
	}{
		{"POST", 502, 0, 1},
		{"GET", 502, 1, 2},
	} {
		t.Run(tc.method, func(t *testing.T) {
			s := newPoolServer(t, readAndClose)
			be, srv, obs := newPoolBackend(t, s.ln.Addr().String())
			sc, server := pooled(t, be, srv, s)
			s.serve()
			body := ""
			if tc.method == "POST" {
				body = "the body"
			}
			x, cl, br := newPoolExchange(t, be, sc, fmt.Sprintf("%s /p HTTP/1.1\r\nHost: lb\r\nX-Id: r1\r\nContent-Length: %d\r\n\r\n%s%s", tc.method, len(body), body, pipelined), nil)
			go func() {
				readAndClose(s, server)
				server.Close()
			}()

			start := time.Now()
			if x.forward() {
				t.Fatalf("forward got a response: %d", x.resp.Status)
			}
			took := time.Since(start)
			if cl.status != tc.status || x.retries != int(tc.fresh) {
				t.Errorf("lb answered %d after %d retries (%v), want %d after %d", cl.status, x.retries, x.err, tc.status, tc.fresh)
			}
			if n := s.accepted.Load(); n != tc.fresh {
				t.Errorf("%d fresh connections, want %d", n, tc.fresh)
			}
			if got := s.requests(); len(got) != tc.requests {
				t.Errorf("the server read %q, want %d requests", got, tc.requests)
			}
			if n, e := obs.count(), srv.Stats().Errors; n != 1 || e != 1 {
				t.Errorf("%d errors observed, %d counted, want 1 and 1", n, e)
			}
			if errors.Is(x.err, errNotReplayable) {
				t.Errorf("error %v", x.err)
			}
			if rest, _ := io.ReadAll(br); string(rest) != pipelined {
				t.Errorf("the client's buffer holds %q after the exchange, want %q", rest, pipelined)
			}
			// The request was acknowledged before the FIN: no wait for a
			// reset that will not come (generous bound: a loaded machine).
			if took > 2*time.Second {
				t.Errorf("forward took %v", took)
			}
		})
	}
}

// TestForwardStaleConnStreamedBody: a POST whose body lb streams (not
// all in the client's buffer) cannot go again. When the server provably
// never read it, lb answers 502, says why in the log's error, and holds
// nothing against the server.
func TestForwardStaleConnStreamedBody(t *testing.T) {
	s := newPoolServer(t, answer)
	be, srv, obs := newPoolBackend(t, s.ln.Addr().String())
	sc, server := pooled(t, be, srv, s)
	s.serve()
	body := strings.Repeat("b", 100)
	x, cl, _ := newPoolExchange(t, be, sc, fmt.Sprintf("POST /p HTTP/1.1\r\nHost: lb\r\nX-Id: s1\r\nContent-Length: %d\r\n\r\n", len(body)), strings.NewReader(body))
	if x.bodyHeld() {
		t.Fatal("the body is held: the test needs a streamed one")
	}
	if _, err := sc.c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	mustReadable(t, server)
	server.Close()
	waitTCPState(t, sc.c, stateClose)

	if x.forward() {
		t.Fatalf("forward got a response: %d", x.resp.Status)
	}
	if cl.status != 502 || x.retries != 0 || !errors.Is(x.err, errNotReplayable) {
		t.Errorf("lb answered %d after %d retries, error %v; want 502, no retry, %v", cl.status, x.retries, x.err, errNotReplayable)
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("%d fresh connections, want none", n)
	}
	if n, e := obs.count(), srv.Stats().Errors; n != 0 || e != 0 {
		t.Errorf("the stale connection counted against the server: %d errors observed, %d counted", n, e)
	}
}

// TestAlive checks the check before reuse on open and closed connections,
// plain and TLS.
func TestAlive(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			server func(t *testing.T, sc *serverConn, server net.Conn)
			alive  bool
		}{
			{"open", func(*testing.T, *serverConn, net.Conn) {}, true},
			{"FIN", func(t *testing.T, sc *serverConn, server net.Conn) {
				server.Close()
				waitTCPState(t, sc.c, stateCloseWait)
			}, false},
			{"reset", func(t *testing.T, sc *serverConn, server net.Conn) {
				_, _ = sc.c.Write([]byte("x"))
				mustReadable(t, server)
				server.Close()
				waitTCPState(t, sc.c, stateClose)
			}, false},
			{"stray bytes", func(t *testing.T, sc *serverConn, server net.Conn) {
				_, _ = server.Write([]byte("HTTP/1.1 200 OK\r\n"))
				mustReadable(t, sc.c)
			}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newPoolServer(t, answer)
				be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
				sc, server := pooled(t, be, srv, s)
				defer sc.close()
				tc.server(t, sc, server)
				if got := sc.alive(); got != tc.alive {
					t.Errorf("alive = %v, want %v", got, tc.alive)
				}
			})
		}
	})
	t.Run("TLS", func(t *testing.T) {
		ca := testcert.NewCA(t)
		certPEM, keyPEM := ca.Leaf(t, "127.0.0.1")
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		s := newPoolServer(t, answer)
		be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
		be.servers[srv].tls = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
		handshake := make(chan *tls.Conn, 1)
		go func() {
			c, err := s.ln.Accept()
			if err != nil {
				handshake <- nil
				return
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
			if tc.Handshake() != nil {
				c.Close()
				tc = nil
			}
			handshake <- tc
		}()
		sc, err := be.connect(srv, true)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.close()
		server := <-handshake
		if server == nil {
			t.Fatal("TLS handshake failed")
		}
		// A record waiting, as a session ticket may be: not a close.
		if _, err := server.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		mustReadable(t, sc.raw)
		if !sc.alive() {
			t.Error("alive = false with a TLS record waiting, want true")
		}
		server.Close() // close_notify, then FIN
		waitTCPState(t, sc.raw, stateCloseWait)
		if sc.alive() {
			t.Error("alive = true after the server closed, want false")
		}
	})
}

// TestPoolGetCheap: for a request that a closed connection costs only a
// round trip (cheap), the pool hands out its newest connection unchecked,
// closed or not, until the server is seen with a connection it closed;
// then it checks every reuse, for closerMemory.
func TestPoolGetCheap(t *testing.T) {
	s := newPoolServer(t, answer)
	be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
	up := be.servers[srv]
	closedOne := func() *serverConn {
		sc, server := pooled(t, be, srv, s)
		server.Close()
		waitTCPState(t, sc.c, stateCloseWait)
		return sc
	}
	stale := closedOne()
	up.idle.put(stale)
	if got := up.idle.get(true); got != stale {
		t.Fatalf("get(cheap) returned %p, want the connection %p unchecked", got, stale)
	}
	stale.close()

	// A request that failed on it (forward), or a checked reuse that
	// finds one closed, makes every reuse checked.
	up.idle.noteClosed()
	open, _ := pooled(t, be, srv, s)
	defer open.close()
	up.idle.put(open)
	stale = closedOne()
	up.idle.put(stale)
	if got := up.idle.get(true); got != open {
		t.Fatalf("get(cheap) after a close was seen returned %p, want the open connection %p (the closed one is %p)", got, open, stale)
	}

	// closerMemory later, reuses go unchecked again.
	up.idle.mu.Lock()
	up.idle.closed = sinceStart() - closerMemory
	up.idle.mu.Unlock()
	stale = closedOne()
	up.idle.put(stale)
	if got := up.idle.get(true); got != stale {
		t.Errorf("get(cheap) %v after the last close seen returned %p, want the connection %p unchecked", closerMemory, got, stale)
	}
	stale.close()
}

// TestPoolGetSkipsClosed: the pool hands out its newest connection that
// is still open, and closes those the server closed, however briefly
// they were idle.
func TestPoolGetSkipsClosed(t *testing.T) {
	s := newPoolServer(t, answer)
	be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
	older, _ := pooled(t, be, srv, s)
	newer, server := pooled(t, be, srv, s)
	up := be.servers[srv]
	up.idle.put(older)
	up.idle.put(newer)
	server.Close()
	waitTCPState(t, newer.c, stateCloseWait)
	if got := up.idle.get(false); got != older {
		t.Fatalf("get returned %p, want the open connection %p (the closed one is %p)", got, older, newer)
	}
	defer older.close()
	if got := up.idle.get(false); got != nil {
		t.Errorf("get returned %p from an empty pool", got)
	}
	if _, err := newer.c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the closed connection was not closed by the pool: write error %v", err)
	}
}

func TestAliveDoesNotAllocate(t *testing.T) {
	s := newPoolServer(t, answer)
	be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
	sc, _ := pooled(t, be, srv, s)
	defer sc.close()
	if n := testing.AllocsPerRun(100, func() {
		if !sc.alive() {
			t.Fatal("not alive")
		}
	}); n != 0 {
		t.Errorf("alive allocates %v times", n)
	}
}

// BenchmarkAlive measures the check before each reuse of a pooled
// connection (compare with lb's CPU per request in make bench-http).
func BenchmarkAlive(b *testing.B) {
	for _, tc := range []struct {
		name  string
		probe func(uintptr) bool
	}{{"plain", openPlain}, {"TLS", openTLS}} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			be, srv, _ := newPoolBackend(b, ln.Addr().String())
			sc, err := be.connect(srv, true)
			if err != nil {
				b.Fatal(err)
			}
			defer sc.close()
			server, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer server.Close()
			probe := tc.probe
			sc.probe = func(fd uintptr) { sc.open = probe(fd) }
			b.ReportAllocs()
			for b.Loop() {
				if !sc.alive() {
					b.Fatal("not alive")
				}
			}
		})
	}
}

// TestPoolIdleHoldsNoBuffer: a connection back in the pool holds no
// buffer, one with bytes the server sent beyond its response is closed
// rather than kept, and a pool left alone closes its connections once they
// have been idle for idleMaxAge, without a request coming.
func TestPoolIdleHoldsNoBuffer(t *testing.T) {
	old := maxIdleNs.Load()
	maxIdleNs.Store(int64(300 * time.Millisecond))
	t.Cleanup(func() { maxIdleNs.Store(old) })
	s := newPoolServer(t, answer)
	be, srv, _ := newPoolBackend(t, s.ln.Addr().String())
	up := be.servers[srv]

	first, _ := pooled(t, be, srv, s)
	second, server2 := pooled(t, be, srv, s)
	up.idle.put(first)
	if first.br != nil || first.bw != nil {
		t.Errorf("an idle connection holds its buffers")
	}
	// Stray bytes after a response: the connection is not kept.
	if _, err := server2.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := second.br.Peek(1); err != nil {
		t.Fatal(err)
	}
	up.idle.put(second)
	if _, err := second.c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a connection with unread bytes went back to the pool: write error %v", err)
	}

	// Taken again, it has buffers, and carries on.
	sc := up.idle.get(false)
	if sc != first {
		t.Fatalf("get returned %p, want %p", sc, first)
	}
	sc.takeBuffers()
	if sc.br == nil || sc.bw == nil || sc.br.Buffered() != 0 {
		t.Fatal("a connection taken from the pool has no clean buffers")
	}
	up.idle.put(sc)

	// Left alone, the pool closes it after idleMaxAge (generously waited
	// for: timers can be late on a busy machine).
	deadline := time.Now().Add(10 * time.Second)
	for {
		up.idle.mu.Lock()
		n, armed := len(up.idle.conns), up.idle.armed
		up.idle.mu.Unlock()
		if n == 0 && !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections still pooled 10 s after idleMaxAge %v", n, maxIdle())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := first.c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the expired connection was not closed: write error %v", err)
	}
	// The pool works on after its purge: a connection put now is kept.
	third, _ := pooled(t, be, srv, s)
	up.idle.put(third)
	if got := up.idle.get(false); got != third {
		t.Errorf("get returned %p after a purge, want %p", got, third)
	} else {
		third.close()
	}
}

// TestDialAt: a first dial takes the request head's time for the idle
// pool, without reading the clock; one after a wait in the queue, or
// after a failed dial, reads the clock, since those can last seconds.
func TestDialAt(t *testing.T) {
	head := processStart.Add(time.Second)
	now := sinceStart()
	for _, c := range []struct {
		name     string
		queued   bool
		attempts int
		head     time.Time
		fresh    bool // the clock's time, not the head's
	}{
		{name: "first attempt", attempts: 1, head: head},
		{name: "queued", queued: true, attempts: 1, head: head, fresh: true},
		{name: "second attempt", attempts: 2, head: head, fresh: true},
		{name: "no head time", attempts: 1, fresh: true},
	} {
		x := &exchange{tHead: c.head}
		x.dial.Queued, x.dial.Attempts = c.queued, c.attempts
		got := x.dialAt()
		switch {
		case !c.fresh && got != time.Second:
			t.Errorf("%s: %v, want the head's time (1s)", c.name, got)
		case c.fresh && got < now:
			t.Errorf("%s: %v, want the time now (at least %v)", c.name, got, now)
		}
	}
}
