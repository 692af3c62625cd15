package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"lb/internal/bench/benchutil"
)

// Bounds of the clients.
const (
	dialTimeout = 5 * time.Second
	// ioTimeout bounds one request, from sending it to the end of the
	// response's body.
	ioTimeout = 5 * time.Second
	// maxRequestsPerClient bounds a client's loop in count; the end of the
	// measurement and the context bound it in time.
	maxRequestsPerClient = 1 << 40
	// reconnectPause is the pause after a failed connect, so that a target
	// that is down is not hammered.
	reconnectPause = 10 * time.Millisecond
	// maxRespHeaders bounds the header fields of a response.
	maxRespHeaders = 200
	// maxChunks bounds the chunks of a chunked response body.
	maxChunks = 1 << 20
	// maxSamples is how many error messages are kept, per client and per
	// measurement.
	maxSamples = 4
)

// request is the request every client sends, again and again.
var request = []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")

// tally is what clients count during the measurement window.
type tally struct {
	hist hist
	// ok counts the requests answered 200 with the whole body.
	ok uint64
	// errors counts the requests that failed: refused or failed connect,
	// a reset or closed connection, a time-out, another status, a wrong
	// body.
	errors uint64
	// reconnects counts the connections opened during the window: with
	// keep-alive working, none.
	reconnects uint64
	samples    []string
}

// add adds o to t.
func (t *tally) add(o *tally) {
	t.hist.merge(&o.hist)
	t.ok += o.ok
	t.errors += o.errors
	t.reconnects += o.reconnects
	for _, s := range o.samples {
		if len(t.samples) < maxSamples {
			t.samples = append(t.samples, s)
		}
	}
}

// client is one connection's worth of load: one keep-alive connection,
// one request after the other, reconnecting after an error.
type client struct {
	addr       string
	bodySize   int
	start, end time.Time // the measurement window
	t          tally
}

// load is the clients of one measurement.
type load struct {
	start, end time.Time
	clients    []*client
	wg         sync.WaitGroup
}

// startLoad starts clients, spread over addrs in turn, that warm up for
// warmup and are then measured for dur.
func startLoad(ctx context.Context, addrs []string, clients, bodySize int, warmup, dur time.Duration) *load {
	now := time.Now()
	l := &load{start: now.Add(warmup), end: now.Add(warmup + dur)}
	for i := range clients {
		c := &client{addr: addrs[i%len(addrs)], bodySize: bodySize, start: l.start, end: l.end}
		l.clients = append(l.clients, c)
		l.wg.Add(1)
		go c.run(ctx, &l.wg)
	}
	return l
}

// wait waits for the clients to stop, and returns their tally. The clients
// stop at the end of the window, each once its request in progress is done
// (at most dialTimeout or ioTimeout), or when ctx is done.
func (l *load) wait() (*tally, error) {
	bound := time.Until(l.end) + dialTimeout + ioTimeout + 5*time.Second
	if !waitBounded(&l.wg, bound) {
		return nil, fmt.Errorf("clients still running %v after the end of the measurement", bound)
	}
	var t tally
	for _, c := range l.clients {
		t.add(&c.t)
	}
	return &t, nil
}

// run sends requests until the end of the window or ctx is done.
func (c *client) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	r := bufio.NewReaderSize(nil, 16<<10)
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	d := net.Dialer{Timeout: dialTimeout}
	for range maxRequestsPerClient {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		if !t0.Before(c.end) {
			return
		}
		measuring := !t0.Before(c.start)
		if conn == nil {
			var err error
			conn, err = d.DialContext(ctx, "tcp4", c.addr)
			if err != nil {
				conn = nil
				c.fail(measuring, fmt.Errorf("connect: %w", err))
				benchutil.SleepCtx(ctx, reconnectPause)
				continue
			}
			if measuring {
				c.t.reconnects++
			}
			r.Reset(conn)
			t0 = time.Now()
		}
		_ = conn.SetDeadline(t0.Add(ioTimeout))
		keep, err := exchange(conn, r, c.bodySize)
		took := time.Since(t0)
		if err != nil {
			c.fail(measuring, err)
			conn.Close()
			conn = nil
			continue
		}
		if measuring {
			c.t.ok++
			c.t.hist.record(took)
		}
		if !keep {
			conn.Close()
			conn = nil
		}
	}
}

// fail counts a failed request, if in the window, and keeps its message
// (any time: failures of the warm-up tell what is wrong too).
func (c *client) fail(measuring bool, err error) {
	if measuring {
		c.t.errors++
	}
	if len(c.t.samples) < maxSamples {
		when := "warm-up"
		if measuring {
			when = "measured"
		}
		c.t.samples = append(c.t.samples, fmt.Sprintf("%s, %s: %v", c.addr, when, err))
	}
}

// exchange sends the request on conn and reads the response with r (which
// reads conn). It reports whether the connection may carry another request.
func exchange(conn net.Conn, r *bufio.Reader, bodySize int) (keepAlive bool, err error) {
	if _, err := conn.Write(request); err != nil {
		return false, fmt.Errorf("send: %w", err)
	}
	return readResponse(r, bodySize)
}

// readResponse reads a response, head and body, checks it is 200 with a
// body of bodySize bytes, and reports whether the connection stays open.
func readResponse(r *bufio.Reader, bodySize int) (keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return false, errors.New("read response: connection closed")
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

// probe sends one request to addr and checks the answer, bounded.
func probe(ctx context.Context, addr string, bodySize int) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout+ioTimeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	_, err = exchange(conn, bufio.NewReader(conn), bodySize)
	return err
}
