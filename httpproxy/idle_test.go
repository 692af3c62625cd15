package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
	"lb/proxy"
)

// parkFrontend serves f on a loopback listener, with a server that
// answers every request, and returns the address to dial and what counts
// the connections until they end.
func parkFrontend(t *testing.T, f *Frontend) (string, *proxy.Frontend) {
	t.Helper()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	return parkFrontendTo(t, f, rawHTTPServer(t, resp))
}

// parkFrontendTo is parkFrontend with the server at server.
func parkFrontendTo(t *testing.T, f *Frontend, server string) (string, *proxy.Frontend) {
	t.Helper()
	srv := balancer.NewServer("s1", server, 1, 0, false)
	pool, err := balancer.NewPool("app", "roundrobin", []*balancer.Server{srv})
	if err != nil {
		t.Fatal(err)
	}
	f.Default = NewBackend(&proxy.Backend{Pool: pool, ConnectTimeout: time.Second, ServerTimeout: time.Minute})
	f.Name, f.Log = "web", zerolog.Nop()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pf := &proxy.Frontend{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go f.ServeConn(pf.NewConn(c))
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), pf
}

// waitParked waits until n connections of f are parked.
func waitParked(t *testing.T, f *Frontend, n int) {
	t.Helper()
	waitParkedDetached(t, f, n, -1)
}

// waitParkedDetached waits until n connections of f are parked, d of
// them detached (d < 0: any).
func waitParkedDetached(t *testing.T, f *Frontend, n, d int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, pd := f.parkedConns()
		if p == n && (d < 0 || pd == d) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, %d of them detached; want %d, %d", p, pd, n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shortDetach makes parked connections detach after d, for one test.
func shortDetach(t *testing.T, d time.Duration) {
	old := detachWait
	detachWait = d
	t.Cleanup(func() { detachWait = old })
}

// get sends a request on c and reads its response.
func get(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
}

// servedConns dials n keep-alive connections to addr, one after another,
// and gets a response on each; they are closed when the test ends.
func servedConns(t *testing.T, addr string, n int) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i], readers[i] = c, bufio.NewReader(c)
		get(t, c, readers[i])
	}
	return conns, readers
}

// TestKeepAliveConnectionsPark: keep-alive clients that wait between
// requests are parked: their goroutines end, and each is served again
// when its next request comes.
func TestKeepAliveConnectionsPark(t *testing.T) {
	f := &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: time.Minute, ClientTimeout: time.Minute}
	addr, pf := parkFrontend(t, f)
	const n = 50
	before := runtime.NumGoroutine()
	conns, readers := servedConns(t, addr, n)
	waitParked(t, f, n)
	// A connection served in a goroutine holds it while it waits; parked,
	// it holds none. The requests went one after another, so lb and the
	// test's server reuse one server connection.
	if g := runtime.NumGoroutine() - before; g >= n/2 {
		t.Errorf("%d goroutines more than before %d parked connections, want fewer than %d", g, n, n/2)
	}
	for round := 0; round < 2; round++ {
		for i, c := range conns {
			get(t, c, readers[i])
		}
		waitParked(t, f, n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitParked(t, f, 0)
	pf.Wait()
}

// TestParkedConnectionsDetach: plain keep-alive clients parked for
// detachAfter are detached (their sockets held as bare descriptors), and
// each is attached again and served when its next request comes, round
// after round; closing them ends them all.
func TestParkedConnectionsDetach(t *testing.T) {
	shortDetach(t, 100*time.Millisecond)
	f := &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: time.Minute, ClientTimeout: time.Minute}
	addr, pf := parkFrontend(t, f)
	const n = 20
	conns, readers := servedConns(t, addr, n)
	waitParkedDetached(t, f, n, n)
	for round := 0; round < 3; round++ {
		for i, c := range conns {
			get(t, c, readers[i])
			// A request and its answer on the same connection, twice:
			// the second finds it attached, or parked attached.
			get(t, c, readers[i])
		}
		waitParkedDetached(t, f, n, n)
	}
	if a := pf.Active(); a != n {
		t.Errorf("%d connections counted, want %d", a, n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitParked(t, f, 0)
	pf.Wait()
}

// TestParkedKeepAliveTimesOut: a parked client that sends nothing more is
// closed when http_keep_alive runs out, not before, detached or not; a
// generation that stops closes its parked clients within the close
// spread.
func TestParkedKeepAliveTimesOut(t *testing.T) {
	for _, detach := range []bool{false, true} {
		t.Run(map[bool]string{false: "attached", true: "detached"}[detach], func(t *testing.T) {
			testParkedKeepAliveTimesOut(t, detach)
		})
	}
}

func testParkedKeepAliveTimesOut(t *testing.T, detach bool) {
	wantDetached := 0
	if detach {
		shortDetach(t, 50*time.Millisecond)
		wantDetached = 1
	} else {
		shortDetach(t, time.Hour)
	}
	const keepAlive = 400 * time.Millisecond
	f := &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: keepAlive, ClientTimeout: time.Minute}
	addr, pf := parkFrontend(t, f)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	start := time.Now() // before lb's response ends: the timeout runs from after it
	get(t, c, br)
	waitParkedDetached(t, f, 1, wantDetached)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	if e := time.Since(start); e < keepAlive {
		t.Errorf("closed after %v, before the keep-alive timeout %v", e, keepAlive)
	}
	waitParked(t, f, 0)
	pf.Wait()

	// A soft stop: parked clients are closed within the spread, long
	// before their keep-alive timeout.
	f = &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: time.Hour, ClientTimeout: time.Minute}
	addr, pf = parkFrontend(t, f)
	c2, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	get(t, c2, br2)
	waitParkedDetached(t, f, 1, wantDetached)
	f.SoftStop(200 * time.Millisecond)
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after SoftStop: read %d bytes, %v; want the connection closed", n, err)
	}
	pf.Wait()
}

// TestWaitingConnectionsHoldNoReadBuffer: a client that waits in its
// goroutine (before it is parked) for its first request, or for its next
// one, holds no read buffer: after a burst, thousands may wait so at once.
// 300 clients, parking put off, waiting: held, there would be 300 read
// buffers.
func TestWaitingConnectionsHoldNoReadBuffer(t *testing.T) {
	defer func(d time.Duration) { parkAfter = d }(parkAfter)
	parkAfter = time.Minute
	f := &Frontend{RequestTimeout: time.Minute, KeepAliveTimeout: time.Hour, ClientTimeout: time.Minute}
	addr, pf := parkFrontend(t, f)
	const n = 300
	check := func(what string) {
		t.Helper()
		// The last one served may still be on its way to its wait.
		held := clientReadBufs.Load()
		for deadline := time.Now().Add(3 * time.Second); held != 0 && time.Now().Before(deadline); held = clientReadBufs.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%d clients waiting for %s: %d read buffers held", n, what, held)
		if held != 0 {
			t.Fatalf("%d read buffers held by %d clients waiting for %s, want none", held, n, what)
		}
		if p, _ := f.parkedConns(); p != 0 {
			t.Fatalf("%d connections parked, want them all waiting in their goroutines", p)
		}
	}

	// Waiting for a first request: each goroutine has looked at its
	// socket within the 500ms after all are served.
	conns := dialConns(t, addr, n)
	deadline := time.Now().Add(10 * time.Second)
	for served := 0; served != n; {
		f.mu.Lock()
		served = len(f.conns)
		f.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d connections served, want %d", served, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	check("a first request")

	// Waiting for a next request.
	for _, c := range conns {
		get(t, c, bufio.NewReader(c))
	}
	check("a next request")
	for _, c := range conns {
		c.Close()
	}
	pf.Wait()
}

// TestRequestsWaitingForTheServerHoldNoClientBuffer: a bodiless request
// that waits for its server's answer holds no read buffer on the client
// side: its head was copied out when it was parsed. 100 requests to a
// server that answers none until all have come.
func TestRequestsWaitingForTheServerHoldNoClientBuffer(t *testing.T) {
	gate := make(chan struct{})
	var arrived atomic.Int64
	srvAddr := serveEach(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		arrived.Add(1)
		<-gate
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	})
	f := &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: time.Minute, ClientTimeout: time.Minute}
	addr, pf := parkFrontendTo(t, f, srvAddr)
	const n = 100
	conns := dialConns(t, addr, n)
	for _, c := range conns {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the server got %d requests, want %d", arrived.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	held := clientReadBufs.Load()
	close(gate)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("response: %v, %v", resp, err)
		}
		c.Close()
	}
	t.Logf("%d requests waiting for the server: %d client read buffers held", n, held)
	if held != 0 {
		t.Errorf("%d client read buffers held by %d requests waiting for the server, want none", held, n)
	}
	pf.Wait()
}

// dialConns opens n connections to addr, closed when the test ends (or
// before, by the test).
func dialConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}
