package sock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	s, err := New(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	return s, p.(*net.TCPConn)
}

// TestConnReadWrite moves 8 MiB each way at once through a Conn: reads
// and writes run concurrently, as a request body goes up while the
// response comes down.
func TestConnReadWrite(t *testing.T) {
	s, peer := pair(t)
	up := bytes.Repeat([]byte("up-0123456789"), 1<<19)
	down := bytes.Repeat([]byte("down-abcdefgh"), 1<<19)
	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	var errs [4]error
	wg.Go(func() { _, errs[0] = s.Write(up); _ = s.CloseWrite() })
	wg.Go(func() { gotUp, errs[1] = io.ReadAll(peer) })
	wg.Go(func() { _, errs[2] = peer.Write(down); _ = peer.CloseWrite() })
	wg.Go(func() { gotDown, errs[3] = io.ReadAll(s) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatalf("got %d and %d bytes, want %d and %d intact", len(gotUp), len(gotDown), len(up), len(down))
	}
}

// TestConnErrors: errors look like net.Conn's: io.EOF, the deadline's, and
// the errno inside a *net.OpError.
func TestConnErrors(t *testing.T) {
	s, peer := pair(t)
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	_ = peer.SetLinger(0)
	peer.Close() // a reset
	var op *net.OpError
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &op) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after a reset: %v, want a *net.OpError of ECONNRESET", err)
	}
	if got := Bare(s); got != net.Conn(s.TCPConn) {
		t.Errorf("Bare(Conn) = %v", got)
	}
}

func TestConnAllocs(t *testing.T) {
	s, peer := pair(t)
	msg, buf := []byte("ping"), make([]byte, 4)
	n := testing.AllocsPerRun(100, func() {
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per round trip, want 0", n)
	}
}

// answerAfter reads n bytes from peer, then writes answer; it reports what
// it read, or its error.
func answerAfter(peer net.Conn, n int, answer []byte) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		_ = peer.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(peer, b); err != nil {
			got <- []byte(err.Error())
			return
		}
		_, _ = peer.Write(answer)
		got <- b
	}()
	return got
}

// TestDeferWrite: a deferred Write sends nothing until the next Read, which
// sends the bytes and returns the answer; a Write with no deferral on, or
// after DeferWrite(false), goes at once.
func TestDeferWrite(t *testing.T) {
	s, peer := pair(t)
	s.DeferWrite(true)
	if n, err := s.Write([]byte("request")); n != 7 || err != nil {
		t.Fatalf("deferred Write: %d, %v", n, err)
	}
	if !s.Pending() {
		t.Fatal("a deferred Write's bytes are not pending")
	}
	// Nothing reached the peer yet.
	_ = peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the peer read %d bytes (%v) before the Read that sends them", n, err)
	}
	got := answerAfter(peer, 7, []byte("answer"))
	buf := make([]byte, 64)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("Read after a deferred Write: %q, %v", buf[:n], err)
	}
	if b := <-got; string(b) != "request" {
		t.Fatalf("the peer got %q", b)
	}
	if s.Pending() {
		t.Error("bytes still pending after the Read")
	}

	// The deferral is one Write's: the next goes at once.
	got = answerAfter(peer, 4, []byte("ok"))
	if _, err := s.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "next" {
		t.Fatalf("the peer got %q", b)
	}
	if _, err := io.ReadFull(s, buf[:2]); err != nil {
		t.Fatal(err)
	}
	// A deferral no Write took ends with DeferWrite(false).
	s.DeferWrite(true)
	s.DeferWrite(false)
	got = answerAfter(peer, 4, nil)
	if _, err := s.Write([]byte("more")); err != nil || s.Pending() {
		t.Fatalf("Write after DeferWrite(false): %v, pending %v", err, s.Pending())
	}
	if b := <-got; string(b) != "more" {
		t.Fatalf("the peer got %q", b)
	}
}

// TestDeferWriteLarge: deferred bytes the peer cannot take at once go in
// part with the Read, the rest as an ordinary Write, then the Read goes on.
func TestDeferWriteLarge(t *testing.T) {
	s, peer := pair(t)
	req := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB: more than the socket buffers hold
	got := answerAfter(peer, len(req), []byte("done"))
	s.DeferWrite(true)
	if n, err := s.Write(req); n != len(req) || err != nil {
		t.Fatalf("deferred Write: %d, %v", n, err)
	}
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "done" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	if b := <-got; !bytes.Equal(b, req) {
		t.Fatalf("the peer got %d bytes, not the %d sent", len(b), len(req))
	}
}

// TestDeferWriteError: a deferred Write that fails (the peer reset the
// connection) fails the Read with the write's error, as net.Conn reports
// one.
func TestDeferWriteError(t *testing.T) {
	s, peer := pair(t)
	_ = peer.SetLinger(0)
	peer.Close() // a reset
	time.Sleep(50 * time.Millisecond)
	s.DeferWrite(true)
	if _, err := s.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := s.Read(make([]byte, 16))
	var op *net.OpError
	if !errors.As(err, &op) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("Read after a deferred Write to a reset connection: %v, want a *net.OpError of ECONNRESET or EPIPE", err)
	}
	if s.Pending() {
		t.Error("bytes still pending after the failed Read")
	}
}

// TestHold serves a request-response exchange within one read operation:
// Read inside Hold does not wait but says ErrWouldBlock, a wait without a
// read first still wakes for bytes that come after a read emptied the
// socket (Drained), bytes that came while fn worked wake it at once, the
// deadline ends the hold, and Read waits again outside it.
func TestHold(t *testing.T) {
	s, peer := pair(t)
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64)
	var got []string
	calls, vain := 0, 0
	go func() {
		// The peer sends its first line once Hold has begun: Hold's
		// first call finds nothing. Then a line per answer, the last
		// two in one go before the answer (pipelined).
		time.Sleep(50 * time.Millisecond)
		_, _ = peer.Write([]byte("one\n"))
		r := make([]byte, 64)
		for _, next := range []string{"two\n", "three\nfour\n"} {
			if _, err := peer.Read(r); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
			_, _ = peer.Write([]byte(next))
		}
	}()
	err := s.Hold(func() bool {
		calls++
		for {
			n, err := s.Read(buf)
			switch {
			case errors.Is(err, ErrWouldBlock):
				vain++
				return false
			case err != nil:
				t.Errorf("read within Hold: %v", err)
				return true
			}
			got = append(got, string(buf[:n]))
			if string(buf[:n]) == "three\nfour\n" {
				return true
			}
			if _, err := s.Write([]byte("ok\n")); err != nil {
				t.Error(err)
				return true
			}
			got = append(got, "answered")
			if len(got) == 4 {
				// Work on while the next lines come: they must
				// wake the wait at once.
				time.Sleep(100 * time.Millisecond)
			}
			if s.Drained() {
				// Wait without reading first: the next line wakes
				// the wait.
				return false
			}
		}
	})
	if err != nil {
		t.Fatalf("Hold: %v", err)
	}
	want := []string{"one\n", "answered", "two\n", "answered", "three\nfour\n"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// The first call found nothing; after each answer the wait began
	// without a read, so no other read was in vain, and each line took
	// one call.
	if vain != 1 || calls != 4 {
		t.Errorf("%d calls, %d reads within Hold found nothing; want 4 calls, 1 read in vain (the first)", calls, vain)
	}

	_ = s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := s.Hold(func() bool {
		_, err := s.Read(buf)
		return !errors.Is(err, ErrWouldBlock)
	}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Hold past the deadline: %v", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(time.Minute))
	go func() { time.Sleep(20 * time.Millisecond); _, _ = peer.Write([]byte("after\n")) }()
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "after\n" {
		t.Errorf("Read after Hold: %q, %v", buf[:n], err)
	}
}
