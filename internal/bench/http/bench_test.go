package main

import (
	"context"
	"fmt"
	"math/rand/v2"
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

func TestLoadAgainstBackends(t *testing.T) {
	b1 := benchutil.StartTestHTTPBackend(t, "s1", 100)
	b2 := benchutil.StartTestHTTPBackend(t, "s2", 100)
	l := startLoad(context.Background(), []string{b1.Addr(), b2.Addr()}, 4, 100, 100*time.Millisecond, 300*time.Millisecond)
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
	l = startLoad(context.Background(), []string{b1.Addr()}, 1, 99, 0, 100*time.Millisecond)
	res, err = l.wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ok != 0 || res.errors == 0 || res.reconnects == 0 || !strings.Contains(strings.Join(res.samples, "\n"), "body of 100 bytes, want 99") {
		t.Errorf("wrong body size: ok %d errors %d reconnects %d samples %q", res.ok, res.errors, res.reconnects, res.samples)
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	b := benchutil.StartTestHTTPBackend(t, "s1", 10)
	ctx, cancel := context.WithCancel(context.Background())
	l := startLoad(ctx, []string{b.Addr()}, 8, 10, 0, time.Hour)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if !benchutil.WaitBounded(&l.wg, 10*time.Second) {
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

func TestConfigs(t *testing.T) {
	b1 := benchutil.StartTestHTTPBackend(t, "s1", 1)
	b2 := benchutil.StartTestHTTPBackend(t, "s2", 1)
	bs := []*benchutil.HTTPBackend{b1, b2}
	lb := lbConfig(8080, bs)
	for _, want := range []string{
		"[global]\nlog_level = \"error\"\n",
		"[defaults]\nmode = \"http\"\n",
		"[defaults.timeout]\nconnect = \"5s\"\nclient = \"30s\"\nserver = \"30s\"\n",
		"[[frontend]]\nname = \"bench\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\n",
		"[[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n",
		"[backend.check]\ntype = \"none\"\n",
		fmt.Sprintf("[[backend.server]]\nname = \"s1\"\naddress = %q\n", b1.Addr()),
		fmt.Sprintf("[[backend.server]]\nname = \"s2\"\naddress = %q\n", b2.Addr()),
	} {
		if !strings.Contains(lb, want) {
			t.Errorf("lb config lacks %q:\n%s", want, lb)
		}
	}
	ha := haproxyConfig(8080, bs, 2)
	for _, want := range []string{"nbthread 2", "mode http", "option http-keep-alive", "http-reuse safe", "bind 127.0.0.1:8080",
		"server s1 " + b1.Addr(), "server s2 " + b2.Addr()} {
		if !strings.Contains(ha, want) {
			t.Errorf("HAProxy config lacks %q:\n%s", want, ha)
		}
	}
	if strings.Contains(haproxyConfig(8080, bs, 0), "nbthread") {
		t.Error("nbthread set with threads 0")
	}
	// HAProxy's own check, where it is installed.
	benchutil.CheckHAProxyConfig(t, ha, false)
}
