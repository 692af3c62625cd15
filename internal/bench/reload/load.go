package main

import (
	"bufio"
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
			_ = c.SetDeadline(time.Now().Add(time.Minute))
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

// load is clients that each open one connection after another to addr:
// dial, send a line, read the server's name line and the echoed line,
// close.
type load struct {
	addr    string
	names   map[string]bool
	ok      atomic.Int64
	failed  atomic.Int64
	byKind  map[string]*atomic.Int64
	mu      sync.Mutex
	samples []string
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(addr string, clients int, names []string) *load {
	l := &load{
		addr:  addr,
		names: map[string]bool{},
		stop:  make(chan struct{}),
		byKind: map[string]*atomic.Int64{
			kindRefused: {}, kindReset: {}, kindTimeout: {}, kindOther: {},
		},
	}
	for _, n := range names {
		l.names[n+"\n"] = true
	}
	for i := range clients {
		l.wg.Add(1)
		go l.client(i)
	}
	return l
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
			continue
		}
		l.failed.Add(1)
		l.byKind[classify(err)].Add(1)
		l.mu.Lock()
		if len(l.samples) < maxSamples {
			l.samples = append(l.samples, fmt.Sprintf("%s: %v", classify(err), err))
		}
		l.mu.Unlock()
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
