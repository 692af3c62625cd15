package tlshello

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// MinPeekBuf is the smallest scratch buffer Peek accepts: MaxHello and 64
// bytes of TLS record headers, the most a ClientHello Parse accepts occupies.
const MinPeekBuf = maxWire

// Peek waits until a whole ClientHello has arrived on a connected TCP socket,
// through its syscall.RawConn, and returns the server name it asks for, as
// Parse does, without consuming anything: every byte stays in the socket, for
// the caller to read, splice or hand to a TLS server.
//
// It peeks at the socket (recvfrom with MSG_PEEK) until Parse decides on what
// has arrived, waiting for readiness through Go's poller in between. buf is
// scratch space of at least MinPeekBuf (MaxHello+64) bytes.
//
// To bound the wait, set a read deadline on the connection before calling
// Peek. When it passes, the error wraps the one the connection reports
// (errors.Is(err, os.ErrDeadlineExceeded) holds). When the first bytes are not
// a TLS ClientHello, Peek returns at once an error wrapping ErrNotTLS that
// quotes them. When the peer closes or shuts down its sending side before a
// whole ClientHello, the error wraps io.ErrUnexpectedEOF, or io.EOF if the
// peer sent nothing. A malformed ClientHello yields the *Error of Parse.
func Peek(rc syscall.RawConn, buf []byte) (sni string, err error) {
	if len(buf) < MinPeekBuf {
		return "", fmt.Errorf("tlshello: Peek needs a buffer of at least %d bytes, got %d", MinPeekBuf, len(buf))
	}
	p := peeker{buf: buf[:MinPeekBuf]}
	if err := rc.Read(p.step); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", fmt.Errorf("tlshello: no complete ClientHello within the deadline: %w", err)
		}
		return "", fmt.Errorf("tlshello: peeking at the ClientHello: %w", err)
	}
	switch {
	case p.err != nil:
		return "", p.err
	case p.eof && p.peeked == 0:
		return "", fmt.Errorf("tlshello: the peer closed after 0 bytes, before a complete ClientHello: %w", io.EOF)
	case p.eof:
		return "", fmt.Errorf("tlshello: the peer closed after %d bytes, before a complete ClientHello: %w", p.peeked, io.ErrUnexpectedEOF)
	}
	return p.sni, nil
}

// peeker is the state of one Peek across its RawConn.Read callbacks.
type peeker struct {
	buf    []byte
	peeked int // what the last peek saw

	sni     string
	hupSeen bool  // the peer had shut down at the last peek
	eof     bool  // the peer closed before a whole ClientHello
	err     error // a final error found in a callback
}

// step is the RawConn.Read callback. It returns false to wait for the socket
// to become readable and true when Peek is done.
func (p *peeker) step(fd uintptr) bool {
	for {
		n, _, err := unix.Recvfrom(int(fd), p.buf, unix.MSG_PEEK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			p.err = fmt.Errorf("tlshello: peeking at the ClientHello: %w", os.NewSyscallError("recvfrom", err))
			return true
		case n == 0:
			p.eof = true
			return true
		}
		p.peeked = n
		b := p.buf[:n]
		sni, err := Parse(b)
		switch {
		case err == nil:
			p.sni = sni
			return true
		case err == ErrNotTLS:
			p.err = fmt.Errorf("%w: the connection began with %s", ErrNotTLS, strconv.Quote(string(b[:min(n, 16)])))
			return true
		case err != ErrIncomplete:
			p.err = err
			return true
		}
		if n == len(p.buf) {
			// Parse decides within MinPeekBuf bytes: not reached.
			p.err = fmt.Errorf("tlshello: no complete ClientHello in %d bytes", n)
			return true
		}
		if p.hupSeen {
			// The peer had shut down before this peek: nothing more will come.
			p.eof = true
			return true
		}
		hup, err := peerShutdown(fd)
		if err != nil {
			p.err = fmt.Errorf("tlshello: peeking at the ClientHello: %w", err)
			return true
		}
		if hup {
			// Bytes may have arrived between the peek and the shutdown:
			// peek once more.
			p.hupSeen = true
			continue
		}
		// Wait for more bytes. Peeking left the socket readable, but Go's
		// poller is edge-triggered: it wakes us when more bytes (or a FIN)
		// arrive, at most once early.
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
