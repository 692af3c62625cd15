package health

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkerGoroutines returns the stacks of goroutines running the Checker's
// code.
func checkerGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "lb/health.(*Checker).") || strings.Contains(g, "lb/health.(*target).") {
			out = append(out, g)
		}
	}
	return out
}

// TestNoGoroutineLeft is not parallel: the other tests, which are, wait
// while it runs, so every Checker goroutine alive is this test's.
func TestNoGoroutineLeft(t *testing.T) {
	if g := checkerGoroutines(); len(g) != 0 {
		t.Fatalf("Checker goroutines before the test:\n%s", strings.Join(g, "\n\n"))
	}
	live := listenTCP(t, "127.0.0.1:0")
	hang := holdTCP(t)
	pool, srv := newPool(t, "live", "hang", "ramp", "passive")
	srv[2].SlowStart = time.Minute

	hangSet := tcpSettings(hang.addr())
	hangSet.Type, hangSet.Timeout = TypeHTTP, time.Minute // in flight when Run ends
	passive := tcpSettings(live.addr())
	passive.ErrorLimit, passive.OnError = 1, OnErrorFastInterval
	rampSet := tcpSettings(live.addr())
	rampSet.Rise = 1
	_, log := newLog()
	c := New([]Target{
		{Backend: "app", Pool: pool, Server: srv[0], Settings: tcpSettings(live.addr()), Start: State{Up: true}},
		{Backend: "app", Pool: pool, Server: srv[1], Settings: hangSet, Start: State{Up: true}},
		{Backend: "app", Pool: pool, Server: srv[2], Settings: rampSet, Start: State{}},
		{Backend: "app", Pool: pool, Server: srv[3], Settings: passive, Start: State{Up: true}},
	}, log)

	// ColdStart cut short with a check in flight.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	c.ColdStart(ctx)
	cancel()
	if g := checkerGoroutines(); len(g) != 0 {
		t.Fatalf("Checker goroutines after ColdStart:\n%s", strings.Join(g, "\n\n"))
	}
	// The ramp server came up from down (its zero Start): it is in slow
	// start, which Run's ramp goroutine carries on.

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	waitFor(t, 2*time.Second, "a check in flight, a ramp", func() bool {
		return hang.count() >= 2 && srv[2].Up() && srv[2].EffectiveWeight() < 100
	})
	c.ObserveConn(srv[3], errReset)
	time.Sleep(50 * time.Millisecond)
	if len(checkerGoroutines()) < 6 {
		t.Errorf("expected a goroutine per target, ramp and watchPassive; found:\n%s",
			strings.Join(checkerGoroutines(), "\n\n"))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of its context ending, with a 1m check in flight")
	}
	if g := checkerGoroutines(); len(g) != 0 {
		t.Fatalf("Checker goroutines after Run returned:\n%s", strings.Join(g, "\n\n"))
	}
}
