package sock

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// TestPeek waits for what decide needs across several arrivals, consumes
// nothing, and reports the peer's close and the deadline.
func TestPeek(t *testing.T) {
	for _, tc := range []struct {
		name   string
		send   []string // written with pauses between
		close  bool
		want   int // bytes the last peek saw
		err    error
		reason string
	}{
		{name: "in pieces", send: []string{"ab", "cd", "efgh"}, want: 8},
		{name: "closed early", send: []string{"abc"}, close: true, want: 3, err: io.EOF},
		{name: "closed before anything", close: true, want: 0, err: io.EOF},
		{name: "nothing", want: 0, err: os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, peer := pair(t)
			raw := s.TCPConn
			rc, err := raw.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for _, m := range tc.send {
					peer.Write([]byte(m))
					time.Sleep(20 * time.Millisecond)
				}
				if tc.close {
					peer.CloseWrite()
				}
			}()
			deadline := 10 * time.Second
			if tc.err == os.ErrDeadlineExceeded {
				deadline = 100 * time.Millisecond
			}
			raw.SetReadDeadline(time.Now().Add(deadline))
			buf := make([]byte, 64)
			n, err := Peek(rc, buf, func(b []byte) (bool, error) { return len(b) >= 8, nil })
			if n != tc.want || !errors.Is(err, tc.err) && err != tc.err {
				t.Fatalf("Peek = %d, %v; want %d, %v", n, err, tc.want, tc.err)
			}
			if tc.err == nil {
				// Nothing was consumed.
				raw.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(io.LimitReader(raw, 8))
				if err != nil || string(got) != "abcdefgh" {
					t.Fatalf("read after Peek: %q, %v", got, err)
				}
			}
		})
	}
	// A decide that fails stops at once; a full buffer is ErrUndecided.
	s, peer := pair(t)
	rc, _ := s.TCPConn.SyscallConn()
	peer.Write([]byte("0123456789"))
	s.TCPConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	boom := errors.New("boom")
	if _, err := Peek(rc, make([]byte, 64), func(b []byte) (bool, error) { return false, boom }); err != boom {
		t.Errorf("decide's error: got %v", err)
	}
	if n, err := Peek(rc, make([]byte, 4), func(b []byte) (bool, error) { return false, nil }); n != 4 || !errors.Is(err, ErrUndecided) {
		t.Errorf("full buffer: %d, %v", n, err)
	}
}
