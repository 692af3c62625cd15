package park

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// wakes is a Waker that reports its reasons on a channel.
type wakes chan Reason

func (w wakes) Wake(r Reason) { w <- r }

// pair returns the two ends of a loopback TCP connection, closed when the
// test ends.
func pair(t testing.TB, ln net.Listener) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func newPoller(t testing.TB) *Poller {
	p := &Poller{}
	t.Cleanup(func() { p.Close() })
	return p
}

// next waits for one wake-up.
func next(t *testing.T, w wakes) Reason {
	t.Helper()
	select {
	case r := <-w:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up within 10s")
		return 0
	}
}

// quiet checks that no wake-up comes for a while.
func quiet(t *testing.T, w wakes, d time.Duration) {
	t.Helper()
	select {
	case r := <-w:
		t.Fatalf("woke (%v) with nothing to read", r)
	case <-time.After(d):
	}
}

func TestParkReady(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	client, server := pair(t, ln)
	w := make(wakes, 1)
	if _, err := p.Park(server, time.Time{}, w); err != nil {
		t.Fatal(err)
	}
	quiet(t, w, 100*time.Millisecond)
	if n := p.Waiting(); n != 1 {
		t.Errorf("Waiting = %d, want 1", n)
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if r := next(t, w); r != Ready {
		t.Fatalf("woke with %v, want ready", r)
	}
	if n := p.Waiting(); n != 0 {
		t.Errorf("Waiting = %d after the wake-up, want 0", n)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v after the wake-up", buf, err)
	}
	// Parked again, the same connection wakes again: the descriptor left
	// the set at the first wake-up.
	for i := range 3 {
		if _, err := p.Park(server, time.Time{}, w); err != nil {
			t.Fatalf("parking again (%d): %v", i, err)
		}
		quiet(t, w, 20*time.Millisecond)
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if r := next(t, w); r != Ready {
			t.Fatalf("woke with %v, want ready", r)
		}
		if _, err := io.ReadFull(server, buf[:1]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParkAlreadyReadable(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	// Wait until the bytes are there to read.
	buf := make([]byte, 1)
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	w := make(wakes, 1)
	if _, err := p.Park(server, time.Time{}, w); err != nil {
		t.Fatal(err)
	}
	if r := next(t, w); r != Ready {
		t.Fatalf("woke with %v, want ready: bytes were waiting", r)
	}
}

func TestParkPeerClose(t *testing.T) {
	p := newPoller(t)
	client, server := pair(t, listen(t))
	w := make(wakes, 1)
	if _, err := p.Park(server, time.Now().Add(time.Hour), w); err != nil {
		t.Fatal(err)
	}
	client.Close()
	if r := next(t, w); r != Ready {
		t.Fatalf("woke with %v, want ready (end of file)", r)
	}
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read %d, %v; want end of file", n, err)
	}
}

func TestParkDeadline(t *testing.T) {
	p := newPoller(t)
	_, server := pair(t, listen(t))
	w := make(wakes, 1)
	start := time.Now()
	if _, err := p.Park(server, start.Add(100*time.Millisecond), w); err != nil {
		t.Fatal(err)
	}
	if r := next(t, w); r != Expired {
		t.Fatalf("woke with %v, want expired", r)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("expired after %v, before the 100ms deadline", d)
	}
	// Moved earlier.
	pk, err := p.Park(server, time.Now().Add(time.Hour), w)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	pk.Reschedule(start.Add(50 * time.Millisecond))
	if r := next(t, w); r != Expired {
		t.Fatalf("woke with %v, want expired", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("expired after %v, for a deadline moved to 50ms", d)
	}
	pk.Reschedule(time.Now()) // after the wake-up: nothing happens
	quiet(t, w, 100*time.Millisecond)
	// Canceled: the descriptor is out of the set at once, and the Waker
	// runs once.
	pk, err = p.Park(server, time.Now().Add(time.Hour), w)
	if err != nil {
		t.Fatal(err)
	}
	pk.Cancel()
	if n := p.Waiting(); n != 0 {
		t.Errorf("Waiting = %d after Cancel, want 0", n)
	}
	if r := next(t, w); r != Canceled {
		t.Fatalf("woke with %v, want canceled", r)
	}
	pk.Cancel()
	quiet(t, w, 50*time.Millisecond)
}

// TestParkMany parks 2,000 connections: no goroutine each, and each wakes
// once when its peer writes.
func TestParkMany(t *testing.T) {
	const n = 2000
	p := newPoller(t)
	ln := listen(t)
	clients := make([]*net.TCPConn, n)
	w := make(wakes, n)
	before := runtime.NumGoroutine()
	for i := range clients {
		c, s := pair(t, ln)
		clients[i] = c
		if _, err := p.Park(s, time.Now().Add(time.Minute), w); err != nil {
			t.Fatal(err)
		}
	}
	if got := runtime.NumGoroutine() - before; got > 10 {
		t.Errorf("%d more goroutines with %d connections parked", got, n)
	}
	if got := p.Waiting(); got != n {
		t.Errorf("Waiting = %d, want %d", got, n)
	}
	for _, c := range clients {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if r := next(t, w); r != Ready {
			t.Fatalf("woke with %v, want ready", r)
		}
	}
	quiet(t, w, 50*time.Millisecond)
}

func TestPollerClose(t *testing.T) {
	p := &Poller{}
	_, server := pair(t, listen(t))
	w := make(wakes, 1)
	if _, err := p.Park(server, time.Time{}, w); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if r := next(t, w); r != Closed {
		t.Fatalf("woke with %v, want closed", r)
	}
	if _, err := p.Park(server, time.Time{}, w); err == nil {
		t.Error("Park after Close worked")
	}
}

// BenchmarkParkWake measures one park and one wake-up by a peer's byte.
func BenchmarkParkWake(b *testing.B) {
	p := newPoller(b)
	client, server := pair(b, listen(b))
	w := make(wakes, 1)
	buf := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Park(server, time.Now().Add(time.Minute), w); err != nil {
			b.Fatal(err)
		}
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
		<-w
		if _, err := server.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockingRead is BenchmarkParkWake's baseline: the same byte
// read by a goroutine blocked on the connection.
func BenchmarkBlockingRead(b *testing.B) {
	client, server := pair(b, listen(b))
	buf := make([]byte, 1)
	done := make(chan struct{})
	go func() {
		rb := make([]byte, 1)
		for {
			if _, err := server.Read(rb); err != nil {
				return
			}
			done <- struct{}{}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
		<-done
	}
}

// tagged is a Waker that reports which connection woke, and why.
type tagged struct {
	i  int
	ch chan<- [2]int
}

func (w tagged) Wake(r Reason) { w.ch <- [2]int{w.i, int(r)} }

// TestParkDeadlinesShareATimer: connections parked with deadlines in any
// order each expire at their own deadline, not before; one moved from an
// hour away to now expires too, and one whose deadline is taken away never
// does.
func TestParkDeadlinesShareATimer(t *testing.T) {
	p := newPoller(t)
	ln := listen(t)
	const n = 12
	ch := make(chan [2]int, n)
	start := time.Now()
	deadlines := make([]time.Time, n)
	parked := make([]*Parked, n)
	for k := range n {
		i := (k * 5) % n // parked out of deadline order
		deadlines[i] = start.Add(200*time.Millisecond + time.Duration(i)*40*time.Millisecond)
		if i == n-1 {
			deadlines[i] = start.Add(time.Hour)
		}
		_, s := pair(t, ln)
		pk, err := p.Park(s, deadlines[i], tagged{i, ch})
		if err != nil {
			t.Fatal(err)
		}
		parked[i] = pk
	}
	deadlines[n-1] = start.Add(50 * time.Millisecond)
	parked[n-1].Reschedule(deadlines[n-1])
	parked[3].Reschedule(time.Time{}) // none
	for range n - 1 {
		var got [2]int
		select {
		case got = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("a parked connection did not expire within 10s")
		}
		i, r := got[0], Reason(got[1])
		if r != Expired {
			t.Fatalf("connection %d woke with %v, want expired", i, r)
		}
		if i == 3 {
			t.Fatal("the connection whose deadline was taken away expired")
		}
		if now := time.Now(); now.Before(deadlines[i]) {
			t.Errorf("connection %d expired %v before its deadline", i, deadlines[i].Sub(now))
		}
	}
	if w := p.Waiting(); w != 1 {
		t.Errorf("Waiting = %d, want 1 (the one without a deadline)", w)
	}
	parked[3].Cancel()
	if got := <-ch; got[0] != 3 || Reason(got[1]) != Canceled {
		t.Errorf("Cancel woke %v", got)
	}
}
