package listener

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// answerSlowly accepts on ln until it is closed and answers each connection
// with 'x' after a pause, so that the queue outlasts Drain's grace.
func answerSlowly(ln *net.TCPListener, pause time.Duration, done chan<- int) {
	n := 0
	defer func() { done <- n }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		time.Sleep(pause)
		c.Write([]byte{'x'})
		c.Close()
		n++
	}
}

func TestDrainAcceptsQueued(t *testing.T) {
	const queued = 20
	const grace = 100 * time.Millisecond
	ln := bindT(t, "127.0.0.1:0")
	conns := dialN(t, ln.Addr().String(), queued)
	waitQueueLen(t, ln, queued)

	done := make(chan int, 1)
	start := time.Now()
	go answerSlowly(ln, 10*time.Millisecond, done)
	if err := Drain(context.Background(), ln, grace); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < grace {
		t.Errorf("Drain returned after %v, before the grace of %v", took, grace)
	}
	if accepted := <-done; accepted != queued {
		t.Errorf("accepted %d connections, want %d", accepted, queued)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil || b[0] != 'x' {
			t.Errorf("queued connection %d: read %q, %v; want 'x'", i, b[0], err)
		}
	}
}

func TestDrainWaitsForGrace(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	start := time.Now()
	if err := Drain(context.Background(), ln, 80*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("Drain of an idle listener returned after %v, want at least 80ms", took)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Drain: %v, want net.ErrClosed", err)
	}
}

func TestDrainCanceled(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	conns := dialN(t, ln.Addr().String(), 3)
	waitQueueLen(t, ln, 3)

	// Nobody accepts, so only the context ends the drain.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := Drain(ctx, ln, 10*time.Millisecond)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain: %v, want context.Canceled", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Drain: %v, want net.ErrClosed", err)
	}
	// What was queued is lost, which is what Drain exists to avoid.
	conns[0].SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Error("a connection queued on a closed listener could still be read")
	}
}

func TestDrainClosed(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	ln.Close()
	if err := Drain(context.Background(), ln, 0); err != nil {
		t.Fatalf("Drain of a closed listener: %v", err)
	}
}

func TestMigrateReq(t *testing.T) {
	on, err := MigrateReq()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("net.ipv4.tcp_migrate_req = %v", on)
}
