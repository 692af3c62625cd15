package tlshello

import (
	"errors"
	"fmt"
	"io"
	"lb/sock"
	"os"
	"strconv"
	"syscall"
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
	n, err := sock.Peek(rc, buf[:MinPeekBuf], func(b []byte) (bool, error) {
		name, err := Parse(b)
		switch {
		case err == nil:
			sni = name
			return true, nil
		case err == ErrNotTLS:
			return false, fmt.Errorf("%w: the connection began with %s", ErrNotTLS, strconv.Quote(string(b[:min(len(b), 16)])))
		case err != ErrIncomplete:
			return false, err
		}
		return false, nil
	})
	switch {
	case err == nil:
		return sni, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("tlshello: no complete ClientHello within the deadline: %w", err)
	case err == io.EOF && n == 0:
		return "", fmt.Errorf("tlshello: the peer closed after 0 bytes, before a complete ClientHello: %w", io.EOF)
	case err == io.EOF:
		return "", fmt.Errorf("tlshello: the peer closed after %d bytes, before a complete ClientHello: %w", n, io.ErrUnexpectedEOF)
	case errors.Is(err, ErrNotTLS), errors.As(err, new(*Error)):
		return "", err
	}
	return "", fmt.Errorf("tlshello: peeking at the ClientHello: %w", err)
}
