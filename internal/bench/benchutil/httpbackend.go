package benchutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Bounds of the backends' connections.
const (
	// backendIdle is how long a backend connection may wait for its next
	// request.
	backendIdle = time.Minute
	// maxRequestsPerConn bounds one backend connection's loop in count;
	// backendIdle and the context bound it in time.
	maxRequestsPerConn = 1 << 40
	// maxHeadLines bounds the header fields of a request.
	maxHeadLines = 200
)

// HTTPBackend is a small, fast HTTP/1.1 server on loopback: it answers
// every request with 200 and the same body, keeps connections alive unless
// the client asks otherwise, and reads request bodies that have a
// Content-Length (and refuses chunked ones). It needs little CPU, so the
// machine's CPU goes to the proxies measured.
type HTTPBackend struct {
	Name      string
	ln        net.Listener
	resp      []byte // the response, kept alive
	respClose []byte // the response, with Connection: close
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]bool
}

// StartHTTPBackend listens on addr ("127.0.0.1:0" for any port) and serves
// until ctx is done or Close is called.
func StartHTTPBackend(ctx context.Context, addr, name string, bodySize int) (*HTTPBackend, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	body := bytes.Repeat([]byte("x"), bodySize)
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(bodySize) + "\r\n"
	b := &HTTPBackend{
		Name:      name,
		ln:        ln,
		resp:      append([]byte(head+"\r\n"), body...),
		respClose: append([]byte(head+"Connection: close\r\n\r\n"), body...),
		conns:     map[net.Conn]bool{},
	}
	b.wg.Add(1)
	go b.serve(ctx)
	return b, nil
}

// Addr is the backend's address.
func (b *HTTPBackend) Addr() string { return b.ln.Addr().String() }

// serve accepts connections until ctx is done or the listener is closed.
func (b *HTTPBackend) serve(ctx context.Context) {
	defer b.wg.Done()
	stop := context.AfterFunc(ctx, func() { b.ln.Close() })
	defer stop()
	for ctx.Err() == nil {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off rather than spin.
			SleepCtx(ctx, 10*time.Millisecond)
			continue
		}
		b.mu.Lock()
		b.conns[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go b.handle(ctx, c)
	}
}

// handle serves one connection's requests until the client closes it,
// asks to close it, sends something this server does not take, stays idle
// longer than backendIdle, or ctx is done.
func (b *HTTPBackend) handle(ctx context.Context, c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	r := bufio.NewReaderSize(c, 8192)
	var deadlineSet time.Time
	for range maxRequestsPerConn {
		// Push the idle deadline on at most once a second: cheap, and
		// still bounded.
		if now := time.Now(); now.Sub(deadlineSet) > time.Second {
			_ = c.SetDeadline(now.Add(backendIdle))
			deadlineSet = now
		}
		keep, err := ReadRequest(r)
		if err != nil {
			if errors.Is(err, errUnsupported) {
				_, _ = c.Write([]byte("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}
			return
		}
		resp := b.resp
		if !keep {
			resp = b.respClose
		}
		if _, err := c.Write(resp); err != nil || !keep {
			return
		}
	}
}

// errUnsupported is a request this backend does not take: a chunked body.
var errUnsupported = errors.New("unsupported request")

// ReadRequest reads one request, head and body, and reports whether the
// connection stays open after the response.
func ReadRequest(r *bufio.Reader) (keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	keepAlive = bytes.Contains(line, []byte("HTTP/1.1"))
	var bodyLen int64
	for range maxHeadLines {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			if bodyLen > 0 {
				if _, err := r.Discard(int(bodyLen)); err != nil {
					return false, err
				}
			}
			return keepAlive, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("malformed header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			bodyLen, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil || bodyLen < 0 || bodyLen > 1<<30 {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false, errUnsupported
		case bytes.EqualFold(name, []byte("Connection")):
			v := bytes.ToLower(value)
			if bytes.Contains(v, []byte("close")) {
				keepAlive = false
			} else if bytes.Contains(v, []byte("keep-alive")) {
				keepAlive = true
			}
		}
	}
	return false, errors.New("too many header fields")
}

// Close stops the backend and its connections, waiting at most 5 s.
func (b *HTTPBackend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	WaitBounded(&b.wg, 5*time.Second)
}
