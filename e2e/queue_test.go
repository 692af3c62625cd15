package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lb/internal/testcert"
)

// Tests of the backend queue: when every server is at its maxconn, a
// request (HTTP) or a connection (TCP) waits, first come first served, up
// to timeout.queue.

// gate is an httpBackend handler: a request whose path ends in "/hold"
// waits until the test closes release (5 s at most), any other one for
// hold. It reports each request's path on in when it reaches the handler,
// and records how many requests it served at once.
type gate struct {
	hold    time.Duration
	release chan struct{}
	in      chan string

	inflight, most atomic.Int64
}

func newGate(hold time.Duration) *gate {
	return &gate{hold: hold, release: make(chan struct{}), in: make(chan string, 16)}
}

func (g *gate) handle(b *httpBackend, w http.ResponseWriter, r *http.Request) {
	n := g.inflight.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	g.in <- r.URL.Path
	if strings.HasSuffix(r.URL.Path, "/hold") {
		select {
		case <-g.release:
		case <-time.After(5 * time.Second):
		}
	} else {
		time.Sleep(g.hold)
	}
	// Done before the handler returns, so before lb can see the end of
	// the response and hand the slot over.
	g.inflight.Add(-1)
	b.echo(w, r)
}

// waitIn waits up to 5 s for the server to have been asked for path.
func (g *gate) waitIn(t *testing.T, path string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case p := <-g.in:
			if p == path {
				return
			}
			t.Fatalf("the server got %s while the test waited for %s", p, path)
		case <-timeout:
			t.Fatalf("%s never reached the server", path)
		}
	}
}

// queuedResult is how a request sent in the background ended.
type queuedResult struct {
	r    rawResponse
	err  error
	took time.Duration // from before the dial to the end of the response
}

// getAsync sends GET path to addr on a connection of its own, in the
// background.
func getAsync(addr, path string) <-chan queuedResult {
	ch := make(chan queuedResult, 1)
	go func() {
		start := time.Now()
		r, err := tryRawHTTP(addr, "GET "+path+" HTTP/1.1\r\nHost: q.test\r\n\r\n")
		ch <- queuedResult{r, err, time.Since(start)}
	}()
	return ch
}

// await waits up to 15 s for a request sent with getAsync.
func await(t *testing.T, what string, ch <-chan queuedResult) queuedResult {
	t.Helper()
	select {
	case q := <-ch:
		if q.err != nil {
			t.Fatalf("%s: %v", what, q.err)
		}
		return q
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: no answer within 15s", what)
		return queuedResult{}
	}
}

// queueBackend is a [[backend]] table named name with extra keys and one
// server of maxconn 1.
func queueBackend(name, extra string, b *httpBackend) string {
	return fmt.Sprintf("[[backend]]\nname = %q\n%s\n", name, extra) + serverLine(b.name, b.addr(), "maxconn = 1")
}

// TestHTTPQueueFIFO queues requests behind a server that takes one at a
// time: none is lost, the server never has two at once, and it gets them
// in the order they came.
func TestHTTPQueueFIFO(t *testing.T) {
	const n = 5
	g := newGate(50 * time.Millisecond)
	s := startHTTPBackendFunc(t, "s1", g.handle)
	p, addr := startHTTPLB(t, "", "", queueBackend("app", "[backend.timeout]\nqueue = \"10s\"\n", s))

	paths := []string{"/q/1/hold"}
	for i := 2; i <= n; i++ {
		paths = append(paths, fmt.Sprintf("/q/%d", i))
	}
	results := make([]<-chan queuedResult, n)
	results[0] = getAsync(addr, paths[0])
	g.waitIn(t, paths[0])
	// The server holds the first request until all the others came, 100ms
	// apart, so that each is in the queue before the next one comes; then
	// each takes it 50ms.
	for i := 1; i < n; i++ {
		if i > 1 {
			time.Sleep(100 * time.Millisecond)
		}
		results[i] = getAsync(addr, paths[i])
	}
	time.Sleep(100 * time.Millisecond)
	close(g.release)
	logs := make([]map[string]any, n)
	for i, path := range paths {
		q := await(t, path, results[i])
		if q.r.StatusCode != 200 || !strings.Contains(q.r.body, `"server":"s1"`) {
			t.Errorf("%s: %d %q, want 200 from s1", path, q.r.StatusCode, q.r.body)
		}
		logs[i] = waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == q.r.client })
		if logStatus(logs[i]) != 200 || logs[i]["end"] != "ok" || logs[i]["server"] != "s1" || logs[i]["path"] != path {
			t.Errorf("%s: access log %v, want status 200, end ok, server s1", path, logs[i])
		}
	}
	if got := s.seen(); !slices.Equal(got, paths) {
		t.Errorf("the server got %q, want %q: first come, first served\n%s", got, paths, headTimes(logs))
	}
	if m := g.most.Load(); m != 1 {
		t.Errorf("the server of maxconn 1 had %d requests at once", m)
	}
}

// headTimes tells, from access log lines, when lb had read each request's
// head and when it had its server, in ms after the first head: to tell
// whether lb got the requests in another order than they were sent.
func headTimes(logs []map[string]any) string {
	var sb strings.Builder
	var first time.Time
	for i, l := range logs {
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
		total, _ := l["t_total"].(float64)
		req, _ := l["t_request"].(float64)
		conn, _ := l["t_connect"].(float64)
		if err != nil {
			fmt.Fprintf(&sb, "%v: %v\n", l["path"], err)
			continue
		}
		head := at.Add(time.Duration((req - total) * float64(time.Millisecond)))
		if i == 0 {
			first = head
		}
		fmt.Fprintf(&sb, "%v: head read at %.1fms, server at %.1fms\n", l["path"],
			float64(head.Sub(first))/float64(time.Millisecond), float64(head.Sub(first))/float64(time.Millisecond)+conn)
	}
	return sb.String()
}

// TestHTTPQueueTimeout covers what TestHTTPErrorStatuses/queue does not:
// a queue timeout inherited from [defaults.timeout], the queue going on
// after its head timed out, a timed-out request never reaching the server
// and taking no slot with it, and queue = "0s".
func TestHTTPQueueTimeout(t *testing.T) {
	dflt := newGate(0)
	dfltSrv := startHTTPBackendFunc(t, "d1", dflt.handle)
	off := newGate(0)
	offSrv := startHTTPBackendFunc(t, "o1", off.handle)
	const frontend = `
[[frontend.route]]
backend = "off"
path_prefix = ["/off/"]
`
	// httpConfig's [defaults.timeout] has queue = "1s"; "app" inherits it.
	backends := queueBackend("app", "", dfltSrv) + queueBackend("off", "[backend.timeout]\nqueue = \"0s\"\n", offSrv)
	p, addr := startHTTPLB(t, "", frontend, backends)

	t.Run("inherited from defaults", func(t *testing.T) {
		held := getAsync(addr, "/hold")
		dflt.waitIn(t, "/hold")
		timedOut := getAsync(addr, "/timed-out")
		// The second waiter comes 500ms later: its 1s runs until 1.5s,
		// after the first one's ends and after the slot frees (below).
		time.Sleep(500 * time.Millisecond)
		later := getAsync(addr, "/later")

		q := await(t, "the request that waited 1s", timedOut)
		if q.r.StatusCode != 503 || !strings.HasPrefix(q.r.body, "lb: ") || !q.r.closed {
			t.Errorf("a request queued for timeout.queue: %d %q (connection closed: %v), want 503 from lb, then the connection closed",
				q.r.StatusCode, q.r.body, q.r.closed)
		}
		if q.took < time.Second {
			t.Errorf("the queued request got its %d after %v, before timeout.queue (1s, from [defaults.timeout])", q.r.StatusCode, q.took)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == q.r.client })
		if logStatus(l) != 503 || l["end"] != "queue_timeout" || l["path"] != "/timed-out" {
			t.Errorf("access log %v: want /timed-out, status 503, end queue_timeout", l)
		}
		select {
		case r := <-later:
			t.Fatalf("the second waiter was answered (%+v) while the server was still full", r)
		default:
		}

		// The slot frees: it goes to the waiter still in the queue.
		close(dflt.release)
		if q := await(t, "the request that held the server", held); q.r.StatusCode != 200 {
			t.Errorf("the request that held the server: %d %q", q.r.StatusCode, q.r.body)
		}
		q = await(t, "the second waiter", later)
		if q.r.StatusCode != 200 {
			t.Errorf("a request still in the queue when the slot freed: %d %q, want 200", q.r.StatusCode, q.r.body)
		}
		// The timed-out request took no slot with it: the next one is
		// served, not queued and refused.
		if q := await(t, "a request after the queue emptied", getAsync(addr, "/after")); q.r.StatusCode != 200 {
			t.Errorf("a request after the queue emptied: %d %q, want 200", q.r.StatusCode, q.r.body)
		}
		if got, want := dfltSrv.seen(), []string{"/hold", "/later", "/after"}; !slices.Equal(got, want) {
			t.Errorf("the server got %q, want %q (never the request that timed out)", got, want)
		}
		if m := dflt.most.Load(); m != 1 {
			t.Errorf("the server of maxconn 1 had %d requests at once", m)
		}
	})

	t.Run("queue 0s", func(t *testing.T) {
		held := getAsync(addr, "/off/hold")
		off.waitIn(t, "/off/hold")
		q := await(t, "a request to a full server, queue 0s", getAsync(addr, "/off/refused"))
		if q.r.StatusCode != 503 || !strings.HasPrefix(q.r.body, "lb: ") {
			t.Errorf("a request to a full server with queue 0s: %d %q, want 503 from lb", q.r.StatusCode, q.r.body)
		}
		l := waitRequestLog(t, p, func(l map[string]any) bool { return l["client"] == q.r.client })
		if logStatus(l) != 503 || l["end"] != "no_server" {
			t.Errorf("access log %v: want status 503, end no_server", l)
		}
		close(off.release)
		if q := await(t, "the request that held the server", held); q.r.StatusCode != 200 {
			t.Errorf("the request that held the server: %d %q", q.r.StatusCode, q.r.body)
		}
		if got, want := offSrv.seen(), []string{"/off/hold"}; !slices.Equal(got, want) {
			t.Errorf("the server got %q, want %q", got, want)
		}
	})
}

// TestHTTPQueueStreamReset resets an HTTP/2 stream whose request waits in
// the queue: it leaves the queue at once, never reaches the server, and
// the waiter behind it gets the slot.
func TestHTTPQueueStreamReset(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "q", "q.test")
	g := newGate(0)
	s := startHTTPBackendFunc(t, "s1", g.handle)
	frontend := fmt.Sprintf("\n[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n", crt, key)
	p, addr := startHTTPLB(t, "", frontend, queueBackend("app", "[backend.timeout]\nqueue = \"5s\"\n", s))

	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "q.test", RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	type result struct {
		status int
		proto  string
		err    error
	}
	get := func(ctx context.Context, path string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			req, err := http.NewRequestWithContext(ctx, "GET", "https://"+addr+path, nil)
			if err != nil {
				ch <- result{err: err}
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				ch <- result{err: err}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ch <- result{resp.StatusCode, resp.Proto, err}
		}()
		return ch
	}
	wait := func(what string, ch <-chan result) result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no answer within 15s", what)
			return result{}
		}
	}

	held := get(context.Background(), "/hold")
	g.waitIn(t, "/hold")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reset := get(ctx, "/reset")
	time.Sleep(200 * time.Millisecond)
	behind := get(context.Background(), "/behind")
	time.Sleep(200 * time.Millisecond)
	cancelled := time.Now()
	cancel()
	if r := wait("the reset request", reset); r.err == nil {
		t.Errorf("the request whose stream the client reset got %d", r.status)
	}
	l := waitRequestLog(t, p, func(l map[string]any) bool { return l["path"] == "/reset" })
	if took := time.Since(cancelled); took > 3*time.Second {
		t.Errorf("the reset stream left the queue %v after the reset, not at once (queue 5s)", took)
	}
	if l["end"] != "client_aborted" {
		t.Errorf("access log %v: want end client_aborted", l)
	}
	close(g.release)
	if r := wait("the request that held the server", held); r.err != nil || r.status != 200 || r.proto != "HTTP/2.0" {
		t.Errorf("the request that held the server: %+v, want 200 over HTTP/2", r)
	}
	if r := wait("the request behind the reset one", behind); r.err != nil || r.status != 200 {
		t.Errorf("the request queued behind the reset one: %+v, want 200", r)
	}
	if got, want := s.seen(), []string{"/hold", "/behind"}; !slices.Equal(got, want) {
		t.Errorf("the server got %q, want %q", got, want)
	}
}

// tcpQueueLB starts lb in TCP mode in front of one startServer of maxconn
// 1, with backend.timeout.queue = queue and no health check (whose
// connections the server would count), and returns lb, its address and
// the server.
func tcpQueueLB(t *testing.T, queue string) (*lbProc, string, *server) {
	t.Helper()
	s := startServer(t, "s1")
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, config(port, fmt.Sprintf("[backend.timeout]\nqueue = %q\n[backend.check]\ntype = \"none\"\n", queue),
		serverLine("s1", s.addr(), "maxconn = 1"))))
	return p, fmt.Sprintf("127.0.0.1:%d", port), s
}

// dialQueued connects to lb and checks that, for 200ms, no byte comes:
// the connection waits in the queue.
func dialQueued(t *testing.T, addr, what string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() { c.Close() })
	expectSilent(t, c, what)
	return c
}

// expectSilent fails the test if c gets a byte, or ends, within 200ms.
func expectSilent(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [64]byte
	if n, err := c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s, queued behind a full server: read %q, %v; want nothing until a slot frees", what, b[:n], err)
	}
}

// expectServed reads the server's name line on c, within 5 s, and checks
// the echo.
func expectServed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "s1\n" {
		t.Fatalf("%s: got %q, %v; want the server's name", what, line, err)
	}
	msg := what + "\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got, err := br.ReadString('\n'); got != msg || err != nil {
		t.Fatalf("%s: echo %q, %v; want %q", what, got, err, msg)
	}
}

// TestTCPQueue queues connections behind a server that takes one at a
// time: they are accepted and wait, silent, and each slot that frees goes
// to the one that waited longest.
func TestTCPQueue(t *testing.T) {
	p, addr, s := tcpQueueLB(t, "5s")
	name, a := holdConn(t, addr)
	t.Cleanup(func() { a.Close() })
	if name != "s1" {
		t.Fatalf("first connection answered by %q", name)
	}
	// Each dialQueued waits 200ms: b is queued before c, c before d.
	b := dialQueued(t, addr, "b")
	c := dialQueued(t, addr, "c")
	d := dialQueued(t, addr, "d")
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("the server of maxconn 1 accepted %d connections", n)
	}

	a.Close()
	expectServed(t, b, "b")
	expectSilent(t, c, "c, after a closed")
	expectSilent(t, d, "d, after a closed")
	b.Close()
	expectServed(t, c, "c")
	expectSilent(t, d, "d, after b closed")
	c.Close()
	expectServed(t, d, "d")
	d.Close()
	if n := s.accepted.Load(); n != 4 {
		t.Errorf("the server accepted %d connections, want 4", n)
	}
	for _, conn := range []net.Conn{b, c, d} {
		client := conn.LocalAddr().String()
		l := waitLog(t, p, "connection", func(l map[string]any) bool { return l["client"] == client })
		if l["end"] != "client_closed" || l["server"] != "s1" {
			t.Errorf("log %v: want server s1, end client_closed", l)
		}
	}
}

// TestTCPQueueTimeout checks that a connection that waits timeout.queue
// for a full server is closed and logged as queue_timeout, and that with
// queue = "0s" it is closed at once as no_server.
func TestTCPQueueTimeout(t *testing.T) {
	for _, tc := range []struct {
		queue   string
		minTime time.Duration
		end     string
	}{
		{"300ms", 300 * time.Millisecond, "queue_timeout"},
		{"0s", 0, "no_server"},
	} {
		t.Run("queue "+tc.queue, func(t *testing.T) {
			p, addr, s := tcpQueueLB(t, tc.queue)
			_, a := holdConn(t, addr)
			t.Cleanup(func() { a.Close() })

			start := time.Now()
			b, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := b.Read(make([]byte, 64))
			took := time.Since(start)
			if n != 0 || err != io.EOF {
				t.Fatalf("a connection behind a full server (queue %s): read %d bytes, %v after %v; want it closed", tc.queue, n, err, took)
			}
			if took < tc.minTime {
				t.Errorf("closed after %v, before timeout.queue (%s)", took, tc.queue)
			}
			client := b.LocalAddr().String()
			l := waitLog(t, p, "connection", func(l map[string]any) bool { return l["client"] == client })
			if l["end"] != tc.end || l["level"] != "warn" || l["server"] != nil {
				t.Errorf("log %v: want level warn, end %s, no server", l, tc.end)
			}
			if n := s.accepted.Load(); n != 1 {
				t.Errorf("the server of maxconn 1 accepted %d connections", n)
			}
			// The connection that held the slot is still served, and once
			// it is gone a new one gets the slot: the one that gave up took
			// none with it.
			msg := "still here\n"
			_ = a.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(a, msg); err != nil {
				t.Fatal(err)
			}
			if got, err := bufio.NewReader(a).ReadString('\n'); got != msg || err != nil {
				t.Errorf("the connection that held the server: echo %q, %v", got, err)
			}
			a.Close()
			var got string
			for i := 0; i < 50; i++ {
				// lb frees a's slot once it sees a's end: until then a new
				// connection may be closed (queue 0s).
				if got = tryWhoAnswers(addr); got == "s1" {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got != "s1" {
				t.Errorf("after the slot freed, a new connection: %q, want s1", got)
			}
		})
	}
}

// tryWhoAnswers connects to addr and returns the line the server sends
// first, or the error.
func tryWhoAnswers(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSuffix(line, "\n")
}
