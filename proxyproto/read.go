package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"lb/sock"
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
	var hdr Header
	hlen := 0
	n, err := sock.Peek(rc, buf, func(b []byte) (bool, error) {
		h, l, err := Parse(b)
		switch {
		case err == nil:
			hdr, hlen = h, l
			return true, nil
		case err == ErrNotProxy:
			return false, fmt.Errorf("%w: the connection began with %s", ErrNotProxy, strconv.Quote(string(b[:min(len(b), 16)])))
		case err != ErrIncomplete:
			return false, err
		}
		if len(b) >= v2FixedLen && b[0] == v2Sig[0] {
			if total := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16])); total > len(buf) {
				return false, v2Errorf("header of %d bytes is longer than lb reads (max %d)", total, len(buf))
			}
		}
		return false, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded) && n == 0:
		return Header{}, fmt.Errorf("proxyproto: no header within the deadline: %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Header{}, fmt.Errorf("proxyproto: no complete header within the deadline: %w", err)
	case err == io.EOF && n == 0:
		return Header{}, fmt.Errorf("proxyproto: the peer closed after 0 bytes, before a complete header: %w", io.EOF)
	case err == io.EOF:
		return Header{}, fmt.Errorf("proxyproto: the peer closed after %d bytes, before a complete header: %w", n, io.ErrUnexpectedEOF)
	case errors.Is(err, ErrNotProxy), errors.As(err, new(*Error)):
		return Header{}, err
	default:
		return Header{}, fmt.Errorf("proxyproto: reading the header: %w", err)
	}
	// The header is all there: consume exactly it.
	done := 0
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for done < hlen {
			m, err := sock.Read(int(fd), buf[done:hlen])
			switch {
			case err == unix.EAGAIN:
				return false
			case err != nil:
				rerr = os.NewSyscallError("read", err)
				return true
			case m == 0:
				rerr = io.ErrUnexpectedEOF
				return true
			}
			done += m
		}
		return true
	}); err != nil {
		rerr = err
	}
	if rerr != nil {
		return Header{}, fmt.Errorf("proxyproto: consuming the %d-byte header: %w", hlen, rerr)
	}
	return hdr, nil
}
