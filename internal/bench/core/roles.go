package main

// The child processes of the benchmark, each this same program started
// again with -role, pinned to the load CPU: the backend (an HTTP server and
// a TCP sink), the idle-connection client and the bulk client. Each runs in
// a process of its own, so that its file descriptors (8,000 client
// connections, and as many on the backend's side) count against its own
// limit, and its CPU time is never the proxy's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"lb/internal/bench/benchutil"
)

// Bounds of the children.
const (
	// sinkIdle is how long a sink connection may stay silent.
	sinkIdle = time.Minute
	// maxSinkReads bounds a sink connection's loop in count (64 TiB in
	// 256 KiB reads); sinkIdle and the context bound it in time.
	maxSinkReads = 1 << 28
	// idleDialParallel is how many idle connections are being dialled at
	// once; their exchanges then run all at once.
	idleDialParallel = 128
	// idleDialTimeout and idleIOTimeout bound one idle connection's dial,
	// and then its exchange.
	idleDialTimeout = 3 * time.Second
	idleIOTimeout   = 5 * time.Second
	// maxErrorSamples is how many error messages a child reports.
	maxErrorSamples = 4
)

// roleFlags are the flags of the children.
type roleFlags struct {
	addr     string        // backend: the HTTP address; clients: where to connect
	sinkAddr string        // backend: the sink's address
	bigAddr  string        // backend: the address of the server of bigBody responses
	h2cAddr  string        // backend: the address of the HTTP/2 server (h2c)
	body     int           // the HTTP responses' body size
	conns    int           // idle: connections
	bytes    int64         // bulk: bytes to send, all streams together
	streams  int           // bulk: parallel connections
	life     time.Duration // the most a child lives
}

// runRole runs a child role and returns its exit status.
func runRole(role string, args []string) int {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	var f roleFlags
	fs.StringVar(&f.addr, "addr", "", "address")
	fs.StringVar(&f.sinkAddr, "sink", "", "sink address")
	fs.StringVar(&f.bigAddr, "big", "", "address of the server of 1 MiB responses")
	fs.StringVar(&f.h2cAddr, "h2c", "", "address of the HTTP/2 server (cleartext, prior knowledge)")
	fs.IntVar(&f.body, "body", 128, "body size")
	fs.IntVar(&f.conns, "conns", 0, "connections")
	fs.Int64Var(&f.bytes, "bytes", 0, "bytes")
	fs.IntVar(&f.streams, "streams", 1, "streams")
	fs.DurationVar(&f.life, "life", 10*time.Minute, "the most this process lives")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := benchutil.RaiseNoFile(); err != nil {
		fmt.Fprintf(os.Stderr, "bench-core %s: %v\n", role, err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ctx, cancelLife := context.WithTimeout(ctx, f.life)
	defer cancelLife()
	var err error
	switch role {
	case "backend":
		err = runBackend(ctx, f)
	case "idle":
		err = runIdle(ctx, f, os.Stdin, os.Stdout)
	case "bulk":
		err = runBulk(ctx, f, os.Stdout)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-core %s: %v\n", role, err)
		return 1
	}
	return 0
}

// runBackend serves HTTP on f.addr, bigBody responses on f.bigAddr (if
// set) and the sink on f.sinkAddr until ctx is done.
func runBackend(ctx context.Context, f roleFlags) error {
	b, err := benchutil.StartHTTPBackend(ctx, f.addr, "s1", f.body)
	if err != nil {
		return err
	}
	defer b.Close()
	if f.bigAddr != "" {
		big, err := benchutil.StartHTTPBackend(ctx, f.bigAddr, "big", bigBody)
		if err != nil {
			return err
		}
		defer big.Close()
	}
	if f.h2cAddr != "" {
		stop, err := startH2C(ctx, f.h2cAddr, f.body)
		if err != nil {
			return err
		}
		defer stop()
	}
	s, err := startSink(ctx, f.sinkAddr)
	if err != nil {
		return err
	}
	defer s.close()
	<-ctx.Done()
	return nil
}

// startH2C serves HTTP/2 in cleartext (prior knowledge) on addr, with
// net/http's server: every request gets body bytes, as the HTTP/1.1
// backend answers. stop ends it.
func startH2C(ctx context.Context, addr string, body int) (stop func(), err error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("h2c backend: %w", err)
	}
	payload := bytes.Repeat([]byte("x"), body)
	size := strconv.Itoa(body)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protos,
		ErrorLog:  log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", size)
			_, _ = w.Write(payload)
		}),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// sink reads each connection to its end, then writes the number of bytes
// it read, in decimal and a newline, and closes it: the bulk client checks
// that every byte went through.
type sink struct {
	ln net.Listener
	wg sync.WaitGroup
}

// startSink listens on addr and serves until ctx is done.
func startSink(ctx context.Context, addr string) (*sink, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{ln: ln}
	s.wg.Add(1)
	go s.serve(ctx)
	return s, nil
}

// serve accepts connections until ctx is done or the listener is closed.
func (s *sink) serve(ctx context.Context) {
	defer s.wg.Done()
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for ctx.Err() == nil {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			benchutil.SleepCtx(ctx, 10*time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.drain(ctx, c)
	}
}

// drain reads c to its end, answers the count and closes c.
func (s *sink) drain(ctx context.Context, c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, 256<<10)
	var n int64
	var deadlineSet time.Time
	for range maxSinkReads {
		if now := time.Now(); now.Sub(deadlineSet) > time.Second {
			_ = c.SetDeadline(now.Add(sinkIdle))
			deadlineSet = now
		}
		k, err := c.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			_, _ = c.Write([]byte(strconv.FormatInt(n, 10) + "\n"))
			return
		}
		if err != nil {
			return
		}
	}
}

// close stops the sink, waiting at most 5 s for its connections.
func (s *sink) close() {
	s.ln.Close()
	benchutil.WaitBounded(&s.wg, 5*time.Second)
}

// idleReport is what the idle client tells, one JSON line at each step.
type idleReport struct {
	Phase string `json:"phase"` // "opened", then "checked"
	// Opened: connections that got their response, and those that did
	// not, by reason.
	Served  int            `json:"served"`
	Failed  int            `json:"failed"`
	Reasons map[string]int `json:"reasons,omitempty"`
	Samples []string       `json:"samples,omitempty"`
	Seconds float64        `json:"seconds"`
	// Checked: of the served connections, those still open, closed by
	// the other end, reset.
	Alive  int `json:"alive"`
	Closed int `json:"closed"`
	Reset  int `json:"reset"`
}

// idleClient is the connections of the idle role.
type idleClient struct {
	addr  string
	body  int
	sem   chan struct{}
	mu    sync.Mutex
	conns []net.Conn
	rep   idleReport
}

// runIdle opens f.conns connections to f.addr, each sending one request
// and reading its response, and holds them. It reports "opened" on out,
// then for each "check" line on in reports "checked"; at the end of in, or
// when ctx is done, it closes them all.
func runIdle(ctx context.Context, f roleFlags, in io.Reader, out io.Writer) error {
	if f.conns < 1 {
		return errors.New("-conns must be at least 1")
	}
	ic := &idleClient{addr: f.addr, body: f.body, sem: make(chan struct{}, idleDialParallel),
		rep: idleReport{Phase: "opened", Reasons: map[string]int{}}}
	defer ic.closeAll()
	start := time.Now()
	var wg sync.WaitGroup
	for range f.conns {
		if ctx.Err() != nil {
			break
		}
		select {
		case ic.sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go ic.open(ctx, &wg)
	}
	if !benchutil.WaitBounded(&wg, idleDialTimeout+idleIOTimeout+10*time.Second) {
		return errors.New("idle connections still opening after their time-outs")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ic.rep.Seconds = time.Since(start).Seconds()
	enc := json.NewEncoder(out)
	if err := enc.Encode(ic.rep); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	lines := make(chan string)
	go readLines(ctx, in, lines)
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil // the end of in: done
			}
			if line != "check" {
				return fmt.Errorf("unknown command %q", line)
			}
			if err := enc.Encode(ic.check()); err != nil {
				return fmt.Errorf("report: %w", err)
			}
		}
	}
}

// open opens one connection, sends the request and reads the response;
// it keeps the connection if that worked.
func (ic *idleClient) open(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	d := net.Dialer{Timeout: idleDialTimeout}
	c, err := d.DialContext(ctx, "tcp4", ic.addr)
	<-ic.sem
	if err != nil {
		ic.fail("connect", err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(idleIOTimeout))
	if _, err := benchutil.Exchange(c, bufio.NewReaderSize(c, 1024), ic.body); err != nil {
		c.Close()
		ic.fail("exchange", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	ic.mu.Lock()
	defer ic.mu.Unlock()
	ic.conns = append(ic.conns, c)
	ic.rep.Served++
}

// fail counts a connection that was not served.
func (ic *idleClient) fail(step string, err error) {
	reason := step + ": " + errReason(err)
	ic.mu.Lock()
	defer ic.mu.Unlock()
	ic.rep.Failed++
	ic.rep.Reasons[reason]++
	if len(ic.rep.Samples) < maxErrorSamples {
		ic.rep.Samples = append(ic.rep.Samples, fmt.Sprintf("%s: %v", step, err))
	}
}

// errReason sorts an error into a few kinds, for counting.
func errReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, benchutil.ErrClosed):
		return "closed"
	}
	return "other"
}

// check tells, without blocking, which of the served connections are still
// open: a peek that would block means open, one that reads nothing means
// closed by the other end.
func (ic *idleClient) check() idleReport {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	rep := idleReport{Phase: "checked"}
	var b [1]byte
	for _, c := range ic.conns {
		switch peek(c, b[:]) {
		case peekOpen:
			rep.Alive++
		case peekClosed:
			rep.Closed++
		default:
			rep.Reset++
		}
	}
	return rep
}

// What a peek at a connection found.
const (
	peekOpen = iota
	peekClosed
	peekError
)

// peek looks at c without reading from it or blocking.
func peek(c net.Conn, b []byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peekError
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return peekError
	}
	res := peekError
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			res = peekOpen
		case err == nil && n == 0:
			res = peekClosed
		case err == nil:
			res = peekOpen // data nobody asked for, but open
		}
		return true // never wait
	})
	if err != nil {
		return peekError
	}
	return res
}

// closeAll closes every connection held.
func (ic *idleClient) closeAll() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for _, c := range ic.conns {
		c.Close()
	}
	ic.conns = nil
}

// readLines sends the lines of r to lines and closes it at the end of r,
// or once ctx is done.
func readLines(ctx context.Context, r io.Reader, lines chan<- string) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		case <-ctx.Done():
			return
		}
	}
}

// bulkReport is what the bulk client tells, as one JSON line.
type bulkReport struct {
	Bytes   int64    `json:"bytes"` // sent and counted by the sink
	Seconds float64  `json:"seconds"`
	Errors  []string `json:"errors,omitempty"`
}

// runBulk sends f.bytes to f.addr over f.streams connections at once, each
// its share then a half-close, and checks each count the sink answers. It
// reports on out.
func runBulk(ctx context.Context, f roleFlags, out io.Writer) error {
	if f.streams < 1 || f.bytes < int64(f.streams) {
		return errors.New("-streams must be at least 1, and -bytes at least -streams")
	}
	buf := make([]byte, 256<<10)
	counts := make([]int64, f.streams)
	errs := make([]error, f.streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range f.streams {
		share := f.bytes / int64(f.streams)
		if i == 0 {
			share += f.bytes % int64(f.streams)
		}
		wg.Add(1)
		go bulkStream(ctx, f.addr, share, buf, &counts[i], &errs[i], &wg)
	}
	wg.Wait() // each stream stops when ctx is done
	rep := bulkReport{Seconds: time.Since(start).Seconds()}
	for i := range f.streams {
		rep.Bytes += counts[i]
		if errs[i] != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("stream %d: %v", i+1, errs[i]))
		}
	}
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// bulkStream sends n bytes (buf over and over) on one connection, closes
// its sending side, and reads the sink's count: *count is n if the sink
// got them all.
func bulkStream(ctx context.Context, addr string, n int64, buf []byte, count *int64, errp *error, wg *sync.WaitGroup) {
	defer wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		*errp = fmt.Errorf("connect: %w", err)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for left := n; left > 0; {
		k := int64(len(buf))
		if left < k {
			k = left
		}
		w, err := c.Write(buf[:k])
		left -= int64(w)
		if err != nil {
			*errp = fmt.Errorf("send, %d bytes left: %w", left, err)
			return
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		*errp = fmt.Errorf("half-close: %w", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		*errp = fmt.Errorf("read the sink's count: %w", err)
		return
	}
	got, err := strconv.ParseInt(line[:len(line)-1], 10, 64)
	if err != nil || got != n {
		*errp = fmt.Errorf("the sink counted %q bytes, sent %d", line, n)
		return
	}
	*count = got
}
