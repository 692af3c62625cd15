package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lb/internal/bench/benchutil"
)

func TestHistBuckets(t *testing.T) {
	check := func(v uint64) {
		i := bucketOf(v)
		if i < 0 || i >= nBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0, %d)", v, i, nBuckets)
		}
		lo, hi := bucketBounds(i)
		if v <= maxValue && (v < lo || v > hi) {
			t.Fatalf("value %d in bucket %d of [%d, %d]", v, i, lo, hi)
		}
		if hi > lo && float64(hi-lo+1)/float64(lo) > 1.0/64+1e-9 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/64", i, lo, hi)
		}
	}
	for v := uint64(0); v < 5000; v++ {
		check(v)
	}
	for range 100000 {
		check(rand.Uint64N(maxValue + 1))
	}
	check(maxValue)
	if bucketOf(maxValue+12345) != nBuckets-1 || bucketOf(1<<63) != nBuckets-1 {
		t.Error("values above maxValue are not in the last bucket")
	}
	// Consecutive buckets tile the values.
	for i := 1; i < nBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lo, i-1, prevHi)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var a, b hist
	if a.quantile(0.99) != 0 || a.mean() != 0 {
		t.Error("empty histogram: quantile or mean not 0")
	}
	// 1..10000 µs, split between two histograms that are then merged.
	for i := 1; i <= 10000; i++ {
		d := time.Duration(i) * time.Microsecond
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	if a.n != 10000 || a.min != uint64(time.Microsecond) || a.max != uint64(10*time.Millisecond) {
		t.Fatalf("merged: n %d min %d max %d", a.n, a.min, a.max)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := q * 10000 * float64(time.Microsecond)
		got := float64(a.quantile(q))
		if got < want*0.98 || got > want*1.02 {
			t.Errorf("quantile(%v) = %v, want %v ± 2%%", q, time.Duration(got), time.Duration(want))
		}
	}
	if m := a.mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v, want 5000.5µs", m)
	}
	var one hist
	one.record(42 * time.Millisecond)
	if one.quantile(0.5) != 42*time.Millisecond || one.quantile(0.999) != 42*time.Millisecond {
		t.Errorf("one value: quantiles %v %v, want it exactly", one.quantile(0.5), one.quantile(0.999))
	}
}

// startTestBackend starts a backend that stops with the test.
func startTestBackend(t *testing.T, name string, body int) *backend {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := startBackend(ctx, name, body)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		b.close()
	})
	return b
}

func TestLoadAgainstBackends(t *testing.T) {
	b1 := startTestBackend(t, "s1", 100)
	b2 := startTestBackend(t, "s2", 100)
	l := startLoad(context.Background(), []string{b1.addr(), b2.addr()}, 4, 100, 100*time.Millisecond, 300*time.Millisecond)
	res, err := l.wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ok == 0 || res.errors != 0 || res.reconnects != 0 || res.hist.n != res.ok {
		t.Fatalf("ok %d errors %d reconnects %d samples %d: want requests, no errors, no reconnects (%q)",
			res.ok, res.errors, res.reconnects, res.hist.n, res.samples)
	}
	if time.Until(l.end) > 0 {
		t.Error("wait returned before the end of the window")
	}
	// A body of another size is an error, counted, and the client
	// reconnects.
	l = startLoad(context.Background(), []string{b1.addr()}, 1, 99, 0, 100*time.Millisecond)
	res, err = l.wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ok != 0 || res.errors == 0 || res.reconnects == 0 || !strings.Contains(strings.Join(res.samples, "\n"), "body of 100 bytes, want 99") {
		t.Errorf("wrong body size: ok %d errors %d reconnects %d samples %q", res.ok, res.errors, res.reconnects, res.samples)
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	b := startTestBackend(t, "s1", 10)
	ctx, cancel := context.WithCancel(context.Background())
	l := startLoad(ctx, []string{b.addr()}, 8, 10, 0, time.Hour)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if !waitBounded(&l.wg, 10*time.Second) {
		t.Error("clients still running 10s after the cancel")
	}
}

func TestConnectErrorsCounted(t *testing.T) {
	port, err := benchutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(context.Background(), []string{fmt.Sprintf("127.0.0.1:%d", port)}, 2, 10, 0, 100*time.Millisecond)
	res, err := l.wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.errors == 0 || res.ok != 0 || !strings.Contains(res.samples[0], "connect:") {
		t.Errorf("nothing listening: ok %d errors %d samples %q", res.ok, res.errors, res.samples)
	}
	if res.errors > 100 {
		t.Errorf("%d connect errors in 100ms: the clients do not pause after a failed connect", res.errors)
	}
}

func TestReadResponse(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
		keep       bool
		err        string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, ""},
		{"chunked", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: 1\r\n\r\n", true, ""},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", false, ""},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, ""},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello", true, ""},
		{"status", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbad", false, "status 503"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhell", false, "body of 4 bytes, want 5"},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, "read body"},
		{"no length", "HTTP/1.1 200 OK\r\n\r\nhello", false, "without Content-Length"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", false, "malformed status line"},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false, "malformed header line"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, "bad chunk size"},
		{"closed", "", false, "connection closed"},
	} {
		keep, err := readResponse(bufio.NewReader(strings.NewReader(tt.resp)), 5)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		case err == nil && keep != tt.keep:
			t.Errorf("%s: keep-alive %v, want %v", tt.name, keep, tt.keep)
		}
	}
}

func TestBackendProtocol(t *testing.T) {
	b := startTestBackend(t, "s1", 3)
	c, err := net.DialTimeout("tcp4", b.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	// Two requests in one write (pipelined), one with a body, then one
	// asking to close.
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /p HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\nbody" +
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, wantKeep := range []bool{true, true, false} {
		keep, err := readResponse(r, 3)
		if err != nil || keep != wantKeep {
			t.Fatalf("response %d: keep-alive %v, %v; want %v", i+1, keep, err, wantKeep)
		}
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("the backend kept the connection open after Connection: close")
	}

	// HTTP/1.0 closes; chunked request bodies are refused.
	for _, tt := range []struct{ req, want string }{
		{"GET / HTTP/1.0\r\n\r\n", ""},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "status 501"},
	} {
		c, err := net.DialTimeout("tcp4", b.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(tt.req)); err != nil {
			t.Fatal(err)
		}
		keep, err := readResponse(bufio.NewReader(c), 3)
		c.Close()
		if tt.want == "" && (err != nil || keep) {
			t.Errorf("%q: keep-alive %v, %v; want a response and a close", tt.req, keep, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: %v, want %q", tt.req, err, tt.want)
		}
	}
	if err := probe(context.Background(), b.addr(), 3); err != nil {
		t.Errorf("probe: %v", err)
	}
}

func TestConfigs(t *testing.T) {
	b1 := startTestBackend(t, "s1", 1)
	b2 := startTestBackend(t, "s2", 1)
	bs := []*backend{b1, b2}
	lb := lbConfig(8080, bs)
	for _, want := range []string{
		"[global]\nlog_level = \"error\"\n",
		"[defaults]\nmode = \"http\"\n",
		"[defaults.timeout]\nconnect = \"5s\"\nclient = \"30s\"\nserver = \"30s\"\n",
		"[[frontend]]\nname = \"bench\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\n",
		"[[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n",
		"[backend.check]\ntype = \"none\"\n",
		fmt.Sprintf("[[backend.server]]\nname = \"s1\"\naddress = %q\n", b1.addr()),
		fmt.Sprintf("[[backend.server]]\nname = \"s2\"\naddress = %q\n", b2.addr()),
	} {
		if !strings.Contains(lb, want) {
			t.Errorf("lb config lacks %q:\n%s", want, lb)
		}
	}
	ha := haproxyConfig(8080, bs, 2)
	for _, want := range []string{"nbthread 2", "mode http", "option http-keep-alive", "http-reuse safe", "bind 127.0.0.1:8080",
		"server s1 " + b1.addr(), "server s2 " + b2.addr()} {
		if !strings.Contains(ha, want) {
			t.Errorf("HAProxy config lacks %q:\n%s", want, ha)
		}
	}
	if strings.Contains(haproxyConfig(8080, bs, 0), "nbthread") {
		t.Error("nbthread set with threads 0")
	}
	// HAProxy's own check, where it is installed.
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not installed: its check of the configuration skipped")
		return
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(ha), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	}
}

func TestProc(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	// A process that exits at once: reported with its output.
	p, err := startProc("failing", "/bin/sh", []string{"-c", "echo 'bad config line 3' >&2; exit 3"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	err = p.waitReady(ctx, "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "failing exited (exit status 3) before listening") || !strings.Contains(err.Error(), "    bad config line 3") {
		t.Errorf("waitReady of a process that exits: %v", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("stop of an exited process: %v", err)
	}

	// A process that runs until stopped.
	port, err := benchutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err = startProc("sleeper", "/bin/sh", []string{"-c", "exec sleep 60"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var reg registry
	reg.add(p)
	if _, ok := p.cpu(); !ok {
		t.Error("no CPU time of a running process")
	}
	if gone, _ := p.exited(); gone {
		t.Fatal("sleeper exited")
	}
	// Nothing listens: waitReady gives up when ctx is done.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := p.waitReady(cctx, fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Error("waitReady succeeded with nothing listening")
	}
	start := time.Now()
	if errs := reg.stopAll(); len(errs) > 0 {
		t.Errorf("stopAll: %v", errs)
	}
	if took := time.Since(start); took > termWait {
		t.Errorf("stop took %v: SIGTERM was not enough", took)
	}
	if gone, how := p.exited(); !gone || !strings.Contains(how.Error(), "terminated") {
		t.Errorf("after stop: exited %v (%v), want terminated by SIGTERM", gone, how)
	}
}
