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
