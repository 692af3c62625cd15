package proxy

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lb/balancer"
)

// shortPark makes flows park after d for the test.
func shortPark(t testing.TB, d time.Duration) {
	old := parkAfter
	parkAfter = d
	t.Cleanup(func() { parkAfter = old })
}

// roundTrip writes msg on c and reads it back, echoed.
func roundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %q, want %q", got, msg)
	}
}

// TestIdleConnectionsPark: connections at rest are parked (no goroutine,
// no buffer, no pipe), and wake to carry on.
func TestIdleConnectionsPark(t *testing.T) {
	shortPark(t, 20*time.Millisecond)
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: time.Minute, server: time.Minute}).start(t)
	const n = 200
	before := runtime.NumGoroutine()
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = s.dial(t)
		roundTrip(t, conns[i], []byte("hello"))
	}
	waitFor(t, "both flows of every connection parked", func() bool { return Poller.Waiting() >= 2*n })
	// The backend's echo goroutines remain; lb's flows do not.
	if extra := runtime.NumGoroutine() - before; extra > n+20 {
		t.Errorf("%d more goroutines with %d parked connections: lb keeps goroutines for them", extra, n)
	}
	for _, c := range conns {
		roundTrip(t, c, []byte("again"))
	}
	if s.frontend.Active() != n {
		t.Errorf("Active = %d, want %d: a parked connection is still served", s.frontend.Active(), n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "every connection logged", func() bool { return len(s.logs.lines(t, "connection")) == n })
	for _, l := range s.logs.lines(t, "connection") {
		if l["end"] != "client_closed" || l["bytes_in"] != float64(10) || l["bytes_out"] != float64(10) {
			t.Fatalf("log line %v: want end=client_closed and 10 bytes each way", l)
		}
	}
}

// TestParkedConnectionTimesOut: the idle timeout still applies to a parked
// connection, measured from the last byte either way.
func TestParkedConnectionTimesOut(t *testing.T) {
	shortPark(t, 10*time.Millisecond)
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: 300 * time.Millisecond, server: time.Minute}).start(t)
	c := s.dial(t)
	start := time.Now()
	roundTrip(t, c, []byte("x"))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v; want the connection closed by the idle timeout", n, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms idle timeout", d)
	}
	waitFor(t, "the log line", func() bool { return len(s.logs.lines(t, "connection")) == 1 })
	if l := s.logs.lines(t, "connection")[0]; l["end"] != "client_timeout" {
		t.Errorf("end=%v, want client_timeout", l["end"])
	}
}

// TestBulkTransferSplices: a transfer that fills the buffer goes through
// a pipe (splice), which is given back once the source runs dry.
func TestBulkTransferSplices(t *testing.T) {
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: time.Minute, server: time.Minute}).start(t)
	c := s.dial(t)
	openBefore, _ := pipes.stats()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		done <- err
	}()
	got := make([]byte, len(payload))
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the echoed megabyte differs")
	}
	open, idle := pipes.stats()
	if open <= openBefore && idle == 0 {
		t.Errorf("no pipe was made for a 1 MiB transfer (open %d, before %d): it did not splice", open, openBefore)
	}
	waitFor(t, "pipes given back", func() bool { open, idle := pipes.stats(); return open == idle })
}

// BenchmarkRelayChunk relays small chunks both ways through a TCP session:
// no allocation per chunk.
func BenchmarkRelayChunk(b *testing.B) {
	be := startBackend(b, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", be.addr(), 1)}, client: time.Minute, server: time.Minute}).start(b)
	c, err := net.Dial("tcp4", s.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	got := make([]byte, len(msg))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBusyBurstReclaims: once a burst of busy connections has parked, the
// memory it held is given back.
func TestBusyBurstReclaims(t *testing.T) {
	shortPark(t, 20*time.Millisecond)
	freed := make(chan struct{}, 4)
	// busy's settings change only while no watch reads them: the
	// connections of earlier tests have ended, their burst's watch too.
	idle := func() bool { return !busy.Watching() }
	waitFor(t, "the last burst's watch to end", idle)
	oldHigh, oldFree := busy.High, busy.Free
	busy.High, busy.Free = 8*busyCost, func() { freed <- struct{}{} }
	t.Cleanup(func() {
		waitFor(t, "the burst's watch to end", idle)
		busy.High, busy.Free = oldHigh, oldFree
	})
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: time.Minute, server: time.Minute}).start(t)
	conns := make([]*net.TCPConn, 40)
	for i := range conns {
		conns[i] = s.dial(t)
		if _, err := conns[i].Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-freed:
	case <-time.After(10 * time.Second):
		t.Fatalf("no memory given back after 40 busy connections parked (level %d, high %d)", busy.Level(), busy.High)
	}
}

// signalStorm sends SIGURG (which Go's runtime takes for a preemption
// request and otherwise ignores) to every thread of the process, every
// 50µs, until stop is closed or limit signals went. A splice to a socket
// under way when one comes returns early, with part of its bytes.
func signalStorm(stop <-chan struct{}, limit int) {
	pid := os.Getpid()
	for sent := 0; sent < limit; {
		select {
		case <-stop:
			return
		default:
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				_ = unix.Tgkill(pid, tid, unix.SIGURG)
				sent++
			}
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// TestShortWritesDoNotStall: a bulk echo goes through while signals keep
// interrupting lb's splices. A short splice is not a full socket: a flow
// that waited for room after one would wait for the poller's word that
// never comes, until the write deadline (it did, 5 runs in 5, before
// drainSys splices on until EAGAIN).
func TestShortWritesDoNotStall(t *testing.T) {
	b := startBackend(t, echo)
	s := (&setup{servers: []*balancer.Server{srv("s1", b.addr(), 1)}, client: time.Minute, server: time.Minute}).start(t)
	c := s.dial(t)
	stop, stormed := make(chan struct{}), make(chan struct{})
	go func() { defer close(stormed); signalStorm(stop, 2_000_000) }()
	defer func() { close(stop); <-stormed }()

	payload := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		sent <- err
	}()
	// The echo takes well under a second; 20 s is far below the
	// one-minute write deadline that a stalled flow would wait for.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(payload))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("the echo stalled after %d of %d bytes: %v", n, len(payload), err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the echo differs from what was sent")
	}
}
