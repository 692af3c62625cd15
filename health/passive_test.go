package health

import (
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// errReset is a traffic error as the data path sees a reset.
var errReset error = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

// slowSettings check so rarely that only the first check, at once, happens
// during a test.
func slowSettings(addr string) Settings {
	s := tcpSettings(addr)
	s.Interval, s.FastInterval, s.DownInterval = 10*time.Second, 10*time.Second, 10*time.Second
	return s
}

func TestPassiveMarkDown(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t, "127.0.0.1:0")
	pool, srv := newPool(t, "s1")
	set := slowSettings(ln.addr())
	set.ErrorLimit, set.OnError = 3, OnErrorMarkDown
	logs, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	start(t, c)
	waitFor(t, time.Second, "first check", func() bool { return ln.n.Load() == 1 })

	// A success resets the count.
	for _, err := range []error{errReset, errReset, nil, errReset, errReset} {
		c.ObserveConn(srv[0], err)
	}
	time.Sleep(50 * time.Millisecond)
	if !srv[0].Up() {
		t.Fatal("marked down without 3 errors in a row")
	}
	c.ObserveConn(srv[0], errReset)
	took := waitFor(t, time.Second, "passive mark-down", func() bool { return !srv[0].Up() })
	t.Logf("marked down %v after the third error", took)
	if n := ln.n.Load(); n != 1 {
		t.Errorf("%d active checks, want the mark-down before the second", n)
	}
	const want = "server app/s1 is DOWN: 3 consecutive connection errors (last: connection reset by peer)"
	if got := logs.waitTransitions(t, 1); !slices.Equal(got, []string{want}) {
		t.Errorf("logs = %q, want %q", got, want)
	}
	if sn := state(t, c, "s1"); sn.State != (State{}) || sn.LastReason != want[len("server app/s1 is DOWN: "):] {
		t.Errorf("state = %+v", sn)
	}
}

func TestPassiveFastInterval(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	healthy.Store(true)
	hs := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	pool, srv := newPool(t, "s1")
	set := slowSettings(hs.addr())
	set.Type, set.FastInterval = TypeHTTP, 20*time.Millisecond
	set.ErrorLimit, set.OnError = 3, OnErrorFastInterval
	logs, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	start(t, c)
	waitFor(t, time.Second, "first check", func() bool { return hs.n.Load() == 1 })

	healthy.Store(false)
	// Errors from many connections at once, as the data path sends them.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { c.ObserveConn(srv[0], errReset) })
	}
	wg.Wait()
	// Fall (3) checks at FastInterval instead of one every 10s.
	took := waitFor(t, 2*time.Second, "down after fast checks", func() bool { return !srv[0].Up() })
	t.Logf("down %v after the errors", took)
	if n := hs.n.Load(); n != 1+int64(set.Fall) {
		t.Errorf("%d checks, want %d", n, 1+set.Fall)
	}
	const want = "server app/s1 is DOWN: HTTP status 503, want 200-399, 3/3 checks failed"
	if got := logs.waitTransitions(t, 1); !slices.Equal(got, []string{want}) {
		t.Errorf("logs = %q, want %q", got, want)
	}
}

func TestPassiveFastIntervalSettles(t *testing.T) {
	t.Parallel()
	hs := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {})
	pool, srv := newPool(t, "s1")
	set := slowSettings(hs.addr())
	set.Type, set.FastInterval = TypeHTTP, 20*time.Millisecond
	set.ErrorLimit, set.OnError = 2, OnErrorFastInterval
	_, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	start(t, c)
	waitFor(t, time.Second, "first check", func() bool { return hs.n.Load() == 1 })
	c.ObserveConn(srv[0], errReset)
	c.ObserveConn(srv[0], errReset)
	waitFor(t, time.Second, "a fast check", func() bool { return hs.n.Load() == 2 })
	// It passed: checks go back to Interval.
	time.Sleep(200 * time.Millisecond)
	if n := hs.n.Load(); n != 2 || !srv[0].Up() {
		t.Errorf("%d checks (up %v), want 2: one fast check, then back to Interval", n, srv[0].Up())
	}
}

// TestObserveConnIsCheap is not parallel: AllocsPerRun must not be.
func TestObserveConnIsCheap(t *testing.T) {
	pool, srv := newPool(t, "s1", "unchecked")
	set := tcpSettings(deadAddr(t))
	set.ErrorLimit, set.OnError = 2, OnErrorMarkDown
	_, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	// Without Run nothing consumes the triggers: ObserveConn must not block.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			c.ObserveConn(srv[0], errReset)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("ObserveConn blocked")
	}
	allocs := testing.AllocsPerRun(100, func() {
		c.ObserveConn(srv[0], errReset)
		c.ObserveConn(srv[0], nil)
		c.ObserveConn(srv[1], errReset)
		c.ObserveConn(nil, errReset)
	})
	if allocs != 0 {
		t.Errorf("ObserveConn allocates %v times", allocs)
	}
	if !srv[0].Up() || !srv[1].Up() {
		t.Error("ObserveConn changed a server's state without Run")
	}
}

func TestPassiveOff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		limit   int
		onError string
		errLogs int
	}{
		{"error limit 0", 0, OnErrorMarkDown, 0},
		{"unknown action", 1, "explode", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln := listenTCP(t, "127.0.0.1:0")
			pool, srv := newPool(t, "s1")
			set := slowSettings(ln.addr())
			set.ErrorLimit, set.OnError = tc.limit, tc.onError
			logs, log := newLog()
			c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
			if n := len(logs.entries(t, "error")); n != tc.errLogs {
				t.Errorf("New logged %d errors, want %d", n, tc.errLogs)
			}
			start(t, c)
			for range 10 {
				c.ObserveConn(srv[0], errors.New("boom"))
			}
			time.Sleep(100 * time.Millisecond)
			if !srv[0].Up() || ln.n.Load() != 1 {
				t.Errorf("passive checks acted: up %v, %d checks", srv[0].Up(), ln.n.Load())
			}
		})
	}
}
