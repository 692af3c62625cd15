package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"lb/internal/bench/benchutil"
)

// wrkOut is what wrk 4.1.0 printed for a run with errors.
const wrkOut = `Running 10s test @ http://127.0.0.1:8080/bench
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   795.30us  200.51us  10.33ms   90.91%
    Req/Sec    62.71k     2.17k   66.44k    71.00%
  Latency Distribution
     50%  765.00us
     75%  847.00us
     90%    0.96ms
     99%    1.50ms
  624077 requests in 10.00s, 95.23MB read
  Socket errors: connect 0, read 3, write 0, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  62399.47
Transfer/sec:      9.52MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk([]byte(wrkOut))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{requests: 624077, duration: 10 * time.Second, reqPerSec: 62399.47,
		p50: 765 * time.Microsecond, p99: 1500 * time.Microsecond, socketErrors: 7, non2xx: 5}
	if r != want {
		t.Errorf("parseWrk:\n got %+v\nwant %+v", r, want)
	}
	if r.good() != 624072 || r.errors() != 12 {
		t.Errorf("good %d errors %d", r.good(), r.errors())
	}

	// A clean run, minutes long, without the optional lines.
	clean := "  1200000 requests in 1.00m, 95.23MB read\nRequests/sec:  20000.00\n"
	if r, err := parseWrk([]byte(clean)); err != nil || r.requests != 1200000 || r.duration != time.Minute || r.errors() != 0 {
		t.Errorf("clean run: %+v, %v", r, err)
	}

	for _, tt := range []struct{ name, out, err string }{
		{"empty", "", "requests in"},
		{"no rate", "  10 requests in 1.00s, 1MB read\n", "Requests/sec"},
		{"unable to connect", "unable to connect to 127.0.0.1:1 Connection refused\n", "requests in"},
		{"bad count", "  x requests in 1.00s, 1MB read\nRequests/sec: 1\n", "requests line"},
		{"bad duration", "  10 requests in 1.00parsecs, 1MB read\nRequests/sec: 1\n", "requests line"},
		{"bad socket errors", "  10 requests in 1.00s, 1MB read\n  Socket errors: connect x\nRequests/sec: 1\n", "socket errors"},
		{"bad latency", "  Latency Distribution\n     50%  soon\n", "latency line"},
		{"no time", "  10 requests in 0.00s, 1MB read\nRequests/sec: 1\n", "no time"},
	} {
		if _, err := parseWrk([]byte(tt.out)); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestWrkDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "10s", 1500 * time.Millisecond: "2s", 100 * time.Millisecond: "1s", 2 * time.Minute: "120s",
	} {
		if got := wrkDuration(d); got != want {
			t.Errorf("wrkDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestSummaries(t *testing.T) {
	nan := math.NaN()
	s := summarize([]float64{3, nan, 1, 2})
	if s != (summary{n: 3, median: 2, min: 1, max: 3}) {
		t.Errorf("summarize: %+v", s)
	}
	if s := summarize([]float64{4, 1, 3, 2}); s.median != 2.5 {
		t.Errorf("median of an even count: %v", s.median)
	}
	if got := summarize([]float64{nan}).cell(fmtF1); got != "-" {
		t.Errorf("empty cell: %q", got)
	}
	if got := summarize([]float64{1, 3, 2}).cell(fmtF1); got != "2.0 (1.0-3.0)" {
		t.Errorf("cell: %q", got)
	}
	if got := ratioCell([]float64{20, 30, nan}, []float64{10, 10, 10}); got != "2.50x (2.00-3.00)" {
		t.Errorf("ratio: %q", got)
	}
	if got := ratioCell([]float64{nan}, []float64{10}); got != "-" {
		t.Errorf("ratio without lb: %q", got)
	}

	rs := newResults(2)
	rs.set("k", "lb", 1, 5)
	rs.set("k", "lb", 7, 9)           // no such round
	rs.set("k", "lb", 0, math.Inf(1)) // not a figure
	if v := rs.perRound("k", "lb"); len(v) != 2 || !math.IsNaN(v[0]) || v[1] != 5 {
		t.Errorf("perRound: %v", v)
	}
}

func TestConfigs(t *testing.T) {
	fe := frontends{http: "127.0.0.1:18080", tcp: "127.0.0.1:18081", bulk: "127.0.0.1:18082", stats: "127.0.0.1:18083", limited: "127.0.0.1:18084",
		https: "127.0.0.1:18085", httpsRSA: "127.0.0.1:18086", httpsBulk: "127.0.0.1:18087", httpsH2: "127.0.0.1:18088", httpsFwd: "127.0.0.1:18089"}
	ec, rs, err := writeCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lb := lbConfig(fe, "127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003", "127.0.0.1:19004", ec, rs)
	for _, want := range []string{
		"[defaults.check]\ntype = \"none\"\n",
		"name = \"http\"\nmode = \"http\"\nbind = [\"127.0.0.1:18080\"]\n",
		"name = \"tcp\"\nbind = [\"127.0.0.1:18081\"]\n",
		"name = \"sink\"\n\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:19002\"\n",
		"[stats]\nbind = \"127.0.0.1:18083\"\n",
		"name = \"https-rsa\"\nmode = \"http\"\nbind = [\"127.0.0.1:18086\"]\ndefault_backend = \"http\"\n\n[frontend.tls]\ncert = [{ cert_file = \"" + rs.cert + "\", key_file = \"" + rs.key + "\" }]\n",
		"name = \"big\"\nmode = \"http\"\n\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:19003\"\n",
		"name = \"https-h2\"\nmode = \"http\"\nbind = [\"127.0.0.1:18088\"]\ndefault_backend = \"h2\"\n",
		"name = \"h2\"\nmode = \"http\"\nproto = \"h2\"\n\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:19004\"\n",
		"name = \"https-fwd\"\nmode = \"http\"\nbind = [\"127.0.0.1:18089\"]\ndefault_backend = \"http\"\n",
	} {
		if !strings.Contains(lb, want) {
			t.Errorf("lb config lacks %q:\n%s", want, lb)
		}
	}
	if strings.Contains(lb, "timeout") || strings.Contains(lb, "maxconn") {
		t.Errorf("lb config sets more than it should:\n%s", lb)
	}
	ha := haproxyConfig(fe, "127.0.0.1:19001", "127.0.0.1:19002", "127.0.0.1:19003", "127.0.0.1:19004", ec, rs)
	for _, want := range []string{"nbthread 1\n", "mode http\n    bind 127.0.0.1:18080\n", "mode tcp\n    bind 127.0.0.1:18081\n",
		"bind 127.0.0.1:18085 ssl crt " + ec.crt + " alpn h2,http/1.1\n", "backend big\n    mode http\n    server s1 127.0.0.1:19003\n", "backend h2\n    mode http\n    server s1 127.0.0.1:19004 proto h2\n",
		"backend sink\n    mode tcp\n    server s1 127.0.0.1:19002\n", "timeout http-keep-alive 15s",
		"bind 127.0.0.1:18083\n    http-request use-service prometheus-exporter if { path /metrics }\n",
		"bind 127.0.0.1:18089 ssl crt " + ec.crt + " alpn h2,http/1.1\n    default_backend http\n    option forwardfor\n"} {
		if !strings.Contains(ha, want) {
			t.Errorf("HAProxy config lacks %q:\n%s", want, ha)
		}
	}
	if strings.Contains(ha, "maxconn") || strings.Contains(ha, " check") || strings.Contains(ha, "log") {
		t.Errorf("HAProxy config tunes something:\n%s", ha)
	}
	lbp := &proxy{name: "lb", bin: "/x/lb"}
	if got := lbp.command("0"); got != "GOMAXPROCS=1 taskset -c 0 /x/lb -f CFG -q" {
		t.Errorf("lb command: %q", got)
	}

	// HAProxy's own check, where it is installed.
	benchutil.CheckHAProxyConfig(t, ha, true)
}

func TestParseH2load(t *testing.T) {
	out := `starting benchmark...
spawning thread #0: 20 total client(s). Timing-based test with 0s of warm-up time and 5s of main duration for each client.
Warm-up phase is over for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 28123.40 req/s, 3.54MB/s
requests: 140617 total, 140817 started, 140617 done, 140610 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 140610 2xx, 0 3xx, 7 4xx, 0 5xx
traffic: 17.71MB (18566760) total, 1.21MB (1265553) headers (space savings 95.39%), 16.09MB (16873944) data
`
	r, err := parseH2load([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 140617 || r.succeeded != 140610 || r.failed != 7 || r.duration != 5*time.Second || r.bytes != 16873944 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseH2load([]byte("finished in 1.00s, 1 req/s\n")); err == nil {
		t.Error("a report without its requests line parsed")
	}
	r, err = parseH2load([]byte("finished in 812.30ms, 2462 req/s, 2MB/s\nrequests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx\n"))
	if err != nil || r.duration != 812300*time.Microsecond || r.succeeded != 2000 {
		t.Errorf("ms report: %+v, %v", r, err)
	}
}

// startTestBackend starts an HTTP backend that stops with the test.
func startTestBackend(t *testing.T) (*benchutil.HTTPBackend, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := benchutil.StartHTTPBackend(ctx, "127.0.0.1:0", "s1", 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		b.Close()
	})
	return b, cancel
}

func TestIdleRole(t *testing.T) {
	b, stopBackend := startTestBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runIdle(ctx, roleFlags{addr: b.Addr(), body: 16, conns: 50}, inR, outW)
		outW.Close()
	}()
	out := bufio.NewScanner(outR)
	next := func() idleReport {
		t.Helper()
		if !out.Scan() {
			t.Fatalf("no report: %v", out.Err())
		}
		var rep idleReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("report %q: %v", out.Bytes(), err)
		}
		return rep
	}
	if rep := next(); rep.Phase != "opened" || rep.Served != 50 || rep.Failed != 0 {
		t.Errorf("opened: %+v", rep)
	}
	if _, err := io.WriteString(inW, "check\n"); err != nil {
		t.Fatal(err)
	}
	if rep := next(); rep.Phase != "checked" || rep.Alive != 50 {
		t.Errorf("checked: %+v", rep)
	}
	// The backend goes away: the connections are closed by the other end.
	stopBackend()
	b.Close()
	time.Sleep(100 * time.Millisecond)
	if _, err := io.WriteString(inW, "check\n"); err != nil {
		t.Fatal(err)
	}
	if rep := next(); rep.Alive != 0 || rep.Closed+rep.Reset != 50 {
		t.Errorf("checked after the backend closed: %+v", rep)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("runIdle: %v", err)
	}
}

func TestIdleRoleFailures(t *testing.T) {
	port, err := benchutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runIdle(ctx, roleFlags{addr: "127.0.0.1:" + strconv.Itoa(port), conns: 5}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	var rep idleReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Served != 0 || rep.Failed != 5 || rep.Reasons["connect: refused"] != 5 || len(rep.Samples) == 0 {
		t.Errorf("nothing listening: %+v", rep)
	}
}

func TestBulkRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := startSink(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var out bytes.Buffer
	if err := runBulk(ctx, roleFlags{addr: s.ln.Addr().String(), bytes: 3<<20 + 7, streams: 3}, &out); err != nil {
		t.Fatal(err)
	}
	var rep bulkReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Bytes != 3<<20+7 || len(rep.Errors) != 0 || rep.Seconds <= 0 {
		t.Errorf("bulk: %+v", rep)
	}
	if err := runBulk(ctx, roleFlags{addr: s.ln.Addr().String(), bytes: 2, streams: 3}, &out); err == nil {
		t.Error("fewer bytes than streams: no error")
	}
}

func TestOptions(t *testing.T) {
	o := options{rounds: 3, duration: 10 * time.Second, warmup: 2 * time.Second, conns: 8000, loadConns: 50, bulkGB: 4,
		streams: 4, body: 128, proxyCPU: "0", loadCPU: "1", settle: 2 * time.Second, measures: allMeasures}
	if msg := o.check(); msg != "" {
		t.Errorf("defaults: %s", msg)
	}
	if b := o.bound(); b < 10*time.Minute || b > 4*time.Hour {
		t.Errorf("bound of the defaults: %v", b)
	}
	o.conns = 0
	if o.check() == "" {
		t.Error("-conns 0 accepted")
	}
	if n := len(rows(options{measures: allMeasures, conns: 1, bulkGB: 1})); n != 72 {
		t.Errorf("%d rows", n)
	}
}
