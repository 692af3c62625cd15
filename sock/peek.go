package sock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUndecided is Peek's error when the buffer filled before decide was
// done with what it held.
var ErrUndecided = errors.New("sock: the peek buffer filled before a decision")

// Peek looks at what a connected non-blocking socket received, through its
// syscall.RawConn, without consuming it (recvfrom with MSG_PEEK), until
// decide is done with the bytes that have arrived, waiting for more through
// Go's poller in between. decide sees every byte received so far, from the
// first, at each peek; it returns done when it has what it needs, an error
// to stop, or neither to wait for more.
//
// It returns how many bytes the last peek saw, and: nil when decide is
// done; decide's error; rc.Read's (a read deadline set on the connection
// bounds the wait: errors.Is(err, os.ErrDeadlineExceeded) then holds);
// io.EOF when the peer closed or shut down its sending side before decide
// was done, n saying after how many bytes; ErrUndecided when buf filled.
func Peek(rc syscall.RawConn, buf []byte, decide func(b []byte) (done bool, err error)) (n int, err error) {
	p := peeker{buf: buf, decide: decide}
	if err := rc.Read(p.step); err != nil {
		return p.n, err
	}
	return p.n, p.err
}

// peeker is the state of one Peek across its RawConn.Read callbacks.
type peeker struct {
	buf     []byte
	decide  func([]byte) (bool, error)
	n       int   // what the last peek saw
	hupSeen bool  // the peer had shut down at the last peek
	err     error // Peek's outcome, once step is done
}

// step is the RawConn.Read callback: false to wait for the socket to be
// readable, true when Peek is done.
func (p *peeker) step(fd uintptr) bool {
	for {
		n, _, err := unix.Recvfrom(int(fd), p.buf, unix.MSG_PEEK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			p.err = os.NewSyscallError("recvfrom", err)
			return true
		case n == 0:
			p.err = io.EOF
			return true
		}
		p.n = n
		done, err := p.decide(p.buf[:n])
		switch {
		case err != nil:
			p.err = err
			return true
		case done:
			return true
		case n == len(p.buf):
			p.err = fmt.Errorf("%w (%d bytes)", ErrUndecided, n)
			return true
		case p.hupSeen:
			// The peer had shut down before this peek: nothing more comes.
			p.err = io.EOF
			return true
		}
		hup, err := peerShutdown(fd)
		if err != nil {
			p.err = err
			return true
		}
		if hup {
			// Bytes may have come between the peek and the shutdown: peek
			// once more.
			p.hupSeen = true
			continue
		}
		// Wait for more bytes. The peek left the socket readable, but Go's
		// poller is edge-triggered: it wakes the reader when more bytes (or
		// a FIN) arrive, at most once early.
		return false
	}
}

// peerShutdown reports whether the peer has shut down its sending side (or
// the connection is gone), without waiting.
func peerShutdown(fd uintptr) (bool, error) {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, os.NewSyscallError("poll", err)
		}
		return n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0, nil
	}
}
