package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// minReadBuf (536) is the smallest scratch buffer Read accepts: the 16 fixed bytes
// of a v2 header and 520 bytes of addresses and TLVs, which typical v2
// headers fit in. A v1 header needs at most 107 bytes.
const minReadBuf = v2FixedLen + 520

// Read reads one PROXY protocol header, version 1 or 2, from a connected TCP
// socket through its syscall.RawConn, and consumes exactly the header's
// bytes: whatever the peer sent after the header stays in the socket for the
// caller, which may read or splice it.
//
// It peeks at the socket (recvfrom with MSG_PEEK) until Parse finds a whole
// header in what has arrived, waiting for readiness through Go's poller in
// between, then reads the header's bytes. buf is scratch space of at least
// 536 bytes; a v2 header longer than len(buf) is refused with an
// *Error.
//
// To bound the wait, set a read deadline on the connection before calling
// Read. When it passes, the error wraps the one the connection reports
// (errors.Is(err, os.ErrDeadlineExceeded) holds) and says whether anything
// had arrived. When the peer closes before a whole header, the error wraps
// io.ErrUnexpectedEOF, or io.EOF if the peer sent nothing. When the peer sends
// something other than a header, the error wraps ErrNotProxy and quotes the
// first bytes that came. A malformed header yields the *Error of Parse.
func Read(rc syscall.RawConn, buf []byte) (Header, error) {
	if len(buf) < minReadBuf {
		return Header{}, fmt.Errorf("proxyproto: Read needs a buffer of at least %d bytes, got %d", minReadBuf, len(buf))
	}
	r := reader{buf: buf}
	if err := rc.Read(r.step); err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && r.peeked == 0:
			return Header{}, fmt.Errorf("proxyproto: no header within the deadline: %w", err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return Header{}, fmt.Errorf("proxyproto: no complete header within the deadline: %w", err)
		}
		return Header{}, fmt.Errorf("proxyproto: reading the header: %w", err)
	}
	switch {
	case r.err != nil:
		return Header{}, r.err
	case r.eof && r.peeked == 0:
		return Header{}, fmt.Errorf("proxyproto: the peer closed after 0 bytes, before a complete header: %w", io.EOF)
	case r.eof:
		return Header{}, fmt.Errorf("proxyproto: the peer closed after %d bytes, before a complete header: %w", r.peeked, io.ErrUnexpectedEOF)
	}
	return r.hdr, nil
}

// reader is the state of one Read across its RawConn.Read callbacks.
type reader struct {
	buf    []byte
	peeked int // what the last peek saw

	hdr  Header
	hlen int // the header's length, once parsed
	done int // how much of it has been consumed

	hupSeen bool  // the peer had shut down at the last peek
	eof     bool  // the peer closed before a whole header
	err     error // a final error found in a callback
}

// step is the RawConn.Read callback. It returns false to wait for the socket
// to become readable and true when Read is done.
func (r *reader) step(fd uintptr) bool {
	for {
		if r.hlen > 0 {
			// A peek saw the whole header: consume exactly it.
			n, err := unix.Read(int(fd), r.buf[r.done:r.hlen])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				r.err = fmt.Errorf("proxyproto: consuming the %d-byte header: %w", r.hlen, os.NewSyscallError("read", err))
				return true
			case n == 0:
				r.peeked, r.eof = r.done, true
				return true
			}
			r.done += n
			if r.done == r.hlen {
				return true
			}
			continue
		}

		n, _, err := unix.Recvfrom(int(fd), r.buf, unix.MSG_PEEK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			r.err = fmt.Errorf("proxyproto: reading the header: %w", os.NewSyscallError("recvfrom", err))
			return true
		case n == 0:
			r.eof = true
			return true
		}
		r.peeked = n
		b := r.buf[:n]
		h, hlen, err := Parse(b)
		switch {
		case err == nil:
			r.hdr, r.hlen = h, hlen
			continue
		case err == ErrNotProxy:
			r.err = fmt.Errorf("%w: the connection began with %s", ErrNotProxy, strconv.Quote(string(b[:min(n, 16)])))
			return true
		case err != ErrIncomplete:
			r.err = err
			return true
		}

		if n >= v2FixedLen && b[0] == v2Sig[0] {
			if total := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16])); total > len(r.buf) {
				r.err = v2Errorf("header of %d bytes is longer than lb reads (max %d)", total, len(r.buf))
				return true
			}
		}
		if n == len(r.buf) {
			// Parse decides within 107 bytes for v1, and v2 was checked
			// above; this is not reached.
			r.err = fmt.Errorf("proxyproto: no complete header in %d bytes", n)
			return true
		}
		if r.hupSeen {
			// The peer had shut down before this peek: nothing more will come.
			r.eof = true
			return true
		}
		hup, err := peerShutdown(fd)
		if err != nil {
			r.err = fmt.Errorf("proxyproto: reading the header: %w", err)
			return true
		}
		if hup {
			// Bytes may have arrived between the peek and the shutdown:
			// peek once more.
			r.hupSeen = true
			continue
		}
		// Wait for more bytes. Peeking left the socket readable, but Go's
		// poller is edge-triggered: it wakes us when more bytes (or a FIN)
		// arrive, at most once early.
		return false
	}
}

// peerShutdown reports whether the peer has shut down its sending side
// (or the connection is gone), without waiting.
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
