package deadline

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestLazy: the first call sets a deadline D + D/Slack ahead; calls within
// D/Slack of it set none; one after sets the next.
func TestLazy(t *testing.T) {
	d := 80 * time.Second
	l := Lazy{Conn: &net.TCPConn{}, D: d}
	t0 := time.Now()
	at, ok := l.DueAt(t0)
	if !ok || !at.Equal(t0.Add(d+d/Slack)) {
		t.Fatalf("first: %v %v, want %v", at, ok, t0.Add(d+d/Slack))
	}
	if _, ok := l.DueAt(t0.Add(d/Slack - time.Millisecond)); ok {
		t.Error("a deadline again within D/Slack of the last")
	}
	if at, ok := l.DueAt(t0.Add(d / Slack)); !ok || !at.Equal(t0.Add(d/Slack+d+d/Slack)) {
		t.Errorf("after D/Slack: %v %v", at, ok)
	}
	fresh := Lazy{Conn: &net.TCPConn{}, D: d}
	if _, ok := fresh.Due(); !ok {
		t.Error("Due set no first deadline")
	}
	if _, ok := fresh.Due(); ok {
		t.Error("Due set a deadline again at once")
	}
	for _, l := range []Lazy{{Conn: &net.TCPConn{}}, {D: d}} {
		if _, ok := l.Due(); ok {
			t.Errorf("%+v: a deadline without a timeout or a connection", l)
		}
	}
}

// TestSetWrite: a write that nobody reads fails once D (and at most
// D/Slack more) has passed.
func TestSetWrite(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	l := Lazy{Conn: c1, D: 50 * time.Millisecond}
	l.SetWrite()
	start := time.Now()
	_, err := c1.Write([]byte("x"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want a deadline exceeded", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Errorf("the write failed after %v, before the deadline", waited)
	}
}
