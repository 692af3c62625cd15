package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lb/internal/testcert"
)

// HTTP mode across reloads: lb -D -p PIDFILE -sf $(cat PIDFILE), as the
// daemons type runs it, in front of real net/http servers.

// hrBackend is a real HTTP server on loopback. It names itself in the
// X-Server header and in the body, reports the request body's length in
// X-Body-Len, answers /health with 200 (503 once sick), and holds /slow
// requests until release.
type hrBackend struct {
	name    string
	srv     *httptest.Server
	sick    atomic.Bool
	slowIn  chan struct{}
	release chan struct{}
	once    sync.Once
}

func hrStartBackend(t *testing.T, name string) *hrBackend {
	t.Helper()
	b := &hrBackend{name: name, slowIn: make(chan struct{}, 16), release: make(chan struct{})}
	b.srv = httptest.NewServer(b)
	t.Cleanup(func() {
		b.unblock()
		b.srv.Close()
	})
	return b
}

func (b *hrBackend) addr() string { return b.srv.Listener.Addr().String() }

// unblock lets every /slow request answer.
func (b *hrBackend) unblock() { b.once.Do(func() { close(b.release) }) }

func (b *hrBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		if b.sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return
	case "/slow":
		b.slowIn <- struct{}{}
		select {
		case <-b.release:
		case <-time.After(20 * time.Second):
		}
	}
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Server", b.name)
	w.Header().Set("X-Body-Len", strconv.FormatInt(n, 10))
	_, _ = io.WriteString(w, b.name)
}

// hrConfig is an HTTP-mode configuration for d: one frontend "web" (plus
// the frontend keys and tables given) and the backend "app" with the keys
// and tables given (checks off unless they set [backend.check]) and the
// servers. Idle keep-alive connections of a stopping generation close over
// spread.
func hrConfig(d *daemons, spread, frontend, backend string, bs ...*hrBackend) string {
	if !strings.Contains(backend, "[backend.check]") {
		backend += "\n[backend.check]\ntype = \"none\"\n"
	}
	var servers strings.Builder
	for _, b := range bs {
		servers.WriteString(serverLine(b.name, b.addr(), ""))
	}
	return daemonConfigMode(d.dir, d.port, fmt.Sprintf("close_spread_time = %q", spread), "http", frontend,
		backend+"\n"+servers.String())
}

// hrServed checks a response of an hrBackend through lb: 200, a body naming
// the server, the same name in X-Server. It returns the name and closes the
// body.
func hrServed(resp *http.Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("status %d, reading the body: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	if len(body) == 0 || resp.Header.Get("X-Server") != string(body) {
		return "", fmt.Errorf("body %q, X-Server %q: not one of the servers", body, resp.Header.Get("X-Server"))
	}
	return string(body), nil
}

// hrTally counts the requests of a group of clients.
type hrTally struct {
	ok, failed atomic.Int64
	// conns counts the connections the clients opened; retried counts
	// requests the client sent again on a new connection after a reused
	// one failed (two or more connections for one request).
	conns, retried atomic.Int64
	// onReused counts the failures that were the client's transport
	// error on a connection it had used before (counted in failed too):
	// lb may close an idle keep-alive connection as a request arrives
	// (RFC 9112 9.3.1), and the client may, or may not, send it again.
	onReused atomic.Int64
	mu       sync.Mutex
	errs     []string
}

func (l *hrTally) fail(format string, args ...any) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 8 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

func (l *hrTally) String() string {
	return fmt.Sprintf("%d ok, %d failed (%d of them transport errors on a reused connection), %d connections opened, %d requests sent again on a new connection",
		l.ok.Load(), l.failed.Load(), l.onReused.Load(), l.conns.Load(), l.retried.Load())
}

// hrClientLoop sends requests made by mk with c until stop is closed, the
// deadline passes or max requests went, and tallies them in l. Between two
// requests it waits a random time up to pause: its connection is then idle
// now and then, when lb may close it.
func hrClientLoop(c *http.Client, l *hrTally, stop <-chan struct{}, deadline time.Time, max int, pause time.Duration, mk func(i int) *http.Request) {
	for i := 0; i < max && time.Now().Before(deadline); i++ {
		var wait <-chan time.Time
		if pause > 0 && i > 0 {
			wait = time.After(rand.N(pause))
		} else {
			ready := make(chan time.Time)
			close(ready)
			wait = ready
		}
		select {
		case <-stop:
			return
		case <-wait:
		}
		req := mk(i)
		var gots atomic.Int32
		var last atomic.Value  // the connection of the last try, described
		var reused atomic.Bool // the last try was on a reused connection
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				gots.Add(1)
				reused.Store(info.Reused)
				if !info.Reused {
					l.conns.Add(1)
					last.Store("a new connection " + info.Conn.LocalAddr().String())
				} else {
					last.Store(fmt.Sprintf("a reused connection %s, idle %v", info.Conn.LocalAddr(), info.IdleTime))
				}
			},
		}))
		resp, err := c.Do(req)
		if gots.Load() > 1 {
			l.retried.Add(1)
		}
		if err != nil && reused.Load() {
			l.onReused.Add(1)
		}
		if _, err := hrServed(resp, err); err != nil {
			l.fail("%s %s (%d tries, the last on %v): %v", req.Method, req.URL.Path, gots.Load(), last.Load(), err)
			continue
		}
		if want := req.Header.Get("X-Want-Len"); want != "" && resp.Header.Get("X-Body-Len") != want {
			l.fail("%s: the server got %s body bytes, want %s", req.URL.Path, resp.Header.Get("X-Body-Len"), want)
			continue
		}
		l.ok.Add(1)
	}
}

// hrCurlLoop runs curl, one invocation after the other, each sending batch
// GETs over the connection it keeps alive (curl opens a new one when lb
// closes it), until stop is closed or the deadline passes.
func hrCurlLoop(curl, base string, l *hrTally, stop <-chan struct{}, deadline time.Time, batch int) {
	for run := 0; run < 1000 && time.Now().Before(deadline); run++ {
		select {
		case <-stop:
			return
		default:
		}
		args := []string{"-sS", "--max-time", "10", "-w", "%{http_code} %{num_connects} %{exitcode} %{errormsg}\n"}
		for i := range batch {
			args = append(args, "-o", "/dev/null", fmt.Sprintf("%s/curl/%d/%d", base, run, i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, curl, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, _ := cmd.Output() // curl's exit status is that of its last transfer: each one is checked below
		cancel()
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != batch {
			l.fail("curl: %d result lines for %d URLs; stderr %q", len(lines), batch, stderr.String())
		}
		for _, line := range lines {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 {
				continue
			}
			if n, err := strconv.Atoi(f[1]); err == nil {
				l.conns.Add(int64(n))
				if n > 1 {
					l.retried.Add(1)
				}
			}
			if f[0] != "200" || f[2] != "0" {
				l.fail("curl: %s", line)
				continue
			}
			l.ok.Add(1)
		}
	}
}

// hrFastExit turns off, for the lb processes the test starts, the second
// the race detector's runtime sleeps before a process exits: every reload
// waits for the exit of the `lb -D` that launches the new generation.
// Race reports are still written, and still fail the test.
func hrFastExit(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// hrWaitOldGone waits for every generation but the current one to exit.
func hrWaitOldGone(t *testing.T, d *daemons, within time.Duration) {
	t.Helper()
	var old []int
	for p := range d.seen {
		if p != d.pid() {
			old = append(old, p)
		}
	}
	waitGoneWithin(t, within, "an old generation", old...)
}

// TestHTTPReloadStorm reloads lb 50 times while keep-alive clients send
// requests, some back to back (lb finds them busy at its soft stop), some
// with pauses (lb finds them idle): Go clients with GETs, and POSTs of 4 kB
// with and without an Idempotency-Key, and curl with GETs. No GET may fail:
// lb answers the busy connections with Connection: close, and the clients
// send a GET again when lb closed the idle connection under it. A POST may
// fail only that way, with a transport error on a reused connection: a
// client may not send a POST without the key again, and Go's client does
// not send a POST with the key again when the socket write of its body
// fails (net/http's transferWriter.doBodyCopy takes the write error for an
// error reading the body). Any failure on a new connection, or any error
// status, fails the test.
func TestHTTPReloadStorm(t *testing.T) {
	hrFastExit(t)
	s1, s2 := hrStartBackend(t, "s1"), hrStartBackend(t, "s2")
	d := newDaemons(t, "")
	d.writeConfig(hrConfig(d, "300ms", "", "", s1, s2))
	d.mustLaunch()
	base := "http://" + d.addr()

	stop := make(chan struct{})
	deadline := guardDeadline(t, 3*time.Minute)
	var wg sync.WaitGroup
	// halt stops the clients, also when the test fails half-way.
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(halt)
	var gets, keyed, bare, curled hrTally
	// Half the clients send back to back: lb finds their connections busy
	// when it soft-stops, and answers with Connection: close. The others
	// pause, so lb also finds their connections idle, and closes them.
	pause := func(i int) time.Duration { return time.Duration(i%2) * 20 * time.Millisecond }
	const getClients = 6
	perClient := make([]*hrTally, getClients)
	for i := range getClients {
		perClient[i] = &hrTally{}
		c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
		t.Cleanup(c.CloseIdleConnections)
		wg.Go(func() {
			hrClientLoop(c, perClient[i], stop, deadline, 1_000_000, pause(i), func(n int) *http.Request {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/get/%d/%d", base, i, n), nil)
				return req
			})
		})
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	post := func(i int, key bool) func(n int) *http.Request {
		return func(n int) *http.Request {
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/post/%d/%d", base, i, n), bytes.NewReader(body))
			req.Header.Set("X-Want-Len", strconv.Itoa(len(body)))
			if key {
				req.Header.Set("Idempotency-Key", fmt.Sprintf("%d-%d", i, n))
			}
			return req
		}
	}
	for i := range 3 {
		c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
		t.Cleanup(c.CloseIdleConnections)
		l, key := &keyed, true
		if i == 2 {
			l, key = &bare, false
		}
		wg.Go(func() { hrClientLoop(c, l, stop, deadline, 1_000_000, pause(i+1), post(i, key)) })
	}
	curl := lookTool(t, "curl", "apt-get install curl")
	wg.Go(func() { hrCurlLoop(curl, base, &curled, stop, deadline, 200) })

	const reloads = 50
	start := time.Now()
	for i := range reloads {
		if time.Now().After(deadline) {
			halt()
			t.Fatalf("only %d reloads before the test's guard ran out", i)
		}
		time.Sleep(time.Duration(100+rand.IntN(100)) * time.Millisecond)
		d.mustLaunch()
	}
	time.Sleep(300 * time.Millisecond)
	halt()
	took := time.Since(start)

	for i, l := range perClient {
		gets.ok.Add(l.ok.Load())
		gets.failed.Add(l.failed.Load())
		gets.conns.Add(l.conns.Load())
		gets.retried.Add(l.retried.Load())
		gets.onReused.Add(l.onReused.Load())
		gets.errs = append(gets.errs, l.errs...)
		// Each reload closes the connection of a client that never idles
		// (Connection: close on its next response): a client that kept
		// one connection through the storm stayed on an old generation.
		if l.conns.Load() < reloads/2 {
			t.Errorf("GET client %d opened %d connections in %d reloads: lb did not close its old generations' connections", i, l.conns.Load(), reloads)
		}
	}
	t.Logf("%d reloads in %v", reloads, took.Round(time.Millisecond))
	t.Logf("GET (%d Go clients): %v", getClients, &gets)
	t.Logf("POST with Idempotency-Key (2 Go clients): %v; first errors: %q", &keyed, keyed.errs)
	t.Logf("POST without Idempotency-Key (1 Go client): %v; first errors: %q", &bare, bare.errs)
	t.Logf("curl GET: %v", &curled)
	for _, g := range []struct {
		what string
		l    *hrTally
		min  int64
		// idleRace excuses the failures on a reused connection.
		idleRace bool
	}{
		{"GET", &gets, 1000, false},
		{"curl GET", &curled, 500, false},
		{"POST with Idempotency-Key", &keyed, 500, true},
		{"POST without Idempotency-Key", &bare, 100, true},
	} {
		n := g.l.failed.Load()
		if g.idleRace {
			n -= g.l.onReused.Load()
		}
		if n != 0 {
			t.Errorf("%s: %d of %d requests failed across %d reloads (not counting %d transport errors on reused connections); first errors:\n%s",
				g.what, n, g.l.failed.Load()+g.l.ok.Load(), reloads, g.l.failed.Load()-n, strings.Join(g.l.errs, "\n"))
		}
		if g.l.ok.Load() < g.min {
			t.Errorf("%s: only %d requests went through: too thin a load to prove anything", g.what, g.l.ok.Load())
		}
		// A retry, or an excused failure, answers one race: lb closed an
		// idle connection as the client sent on it, at most once per
		// client and reload, and rarely (a few in 50 reloads here). More
		// means lb broke connections it should have closed cleanly, which
		// the clients' retries would hide.
		if r := g.l.retried.Load() + g.l.onReused.Load(); r > reloads {
			t.Errorf("%s: %d requests sent again or failed on a reused connection in %d reloads, want at most one per reload", g.what, r, reloads)
		}
	}
	info := adminQuery(t, d.adminSock, "show info")
	if !strings.Contains(info, fmt.Sprintf("generation: %d\n", reloads+1)) || !strings.Contains(info, "state: serving") {
		t.Errorf("show info after %d reloads:\n%s", reloads, info)
	}
	hrWaitOldGone(t, d, 20*time.Second)
}

// TestHTTPReloadH2 sends HTTP/2 requests (over TLS, several streams at a
// time on one connection) through 20 reloads: the old generation's GOAWAY
// sends the clients to the new one without a failed request.
func TestHTTPReloadH2(t *testing.T) {
	hrFastExit(t)
	s1, s2 := hrStartBackend(t, "s1"), hrStartBackend(t, "s2")
	d := newDaemons(t, "")
	ca := testcert.NewCA(t)
	certFile, keyFile := ca.WriteLeaf(t, d.dir, "lb", "127.0.0.1")
	tlsTable := fmt.Sprintf("[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n", certFile, keyFile)
	d.writeConfig(hrConfig(d, "300ms", tlsTable, "", s1, s2))
	d.mustLaunch()
	base := "https://" + d.addr()

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := c.Get(base + "/first")
	if _, err := hrServed(resp, err); err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("the client speaks %s to lb, want HTTP/2", resp.Proto)
	}

	stop := make(chan struct{})
	deadline := guardDeadline(t, 2*time.Minute)
	var wg sync.WaitGroup
	// halt stops the clients, also when the test fails half-way.
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(halt)
	var gets, posts hrTally
	var notH2 atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			hrClientLoop(c, &gets, stop, deadline, 1_000_000, 0, func(n int) *http.Request {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/h2/%d/%d", base, g, n), nil)
				return req
			})
		})
	}
	body := bytes.Repeat([]byte("x"), 10_000)
	wg.Go(func() {
		hrClientLoop(c, &posts, stop, deadline, 1_000_000, 0, func(n int) *http.Request {
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/h2post/%d", base, n), bytes.NewReader(body))
			req.Header.Set("X-Want-Len", strconv.Itoa(len(body)))
			return req
		})
	})
	// A probe that checks the protocol now and then.
	wg.Go(func() {
		for i := 0; i < 10_000 && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := c.Get(base + "/proto")
			if err == nil {
				if resp.ProtoMajor != 2 {
					notH2.Add(1)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})

	const reloads = 20
	for i := range reloads {
		if time.Now().After(deadline) {
			halt()
			t.Fatalf("only %d reloads before the test's guard ran out", i)
		}
		time.Sleep(time.Duration(100+rand.IntN(100)) * time.Millisecond)
		d.mustLaunch()
	}
	time.Sleep(300 * time.Millisecond)
	halt()
	t.Logf("HTTP/2 GET (4 goroutines, one transport): %v", &gets)
	t.Logf("HTTP/2 POST, 10 kB body, no Idempotency-Key: %v", &posts)
	for _, g := range []struct {
		what string
		l    *hrTally
		min  int64
	}{{"HTTP/2 GET", &gets, 500}, {"HTTP/2 POST", &posts, 50}} {
		if n := g.l.failed.Load(); n != 0 {
			t.Errorf("%s: %d of %d requests failed across %d reloads; first errors:\n%s", g.what, n, n+g.l.ok.Load(), reloads, strings.Join(g.l.errs, "\n"))
		}
		if g.l.ok.Load() < g.min {
			t.Errorf("%s: only %d requests went through", g.what, g.l.ok.Load())
		}
	}
	if n := notH2.Load(); n != 0 {
		t.Errorf("%d probes were not answered over HTTP/2", n)
	}
	// Each reload's GOAWAY moves the clients to a new connection, whose
	// first request is a GET or a POST.
	if n := gets.conns.Load() + posts.conns.Load(); n < reloads/2 {
		t.Errorf("the HTTP/2 client opened %d connections in %d reloads: no GOAWAY moved it to the new generations", n, reloads)
	}
	hrWaitOldGone(t, d, 20*time.Second)
}

// hrRawResponse is a response read off the wire as sent.
type hrRawResponse struct {
	status int
	header textproto.MIMEHeader
	body   string
}

// hrRawRequest sends a GET for path on c, keep-alive, and reads the
// response.
func hrRawRequest(c net.Conn, br *bufio.Reader, path string) (*hrRawResponse, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: lb.test\r\n\r\n", path); err != nil {
		return nil, err
	}
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, fmt.Errorf("status line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "HTTP/1.1" {
		return nil, fmt.Errorf("status line %q", line)
	}
	r := &hrRawResponse{}
	if r.status, err = strconv.Atoi(f[1]); err != nil {
		return nil, fmt.Errorf("status line %q", line)
	}
	if r.header, err = tp.ReadMIMEHeader(); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var body io.Reader
	switch {
	case r.header.Get("Transfer-Encoding") == "chunked":
		body = httputil.NewChunkedReader(br)
	case r.header.Get("Content-Length") != "":
		n, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("Content-Length %q", r.header.Get("Content-Length"))
		}
		body = io.LimitReader(br, n)
	default:
		return nil, fmt.Errorf("a response without framing: %v", r.header)
	}
	b, err := io.ReadAll(body)
	r.body = string(b)
	return r, err
}

// hrLogTime returns the time of the first line of the log whose message is
// msg, written by pid.
func hrLogTime(t *testing.T, d *daemons, pid int, msg string) (time.Time, bool) {
	t.Helper()
	for line := range strings.SplitSeq(d.log(), "\n") {
		var m struct {
			Time    string `json:"time"`
			Pid     int    `json:"pid"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Pid != pid || m.Message != msg {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z07:00", m.Time)
		if err != nil {
			t.Fatalf("log line %s: time: %v", line, err)
		}
		return ts, true
	}
	return time.Time{}, false
}

// TestHTTPSoftStopOnReload follows one reload closely: the request in
// flight on the old generation completes, with Connection: close; the old
// generation's idle keep-alive connections close at moments spread over
// close_spread_time, not at once; the old generation exits once its last
// connection is done, and not before.
func TestHTTPSoftStopOnReload(t *testing.T) {
	hrFastExit(t)
	const spread = time.Second
	s := hrStartBackend(t, "s1")
	d := newDaemons(t, "")
	d.writeConfig(hrConfig(d, spread.String(), "", "", s))
	first := d.mustLaunch()

	// 20 idle keep-alive connections, one request each, on the first
	// generation; each records when lb closes it.
	const idle = 20
	type closed struct {
		at  time.Time
		err error
	}
	closedCh := make(chan closed, idle)
	for i := range idle {
		c, err := net.DialTimeout("tcp", d.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		r, err := hrRawRequest(c, br, fmt.Sprintf("/idle/%d", i))
		if err != nil || r.status != 200 || r.header.Get("Connection") != "" {
			t.Fatalf("idle connection %d, its request: %+v, %v", i, r, err)
		}
		go func() {
			_, err := br.ReadByte()
			closedCh <- closed{time.Now(), err}
		}()
	}
	// And a busy one: its request waits on the server until released.
	busy, err := net.DialTimeout("tcp", d.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_ = busy.SetDeadline(time.Now().Add(30 * time.Second))
	busyBR := bufio.NewReader(busy)
	type result struct {
		r   *hrRawResponse
		err error
	}
	busyDone := make(chan result, 1)
	go func() {
		r, err := hrRawRequest(busy, busyBR, "/slow")
		busyDone <- result{r, err}
	}()
	select {
	case <-s.slowIn:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the server")
	}

	beforeReload := time.Now()
	second := d.mustLaunch()
	var stopAt time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		var ok bool
		if stopAt, ok = hrLogTime(t, d, first, "soft stop: draining"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first generation did not log its soft stop:\n%s", d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// (b) The idle connections close over the spread.
	var times []time.Time
	timeout := time.After(spread + 10*time.Second)
	for range idle {
		select {
		case c := <-closedCh:
			if c.err != io.EOF {
				t.Errorf("an idle connection ended with %v, want a clean close (EOF)", c.err)
			}
			times = append(times, c.at)
		case <-timeout:
			t.Fatalf("only %d of %d idle connections closed within %v of the reload", len(times), idle, spread+10*time.Second)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	firstClose, lastClose := times[0].Sub(stopAt), times[idle-1].Sub(stopAt)
	t.Logf("the %d idle connections closed from %v to %v after the soft stop (close_spread_time %v)",
		idle, firstClose.Round(time.Millisecond), lastClose.Round(time.Millisecond), spread)
	// Log times have millisecond precision, and the process may lag a
	// little under the race detector.
	if times[0].Before(beforeReload) || firstClose < -5*time.Millisecond {
		t.Errorf("an idle connection closed %v before the soft stop", -firstClose)
	}
	if lastClose > spread+500*time.Millisecond {
		t.Errorf("the last idle connection closed %v after the soft stop, want within close_spread_time %v (+500ms)", lastClose, spread)
	}
	if got := times[idle-1].Sub(times[0]); got < spread/3 {
		t.Errorf("the %d idle connections closed within %v of each other: not spread over close_spread_time %v", idle, got, spread)
	}

	// (c) The old generation waits for the request in flight.
	if !alive(first) {
		t.Fatal("the old generation exited with a request in flight")
	}
	select {
	case r := <-busyDone:
		t.Fatalf("the busy connection ended before its server answered: %+v, %v", r.r, r.err)
	default:
	}
	s.unblock()
	// (a) It completes, and tells the client to go.
	var r result
	select {
	case r = <-busyDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not complete")
	}
	if r.err != nil || r.r.status != 200 || r.r.body != "s1" {
		t.Fatalf("the request in flight during the reload: %+v, %v", r.r, r.err)
	}
	if got := r.r.header.Get("Connection"); got != "close" {
		t.Errorf("the response to the request in flight has Connection %q, want close", got)
	}
	if _, err := busyBR.ReadByte(); err != io.EOF {
		t.Errorf("after its Connection: close response, the busy connection: %v, want EOF", err)
	}
	waitGoneWithin(t, 5*time.Second, "the old generation once its last connection ended", first)
	if _, ok := hrLogTime(t, d, first, "drained: every connection has ended"); !ok {
		t.Errorf("the old generation did not log that it drained:\n%s", d.log())
	}
	// The new generation serves a keep-alive connection as usual.
	c, err := net.DialTimeout("tcp", d.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		r, err := hrRawRequest(c, br, "/after")
		if err != nil || r.status != 200 || r.header.Get("Connection") != "" {
			t.Fatalf("request %d to generation %d: %+v, %v", i, second, r, err)
		}
	}
}

// hrVisit sends a GET with c and returns the server that answered and the
// LBSRV cookies lb set.
func hrVisit(t *testing.T, c *http.Client, url string) (string, []string) {
	t.Helper()
	resp, err := c.Get(url)
	var set []string
	if err == nil {
		set = resp.Header.Values("Set-Cookie")
	}
	name, err := hrServed(resp, err)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return name, set
}

// TestHTTPStickyCookieAcrossReloads: a client stuck to a server by lb's
// cookie stays on it through reloads; when the server goes down it moves,
// gets a new cookie and stays on the new server through reloads. A drained
// server keeps its stuck clients and takes no new ones, across a reload
// too.
func TestHTTPStickyCookieAcrossReloads(t *testing.T) {
	hrFastExit(t)
	bs := []*hrBackend{hrStartBackend(t, "s1"), hrStartBackend(t, "s2"), hrStartBackend(t, "s3")}
	byName := map[string]*hrBackend{}
	for _, b := range bs {
		byName[b.name] = b
	}
	d := newDaemons(t, "")
	d.writeConfig(hrConfig(d, "300ms", "", `cookie = "LBSRV"
[backend.check]
type = "http"
path = "/health"
interval = "100ms"
timeout = "500ms"
rise = 1
fall = 1
`, bs...))
	d.mustLaunch()
	for _, b := range bs {
		waitHealth(t, d, b.name, "up")
	}
	url := "http://" + d.addr() + "/page"
	newClient := func(jar bool) *http.Client {
		c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
		if jar {
			c.Jar, _ = cookiejar.New(nil)
		}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}

	// Without the cookie, requests go round the servers: what keeps the
	// client below on one is the cookie.
	anon := newClient(false)
	seen := map[string]bool{}
	for range 6 {
		name, set := hrVisit(t, anon, url)
		seen[name] = true
		if want := "LBSRV=" + name + "; Path=/; HttpOnly"; !slices.Contains(set, want) {
			t.Fatalf("a client without the cookie got Set-Cookie %q, want %q", set, want)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("6 requests without the cookie went to %v only", seen)
	}

	c := newClient(true)
	first, _ := hrVisit(t, c, url)
	stayOn := func(want string, reloads int) {
		t.Helper()
		for i := range reloads + 1 {
			if i > 0 {
				d.mustLaunch()
			}
			for range 3 {
				name, set := hrVisit(t, c, url)
				if name != want {
					t.Fatalf("after %d reloads the client stuck to %s was answered by %s", i, want, name)
				}
				if len(set) != 0 {
					t.Fatalf("after %d reloads the client stuck to %s got Set-Cookie %q again", i, want, set)
				}
			}
		}
	}
	stayOn(first, 10)

	// Its server goes down: it moves, gets a new cookie, and stays.
	byName[first].sick.Store(true)
	waitHealth(t, d, first, "down")
	moved, set := hrVisit(t, c, url)
	if moved == first {
		t.Fatalf("the client stayed on %s, which is down", first)
	}
	if want := "LBSRV=" + moved + "; Path=/; HttpOnly"; !slices.Contains(set, want) {
		t.Fatalf("moved to %s, the client got Set-Cookie %q, want %q", moved, set, want)
	}
	stayOn(moved, 5)

	// Drain its new server: it stays there; new clients go elsewhere.
	if got := adminQuery(t, d.adminSock, "set server app/"+moved+" state drain"); !strings.Contains(got, "is now drain") {
		t.Fatalf("set server app/%s state drain: %q", moved, got)
	}
	third := ""
	for _, b := range bs {
		if b.name != first && b.name != moved {
			third = b.name
		}
	}
	for i := range 3 {
		if i > 0 {
			d.mustLaunch() // the drain and the down server carry over
		}
		stayOn(moved, 0)
		for range 6 {
			if name, _ := hrVisit(t, newClient(false), url); name != third {
				t.Fatalf("after %d reloads, a new client went to %s: want %s (%s is down, %s drained)", i, name, third, first, moved)
			}
		}
	}
}

// TestHTTPReloadKeepsHashMapping: with balance = "hash" on a header, each
// key goes to the same server before and after reloads, and keys spread
// over the servers.
func TestHTTPReloadKeepsHashMapping(t *testing.T) {
	hrFastExit(t)
	bs := []*hrBackend{hrStartBackend(t, "s1"), hrStartBackend(t, "s2"), hrStartBackend(t, "s3")}
	d := newDaemons(t, "")
	d.writeConfig(hrConfig(d, "300ms", "", "balance = \"hash\"\nhash_key = \"header:X-User\"\n", bs...))
	d.mustLaunch()
	c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	url := "http://" + d.addr() + "/hash"
	who := func(user string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-User", user)
		name, err := hrServed(c.Do(req))
		if err != nil {
			t.Fatalf("user %s: %v", user, err)
		}
		return name
	}
	const users = 40
	mapping := map[string]string{}
	count := map[string]int{}
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		mapping[u] = who(u)
		count[mapping[u]]++
	}
	if len(count) != len(bs) {
		t.Fatalf("%d users went to %v: the hash does not spread them", users, count)
	}
	t.Logf("users per server: %v", count)
	for r := 0; r <= 3; r++ {
		if r > 0 {
			d.mustLaunch()
		}
		for u, want := range mapping {
			if got := who(u); got != want {
				t.Fatalf("after %d reloads, %s went to %s, before to %s", r, u, got, want)
			}
		}
	}
}

// TestHTTPSoftStopServesAFirstRequest: a client that connected to the old
// generation just before the reload, and whose first request comes after
// the soft stop, is served (with Connection: close). Closing that
// connection instead fails the request at the client: a client sends a
// request again only when a connection it had used before closes, since
// on a new one it cannot tell a closed idle connection from a refusal
// (RFC 9112 9.3.1). lb's own waitRequest gives first requests
// timeout.http_request, not the close spread.
func TestHTTPSoftStopServesAFirstRequest(t *testing.T) {
	hrFastExit(t)
	const spread = 300 * time.Millisecond
	s := hrStartBackend(t, "s1")
	d := newDaemons(t, "")
	d.writeConfig(hrConfig(d, spread.String(), "", "", s))
	first := d.mustLaunch()
	c, err := net.DialTimeout("tcp", d.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	// The first generation has accepted the connection.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(adminQuery(t, d.adminSock, "show info"), "connections: 1\n"); {
		if time.Now().After(deadline) {
			t.Fatalf("lb did not accept the connection:\n%s", adminQuery(t, d.adminSock, "show info"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.mustLaunch()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, ok := hrLogTime(t, d, first, "soft stop: draining"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first generation did not log its soft stop:\n%s", d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(spread + 200*time.Millisecond)
	r, err := hrRawRequest(c, bufio.NewReader(c), "/late-first")
	if err != nil {
		t.Fatalf("the first request on a connection accepted before the reload, sent %v after the soft stop: %v (lb closed the connection within close_spread_time, as if it were an idle keep-alive connection)", spread+200*time.Millisecond, err)
	}
	if r.status != 200 || r.body != "s1" || r.header.Get("Connection") != "close" {
		t.Fatalf("the first request after the soft stop: status %d, Connection %q, body %q; want 200, close, s1", r.status, r.header.Get("Connection"), r.body)
	}
	waitGoneWithin(t, 5*time.Second, "the old generation once its last connection ended", first)
}
