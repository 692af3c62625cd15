package benchutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Bounds of the HTTP client helpers.
const (
	// maxRespHeaders bounds the header fields of a response.
	maxRespHeaders = 200
	// maxChunks bounds the chunks of a chunked response body.
	maxChunks = 1 << 20
	// probeTimeout bounds Probe's connect, and then its exchange.
	probeTimeout = 5 * time.Second
)

// ErrClosed is ReadResponse's error when the connection ends before a
// response starts.
var ErrClosed = errors.New("connection closed")

// Request is the request the benchmarks' clients send, again and again.
var Request = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")

// Exchange sends the request on conn and reads the response with r (which
// reads conn). It reports whether the connection may carry another request.
func Exchange(conn net.Conn, r *bufio.Reader, bodySize int) (keepAlive bool, err error) {
	if _, err := conn.Write(Request); err != nil {
		return false, fmt.Errorf("send: %w", err)
	}
	return ReadResponse(r, bodySize)
}

// ReadResponse reads a response, head and body, checks it is 200 with a
// body of bodySize bytes, and reports whether the connection stays open.
func ReadResponse(r *bufio.Reader, bodySize int) (keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read response: %w", ErrClosed)
		}
		return false, fmt.Errorf("read response: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	keepAlive = line[7] == '1'
	status, ok := parseUint(line[9:12])
	if !ok {
		return false, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	length, chunked, headEnd := int64(-1), false, false
	for range maxRespHeaders {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return false, fmt.Errorf("read response head: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			headEnd = true
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("malformed header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseUint(value)
			if !ok {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			v := bytes.ToLower(value)
			if bytes.Contains(v, []byte("close")) {
				keepAlive = false
			} else if bytes.Contains(v, []byte("keep-alive")) {
				keepAlive = true
			}
		}
	}
	if !headEnd {
		return false, fmt.Errorf("more than %d header fields", maxRespHeaders)
	}
	var n int64
	switch {
	case chunked:
		n, err = readChunked(r)
		if err != nil {
			return false, err
		}
	case length >= 0:
		d, err := r.Discard(int(length))
		if err != nil {
			return false, fmt.Errorf("read body (%d of %d bytes): %w", d, length, err)
		}
		n = length
	default:
		return false, fmt.Errorf("status %d without Content-Length or chunked body", status)
	}
	if status != 200 {
		return false, fmt.Errorf("status %d", status)
	}
	if n != int64(bodySize) {
		return false, fmt.Errorf("body of %d bytes, want %d", n, bodySize)
	}
	return keepAlive, nil
}

// readChunked reads a chunked body and its trailer, and returns the
// body's length.
func readChunked(r *bufio.Reader) (int64, error) {
	var total int64
	for range maxChunks {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("read chunk size: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseHex(bytes.TrimSpace(line))
		if !ok {
			return 0, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for range maxRespHeaders {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return 0, fmt.Errorf("read trailer: %w", err)
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return total, nil
				}
			}
			return 0, errors.New("trailer too long")
		}
		if _, err := r.Discard(int(size) + 2); err != nil {
			return 0, fmt.Errorf("read chunk: %w", err)
		}
		total += size
	}
	return 0, errors.New("too many chunks")
}

// parseUint parses a decimal number of up to 18 digits.
func parseUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHex parses a hexadecimal number of up to 15 digits.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(v)
	}
	return n, true
}

// Probe sends one request to addr and checks the answer, bounded.
func Probe(ctx context.Context, addr string, bodySize int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*probeTimeout)
	defer cancel()
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	_, err = Exchange(conn, bufio.NewReader(conn), bodySize)
	return err
}
