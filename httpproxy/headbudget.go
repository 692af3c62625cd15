package httpproxy

import (
	"fmt"
	"lb/reclaim"
	"net"
	"slices"
	"sync"
	"time"
)

// headBudget bounds the memory that request heads still arriving hold,
// over every HTTP frontend of the process (global.http_head_budget).
//
// A head that arrives in one read is never seen here: it costs nothing.
// A head that needs a second read is pending from then on, until it is
// complete or fails, and is charged its bytes so far plus the read buffer
// its connection holds (pendingHead.charge). When a charge takes the
// total over the limit, pending heads are shed, slowest first (fewest
// bytes per second since their first byte), until the total is a margin
// under the limit; a shed head's connection is answered 408 and closed. A
// head whose own charge is over the limit could never fit: 431.
//
// A burst, the total over a fourth of the limit (at most 4 MiB), is
// reclaimed after (package reclaim): once it has fallen back near zero,
// the memory it left goes back to the operating system.
type headBudget struct {
	limit int64
	// mem is the total's burst watch; its level follows held.
	mem reclaim.Burst

	mu      sync.Mutex
	held    int64          // the charges of the pending heads
	pending []*pendingHead // in no order
	sorted  []*pendingHead // scratch of shed
}

// pendingHead is a request head charged to a headBudget. Its fields are
// guarded by the budget's mutex.
type pendingHead struct {
	c     net.Conn  // woken by a read deadline in the past when shed
	start time.Time // the head's first byte
	bytes int64     // the head's bytes received
	idx   int       // in pending; -1 when not pending
	// err says why the head was shed; nil when it was not.
	err *budgetError
}

// charge is what h holds: its bytes and its connection's read buffer.
func (h *pendingHead) charge() int64 { return h.bytes + bufSize }

// budgetError is a request head refused by the budget: Status is 408
// (shed) or 431 (too large for the budget on its own).
type budgetError struct {
	Status int
	msg    string
}

func (e *budgetError) Error() string { return e.msg }

// endHeadBudget is the end of a request whose head the budget refused.
const endHeadBudget = "head_budget"

// reclaimHighMax caps the total that makes a burst.
const reclaimHighMax = 4 << 20

// newHeadBudget returns a budget of limit bytes; nil (no budget) when
// limit is 0 or less.
func newHeadBudget(limit int64) *headBudget {
	if limit <= 0 {
		return nil
	}
	b := &headBudget{limit: limit}
	b.mem.High = min(limit/4, reclaimHighMax)
	return b
}

// ShareHeadBudget gives the frontends fs one budget of limit bytes for the
// request heads still arriving on their connections, together
// (global.http_head_budget); limit <= 0 means no bound. Call it before
// they serve.
func ShareHeadBudget(limit int64, fs ...*Frontend) {
	b := newHeadBudget(limit)
	for _, f := range fs {
		f.heads = b
	}
}

// charge changes the total by n; b.mu is held.
func (b *headBudget) charge(n int64) {
	b.held += n
	b.mem.Add(n)
}

// open makes h pending: its head, whose first byte came at start, did not
// arrive in its first read; got bytes came so far. It returns a
// *budgetError when h does not fit.
func (b *headBudget) open(h *pendingHead, c net.Conn, start time.Time, got int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	*h = pendingHead{c: c, start: start, bytes: got, idx: len(b.pending)}
	b.pending = append(b.pending, h)
	b.charge(h.charge())
	return b.fit(h)
}

// add charges pending h n more bytes. It returns a *budgetError when h
// was shed, now or before.
func (b *headBudget) add(h *pendingHead, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.err != nil {
		return h.err
	}
	h.bytes += n
	b.charge(n)
	return b.fit(h)
}

// close ends pending h: its head is complete, or failed. It returns a
// *budgetError when h was shed before.
func (b *headBudget) close(h *pendingHead) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.err != nil {
		return h.err
	}
	b.remove(h)
	return nil
}

// remove takes h off pending and its charge off the total.
func (b *headBudget) remove(h *pendingHead) {
	last := b.pending[len(b.pending)-1]
	b.pending[h.idx], last.idx = last, h.idx
	b.pending[len(b.pending)-1] = nil
	b.pending = b.pending[:len(b.pending)-1]
	h.idx = -1
	b.charge(-h.charge())
}

// fit sheds heads until the total is within the limit, after h's charge
// grew. It returns h's error when h is shed.
func (b *headBudget) fit(h *pendingHead) error {
	if b.held <= b.limit {
		return nil
	}
	if c := h.charge(); c > b.limit {
		b.remove(h)
		h.err = &budgetError{Status: 431, msg: fmt.Sprintf(
			"request head of %d bytes, with its %d-byte read buffer, is larger than http_head_budget (%d bytes) on its own",
			h.bytes, bufSize, b.limit)}
		return h.err
	}
	b.shed(time.Now())
	if h.err != nil { // not a nil *budgetError in an error
		return h.err
	}
	return nil
}

// shed sheds the slowest pending heads until the total is under the limit
// by a sixteenth of it, so that shedding, which sorts every pending head,
// is not done for every byte that arrives.
func (b *headBudget) shed(now time.Time) {
	b.sorted = append(b.sorted[:0], b.pending...)
	slices.SortFunc(b.sorted, func(x, y *pendingHead) int { return slower(x, y, now) })
	target := b.limit - b.limit/16
	for _, h := range b.sorted {
		if b.held <= target {
			break
		}
		pending, rate := now.Sub(h.start), float64(h.bytes)/max(now.Sub(h.start).Seconds(), 1e-3)
		b.remove(h)
		h.err = &budgetError{Status: 408, msg: fmt.Sprintf(
			"request head shed: unfinished request heads reached http_head_budget (%d bytes), and this one was among the slowest: %d bytes in %v (%.0f bytes/s)",
			b.limit, h.bytes, pending.Round(time.Millisecond), rate)}
		_ = h.c.SetReadDeadline(time.Unix(1, 0)) // wake its reader
	}
	clear(b.sorted)
}

// slower orders pending heads slowest first: fewer bytes per second since
// their first byte, then older.
func slower(x, y *pendingHead, now time.Time) int {
	// x.bytes/tx < y.bytes/ty, without dividing.
	tx, ty := float64(now.Sub(x.start)), float64(now.Sub(y.start))
	switch rx, ry := float64(x.bytes)*ty, float64(y.bytes)*tx; {
	case rx < ry:
		return -1
	case rx > ry:
		return 1
	}
	return x.start.Compare(y.start)
}

// headReader is what a client connection's bufio.Reader reads from: the
// connection, and the head budget's accounting while a request head is
// read. The first read of a head is free; a second makes it pending
// (headBudget.open) and what every read after it returns is charged.
// Reads of a body, or without a budget, go straight to the connection.
type headReader struct {
	c      net.Conn
	budget *headBudget
	// head says a request head is being read, with a budget; reads and
	// got count the reads of it and the bytes they returned; start is
	// when its first byte came.
	head  bool
	reads int
	got   int64
	start time.Time
	p     pendingHead
}

// Read reads from the connection, charging a head that is pending. A head
// that was shed fails with its *budgetError.
func (r *headReader) Read(b []byte) (int, error) {
	if !r.head {
		return r.c.Read(b)
	}
	r.reads++
	if r.reads == 2 {
		if err := r.budget.open(&r.p, r.c, r.start, r.got); err != nil {
			return 0, err
		}
	}
	n, err := r.c.Read(b)
	r.got += int64(n)
	if r.reads >= 2 {
		if e := r.budget.add(&r.p, int64(n)); e != nil {
			return 0, e
		}
	}
	return n, err
}

// beginHead starts the reading of a request head.
func (r *headReader) beginHead() { r.head, r.reads, r.got = r.budget != nil, 0, 0 }

// endHead ends the reading of a request head. It returns a *budgetError
// when the head was shed.
func (r *headReader) endHead() error {
	pending := r.head && r.reads >= 2
	r.head = false
	if pending {
		return r.budget.close(&r.p)
	}
	return nil
}
