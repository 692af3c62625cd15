package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"lb/proxy"
	"lb/reclaim"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/h1"
)

// hbPair returns the two ends of a TCP connection on loopback: lb's and
// the client's, both closed when the test ends.
func hbPair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close(); client.Close() })
	return lb, client
}

// hbHead is the start of a request head of about n bytes, never ended.
func hbHead(n int) []byte {
	var b bytes.Buffer
	b.WriteString("GET /slow HTTP/1.1\r\nHost: lb.test\r\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "X-Pad-%d: %s\r\n", i, strings.Repeat("p", min(1000, max(1, n-b.Len()-16))))
	}
	return b.Bytes()
}

// held returns the budget's total and the number of pending heads.
func (b *headBudget) heldNow() (int64, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held, len(b.pending)
}

// waitPending waits until b has n pending heads.
func waitPending(t *testing.T, b *headBudget, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, got := b.heldNow()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d heads pending (%d bytes held), want %d", got, held, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitHeld waits until b holds want bytes: every byte sent so far was
// read.
func waitHeld(t *testing.T, b *headBudget, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		held, n := b.heldNow()
		if held == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes held by %d heads, want %d", held, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// charged is what a pending head of these bytes is charged.
func charged(head []byte) int64 { return int64(len(head)) + bufSize }

// slowHead is a request head read through a headReader from a real
// connection whose client sent part of it and stopped.
type slowHead struct {
	r      *headReader
	client net.Conn
	done   chan error // what reading the head ended with
}

// startSlowHead makes a client send part, the start of a head whose first
// byte came at start, and reads it with b's accounting until the reader
// waits for more.
func startSlowHead(t *testing.T, b *headBudget, start time.Time, part []byte) *slowHead {
	t.Helper()
	lb, client := hbPair(t)
	if _, err := client.Write(part); err != nil {
		t.Fatal(err)
	}
	h := &slowHead{r: &headReader{c: lb, budget: b}, client: client, done: make(chan error, 1)}
	h.r.beginHead()
	h.r.start = start
	var req h1.Request
	br := bufio.NewReaderSize(h.r, bufSize)
	go func() {
		err := h1.ReadRequest(br, &req, h1.Limits{MaxHeaderBytes: 1 << 20, MaxHeaders: 1000})
		if e := h.r.endHead(); e != nil {
			err = e
		}
		h.done <- err
	}()
	return h
}

// result returns what reading h's head ended with.
func (h *slowHead) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the head's reader did not return")
		return nil
	}
}

// budgetStatus returns the status of err, a *budgetError, or 0.
func budgetStatus(err error) int {
	var be *budgetError
	if errors.As(err, &be) {
		return be.Status
	}
	return 0
}

// TestHeadBudgetShedsSlowestFirst: pending heads that take the budget
// over its limit shed the slowest first, by bytes per second since their
// first byte (not the oldest, not the smallest), whose reader, blocked on
// a real socket, is woken with a 408; the others stay, and once every head
// ended nothing is held.
func TestHeadBudgetShedsSlowestFirst(t *testing.T) {
	const limit = 160 << 10 // shedding stops at 150 KiB
	b := newHeadBudget(limit)
	b.mem.Free = func() {}
	now := time.Now()
	// Charges (bytes + the 8 KiB read buffer): about 48, 18 and 10 KiB,
	// 76 KiB in all.
	big, mid, small := hbHead(40<<10), hbHead(10<<10), hbHead(2<<10)
	oldest := startSlowHead(t, b, now.Add(-200*time.Second), big)    // 200 B/s
	slowest := startSlowHead(t, b, now.Add(-150*time.Second), mid)   // 70 B/s
	smallest := startSlowHead(t, b, now.Add(-time.Second/10), small) // 20 KB/s
	waitHeld(t, b, charged(big)+charged(mid)+charged(small))
	// The newest client, the fastest, takes the total over the limit once
	// it has sent 76 KiB: the total is then at most 8 KiB (a read) over,
	// and shedding the slowest is enough to be back under 150 KiB; then
	// the newest sends up to 80 KiB, and the total stays under the limit.
	newest := startSlowHead(t, b, time.Now(), hbHead(80<<10))
	if err := slowest.result(t); budgetStatus(err) != 408 || !strings.Contains(err.Error(), "http_head_budget") {
		t.Fatalf("the slowest head ended with %v, want a 408 that names http_head_budget", err)
	}
	waitHeld(t, b, charged(big)+charged(small)+charged(hbHead(80<<10)))
	for name, h := range map[string]*slowHead{"oldest": oldest, "smallest": smallest, "newest": newest} {
		select {
		case err := <-h.done:
			t.Errorf("the %s head ended with %v; only the slowest should have been shed", name, err)
		default:
		}
	}
	if held, _ := b.heldNow(); held > limit {
		t.Errorf("%d bytes held after shedding, over the limit of %d", held, limit)
	}
	// The clients go away: their heads fail, and give their charge back.
	for _, h := range []*slowHead{oldest, smallest, newest} {
		h.client.Close()
		if err := h.result(t); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("a head whose client closed ended with %v, want io.ErrUnexpectedEOF", err)
		}
	}
	if held, n := b.heldNow(); held != 0 || n != 0 {
		t.Errorf("%d bytes held by %d heads once every head ended, want none", held, n)
	}
}

// TestHeadBudgetTooLargeAlone: a head whose charge alone is over the
// limit can never fit: 431, and it gives its charge back.
func TestHeadBudgetTooLargeAlone(t *testing.T) {
	const limit = 64 << 10
	b := newHeadBudget(limit)
	b.mem.Free = func() {}
	big := startSlowHead(t, b, time.Now(), hbHead(60<<10)) // + 8 KiB > 64 KiB
	err := big.result(t)
	if budgetStatus(err) != 431 || !strings.Contains(err.Error(), "http_head_budget") {
		t.Fatalf("a head too large for the budget ended with %v, want a 431 that names http_head_budget", err)
	}
	if held, n := b.heldNow(); held != 0 || n != 0 {
		t.Errorf("%d bytes held by %d heads once every head ended, want none", held, n)
	}
}

// TestHeadBudgetWholeHeadFree: a head that arrives in one read is not
// charged: with the budget full, it is read, and sheds nobody.
func TestHeadBudgetWholeHeadFree(t *testing.T) {
	const limit = 64 << 10
	b := newHeadBudget(limit)
	b.mem.Free = func() {}
	// One slow head fills the budget to the byte.
	head := hbHead(limit - bufSize - 2000)
	full := startSlowHead(t, b, time.Now().Add(-time.Minute), head)
	waitHeld(t, b, charged(head))
	b.mu.Lock()
	b.pending[0].bytes += limit - b.held // the rest, as if it had come
	b.held = limit
	b.mu.Unlock()

	lb, client := hbPair(t)
	const req = "GET / HTTP/1.1\r\nHost: lb.test\r\nCookie: a=1\r\n\r\n"
	if _, err := io.WriteString(client, req); err != nil {
		t.Fatal(err)
	}
	r := &headReader{c: lb, budget: b}
	r.beginHead()
	br := bufio.NewReaderSize(r, bufSize)
	if _, err := br.Peek(len(req)); err != nil { // the request's one read
		t.Fatal(err)
	}
	var parsed h1.Request
	err := h1.ReadRequest(br, &parsed, h1.Limits{})
	if e := r.endHead(); e != nil {
		err = e
	}
	if err != nil || string(parsed.Target) != "/" {
		t.Fatalf("a whole head with the budget full: %v, target %q", err, parsed.Target)
	}
	if r.reads != 1 {
		t.Errorf("the head took %d reads, want 1", r.reads)
	}
	if held, n := b.heldNow(); held != limit || n != 1 {
		t.Errorf("%d bytes held by %d heads, want the slow head's %d alone", held, n, limit)
	}
	select {
	case err := <-full.done:
		t.Fatalf("the slow head was shed (%v) for a head that arrived whole", err)
	default:
	}
}

// TestHeadBudgetReclaim: after a burst took the total over its high mark, the
// memory is given back once the total is back near zero, and not before;
// the reclaim goroutine then ends. A small burst starts none, and a burst
// that ends well above zero frees nothing.
func TestHeadBudgetReclaim(t *testing.T) {
	const limit = 1 << 20 // high mark 256 KiB
	b := newHeadBudget(limit)
	freed := make(chan struct{}, 10)
	b.mem.Free = func() { freed <- struct{}{} }
	reclaiming := b.mem.Watching
	waitEnded := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for reclaiming() {
			if time.Now().After(deadline) {
				t.Fatal("the reclaim goroutine still runs after the burst")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	noFree := func(why string) {
		t.Helper()
		select {
		case <-freed:
			t.Fatalf("memory was freed %s", why)
		case <-time.After(reclaim.DefaultSettle + 3*reclaim.DefaultPoll):
		}
	}
	// A burst of n heads of 24 KiB each.
	burst := func(n int) []pendingHead {
		hs := make([]pendingHead, n)
		for i := range hs {
			if err := b.open(&hs[i], nil, time.Now(), 16<<10); err != nil {
				t.Fatal(err)
			}
		}
		return hs
	}

	hs := burst(4) // 96 KiB, under the high mark
	for i := range hs {
		_ = b.close(&hs[i])
	}
	if reclaiming() {
		t.Fatal("a burst under the high mark started a reclaim")
	}

	hs = burst(40) // 960 KiB
	noFree("while the burst's heads were pending")
	for i := range hs[:28] {
		_ = b.close(&hs[i])
	}
	noFree("while the total (288 KiB) was still over the high mark")
	for i := range hs[28:] {
		_ = b.close(&hs[28+i])
	}
	select {
	case <-freed:
	case <-time.After(10 * time.Second):
		t.Fatal("memory was not given back after the burst ended")
	}
	waitEnded()

	hs = burst(40)
	for i := range hs[:32] { // 192 KiB left, a fifth of the peak
		_ = b.close(&hs[i])
	}
	waitEnded()
	noFree("after a burst that did not fall back near zero")
	for i := range hs[32:] {
		_ = b.close(&hs[32+i])
	}
	if held, n := b.heldNow(); held != 0 || n != 0 {
		t.Errorf("%d bytes held by %d heads once every head ended, want none", held, n)
	}
}

// hbLog is a zerolog target tests read from.
type hbLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *hbLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *hbLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestServeConnSheds: through Frontend.ServeConn, the slowest of the
// clients holding unfinished heads is answered 408 and closed when the
// budget is full, and the request line logs why; a head that could never
// fit is answered 431; when the clients leave, the budget is empty.
func TestServeConnSheds(t *testing.T) {
	limit := 7 * charged(hbHead(24<<10)) / 2 // three heads of 24 KiB, not four
	log := &hbLog{}
	f := &Frontend{
		Name:             "web",
		Limits:           h1.Limits{MaxHeaderBytes: 1 << 20},
		RequestTimeout:   time.Minute,
		KeepAliveTimeout: time.Minute,
		Log:              zerolog.New(log),
		heads:            newHeadBudget(limit),
	}
	f.heads.mem.Free = func() {}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var pf proxy.Frontend // counts the connections until they end, parked or not
	t.Cleanup(func() { ln.Close(); wg.Wait(); pf.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			conn := pf.NewConn(c)
			wg.Add(1)
			go func() { defer wg.Done(); f.ServeConn(conn) }()
		}
	}()
	dial := func(head []byte) net.Conn {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(head); err != nil {
			t.Fatal(err)
		}
		return c
	}
	status := func(c net.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(line)
	}

	// Three clients of 24 KiB each are under the limit; a fourth sheds
	// the first, the slowest.
	head := hbHead(24 << 10)
	first := dial(head)
	waitHeld(t, f.heads, charged(head))
	time.Sleep(50 * time.Millisecond) // the first is the slowest by far
	var rest []net.Conn
	for n := 2; n <= 4; n++ {
		rest = append(rest, dial(head))
		if n < 4 {
			waitHeld(t, f.heads, int64(n)*charged(head))
		}
	}
	if got := status(first); got != "HTTP/1.1 408 Request Timeout" {
		t.Fatalf("the slowest client got %q, want a 408", got)
	}
	if n, err := first.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the shed client's connection is still open: %d bytes, %v", n, err)
	}
	waitPending(t, f.heads, 3)
	if l := log.String(); !strings.Contains(l, `"status":408`) || !strings.Contains(l, `"end":"head_budget"`) || !strings.Contains(l, "http_head_budget") {
		t.Errorf("no request line with status 408, end head_budget and an error naming http_head_budget in the log:\n%s", l)
	}

	for _, c := range rest {
		c.Close()
	}
	waitHeld(t, f.heads, 0)

	// A head larger than the budget on its own.
	big := dial(hbHead(int(limit)))
	if got := status(big); got != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Errorf("a head too large for the budget got %q, want a 431", got)
	}
	waitHeld(t, f.heads, 0)
}
