package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of one client connection: no exchange waits longer than these.
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 10 * time.Second
	// maxConnsPerClient bounds each client's loop in count; the stop
	// channel and the run's duration bound it in time.
	maxConnsPerClient = 50_000_000
	maxSamples        = 8
)

// backend is an echo server on loopback: on each connection it writes its
// name and "\n", then echoes everything back.
type backend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]bool
}

func startBackend(name string) (*backend, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &backend{name: name, ln: ln, cs: map[net.Conn]bool{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off a little rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b.mu.Lock()
		b.cs[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.cs, c)
				b.mu.Unlock()
				c.Close()
			}()
			// No connection of this benchmark lives longer than this.
			_ = c.SetDeadline(time.Now().Add(15 * time.Minute))
			if _, err := io.WriteString(c, b.name+"\n"); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

// close stops the backend and its connections, waiting at most 5 s.
func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		c.Close()
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// Failure kinds.
const (
	kindRefused = "refused"
	kindReset   = "reset"
	kindTimeout = "timeout"
	kindOther   = "other"
)

// classify sorts a failed exchange into connect refused, reset, timeout or
// other (end of file, wrong answer, ...).
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return kindReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return kindTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	}
	return kindOther
}

// Client kinds.
const (
	clientNew       = "new-connection"
	clientKeepAlive = "keep-alive"
	clientStream    = "long-stream"
)

// Sizes and pace of the long-lived clients.
const (
	keepAlivePause = 10 * time.Millisecond // between a keep-alive client's exchanges
	streamChunk    = 16 << 10              // what a long stream sends, then reads back, at a time
)

// load is three kinds of clients of addr. New-connection clients each open
// one connection after another: dial, send a line, read the server's name
// line and the echoed line, close. Keep-alive clients keep one connection
// and exchange a line on it every keepAlivePause. Long streams keep one
// connection and echo streamChunk bytes at a time through it, without a
// pause. A long-lived client whose connection fails counts one failure and
// connects again.
type load struct {
	addr    string
	names   map[string]bool
	ok      atomic.Int64
	newOK   atomic.Int64 // new-connection exchanges ok: one connection each
	failed  atomic.Int64
	byKind  map[string]*atomic.Int64 // failures by kind: refused, reset, ...
	byCli   map[string]*atomic.Int64 // failures by client kind
	mu      sync.Mutex
	samples []string
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(addr string, clients, keepAlive, streams int, names []string) *load {
	l := &load{
		addr:  addr,
		names: map[string]bool{},
		stop:  make(chan struct{}),
		byKind: map[string]*atomic.Int64{
			kindRefused: {}, kindReset: {}, kindTimeout: {}, kindOther: {},
		},
		byCli: map[string]*atomic.Int64{clientNew: {}, clientKeepAlive: {}, clientStream: {}},
	}
	for _, n := range names {
		l.names[n+"\n"] = true
	}
	for i := range clients {
		l.wg.Add(1)
		go l.client(i)
	}
	for range keepAlive {
		l.wg.Add(1)
		go l.longLived(clientKeepAlive, 32, keepAlivePause)
	}
	for range streams {
		l.wg.Add(1)
		go l.longLived(clientStream, streamChunk, 0)
	}
	return l
}

// fail counts a failed exchange of a client of kind cli.
func (l *load) fail(cli string, err error) {
	l.failed.Add(1)
	l.byCli[cli].Add(1)
	k := classify(err)
	l.byKind[k].Add(1)
	l.mu.Lock()
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, fmt.Sprintf("%s %s: %v", cli, k, err))
	}
	l.mu.Unlock()
}

// longLived is a keep-alive client or a long stream: it keeps a connection
// and echoes size bytes through it, pausing between exchanges.
func (l *load) longLived(cli string, size int, pause time.Duration) {
	defer l.wg.Done()
	msg := append(bytes.Repeat([]byte("k"), size-1), '\n')
	got := make([]byte, size)
	r := bufio.NewReaderSize(nil, 64<<10)
	for i := 0; i < maxConnsPerClient; i++ {
		if l.stopped() {
			return
		}
		c, err := net.DialTimeout("tcp4", l.addr, dialTimeout)
		if err != nil {
			l.fail(cli, fmt.Errorf("connect: %w", err))
			continue
		}
		r.Reset(c)
		err = l.converse(c, r, msg, got, pause)
		c.Close()
		if err != nil {
			l.fail(cli, err)
		}
	}
}

// converse reads the server's name, then echoes msg until the load stops
// or an exchange fails.
func (l *load) converse(c net.Conn, r *bufio.Reader, msg, got []byte, pause time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	name, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read name line: %w", err)
	}
	if !l.names[name] {
		return fmt.Errorf("unexpected name line %q", name)
	}
	for n := 0; n < maxConnsPerClient; n++ {
		if l.stopped() {
			return nil
		}
		if pause > 0 {
			time.Sleep(pause)
		}
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("exchange %d: send: %w", n, err)
		}
		if _, err := io.ReadFull(r, got); err != nil {
			return fmt.Errorf("exchange %d: read echo: %w", n, err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("exchange %d: wrong echo", n)
		}
		l.ok.Add(1)
	}
	return nil
}

// stopped reports whether the load was told to stop.
func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) client(id int) {
	defer l.wg.Done()
	r := bufio.NewReaderSize(nil, 256)
	for i := 0; i < maxConnsPerClient; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		err := l.exchange(r, fmt.Sprintf("client %d request %d\n", id, i))
		if err == nil {
			l.ok.Add(1)
			l.newOK.Add(1)
			continue
		}
		l.fail(clientNew, err)
	}
}

func (l *load) exchange(r *bufio.Reader, msg string) error {
	c, err := net.DialTimeout("tcp4", l.addr, dialTimeout)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	r.Reset(c)
	name, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read name line: %w", err)
	}
	if !l.names[name] {
		return fmt.Errorf("unexpected name line %q", name)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// finish stops the clients, waiting at most bound for those in the middle
// of an exchange (each exchange is itself bounded by dialTimeout and
// ioTimeout). It reports whether they all stopped.
func (l *load) finish(bound time.Duration) bool {
	close(l.stop)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(bound):
		return false
	}
}

func (l *load) sampleList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.samples...)
}
