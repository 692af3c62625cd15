package table

import (
	"math"
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// Entry is one key's counters. All its methods are safe for concurrent use
// and lock-free: totals are atomic adds, and each rate counter is two atomic
// slots (see rateCtr), so that many goroutines hammering the same key (the
// attack case) contend only on cache lines, never on a mutex.
//
// An Entry is obtained from Table.Acquire (held: it stays in the table until
// Release) or Table.Lookup (not held: it may be evicted, expired or cleared
// at any moment, after which updating it is harmless but no longer visible
// in the table). The zero Entry counts totals and ConnCur but, having no
// period, keeps its rates at 0.
type Entry struct {
	seen    atomic.Int64 // last use, UnixNano; only ever raised
	held    atomic.Int32 // holders (Acquire minus Release)
	connCur atomic.Int64
	counts  [numCounts]atomic.Uint64
	rates   [numRates]rateCtr
	server  atomic.Pointer[string]

	period int64  // the table's Period, in ns
	key    string // immutable copy of the key

	// Guarded by the shard's write lock.
	prev, next *Entry // LRU list; the shard's head is the most recent
	listed     int64  // seen when the entry last went to the list's front
	linked     bool   // in its shard's map and list
}

// Key returns the key as stored. It shares the entry's memory: do not modify it.
func (e *Entry) Key() []byte {
	return unsafe.Slice(unsafe.StringData(e.key), len(e.key))
}

// Release drops a hold taken by Table.Acquire. Each Acquire that returned an
// entry must be matched by exactly one Release; an extra one panics.
func (e *Entry) Release() {
	if e.held.Add(-1) < 0 {
		panic("table: Entry.Release without Acquire")
	}
}

// ConnOpened counts a new connection: ConnCur, ConnCnt and ConnRate go up by one.
func (e *Entry) ConnOpened(now time.Time) {
	ns := now.UnixNano()
	e.touch(ns)
	e.connCur.Add(1)
	e.counts[cConn].Add(1)
	e.rateAdd(rConn, 1, ns)
}

// ConnClosed counts a closed connection: ConnCur goes down by one, never
// below 0. It does not refresh the use time.
func (e *Entry) ConnClosed() {
	for {
		c := e.connCur.Load()
		if c <= 0 || e.connCur.CompareAndSwap(c, c-1) {
			return
		}
	}
}

// Request counts an HTTP request: HTTPReqCnt and HTTPReqRate go up by one.
func (e *Entry) Request(now time.Time) {
	ns := now.UnixNano()
	e.touch(ns)
	e.counts[cReq].Add(1)
	e.rateAdd(rReq, 1, ns)
}

// Error counts an HTTP error: HTTPErrCnt and HTTPErrRate go up by one.
func (e *Entry) Error(now time.Time) {
	ns := now.UnixNano()
	e.touch(ns)
	e.counts[cErr].Add(1)
	e.rateAdd(rErr, 1, ns)
}

// Bytes counts in bytes from the client and out bytes to it (BytesInRate,
// BytesOutRate). Negative amounts count as 0.
func (e *Entry) Bytes(in, out int64, now time.Time) {
	ns := now.UnixNano()
	e.touch(ns)
	if in > 0 {
		e.rateAdd(rIn, uint64(in), ns)
	}
	if out > 0 {
		e.rateAdd(rOut, uint64(out), ns)
	}
}

// Get reports figure f at now; an unknown figure gives 0. A rate is
// HAProxy's sliding window over Period: curr + prev*(Period-elapsed)/Period
// (rounded down), where curr counts the window now is in, prev the window
// before, and elapsed how far now is into its window. Windows are aligned to
// absolute time (a window starts when UnixNano is a multiple of Period), so
// that every process agrees on them and snapshots merge by adding.
func (e *Entry) Get(f Figure, now time.Time) uint64 {
	switch {
	case f == ConnCur:
		return uint64(max(e.connCur.Load(), 0))
	case f.isCount():
		return e.counts[countIndex[f]].Load()
	case f.isRate():
		return e.rateGet(int(rateIndex[f]), now.UnixNano())
	}
	return 0
}

// Server returns the name of the server this key sticks to, "" if none.
func (e *Entry) Server() string {
	if p := e.server.Load(); p != nil {
		return *p
	}
	return ""
}

// SetServer makes the key stick to server name ("" forgets it). Setting the
// name it already has does not allocate.
func (e *Entry) SetServer(name string) {
	cur := e.server.Load()
	if name == "" {
		if cur != nil {
			e.server.Store(nil)
		}
		return
	}
	if cur != nil && *cur == name {
		return
	}
	e.server.Store(stringPtr(name))
}

// stringPtr returns a pointer to a heap copy of s. Kept apart so that
// SetServer's unchanged-name path does not move its argument to the heap.
//
//go:noinline
func stringPtr(s string) *string { return &s }

// touch raises the use time to ns (never lowers it).
func (e *Entry) touch(ns int64) {
	for {
		o := e.seen.Load()
		if ns <= o || e.seen.CompareAndSwap(o, ns) {
			return
		}
	}
}

func (e *Entry) rateAdd(i int, n uint64, ns int64) {
	if e.period <= 0 || n == 0 {
		return
	}
	w, _ := window(ns, e.period)
	e.rates[i].add(w, n)
}

func (e *Entry) rateGet(i int, ns int64) uint64 {
	p := e.period
	if p <= 0 {
		return 0
	}
	w, elapsed := window(ns, p)
	curr := e.rates[i].read(w)
	prev := e.rates[i].read(w - 1)
	if prev == 0 {
		return curr
	}
	// prev*(p-elapsed)/p without overflow: p-elapsed <= p, so hi < p.
	hi, lo := bits.Mul64(prev, uint64(p-elapsed))
	q, _ := bits.Div64(hi, lo, uint64(p))
	return curr + q
}

// window returns the index of the period-long window holding ns (windows
// start at multiples of p since the Unix epoch) and how far ns is into it.
func window(ns, p int64) (w, elapsed int64) {
	w, elapsed = ns/p, ns%p
	if elapsed < 0 {
		w, elapsed = w-1, elapsed+p
	}
	return w, elapsed
}

// rateCtr is a rate counter without a lock. It has two slots; window w lives
// in slot w&1, tagged with w, so the current and previous windows are always
// in different slots and "rotating" never moves a count: a slot still tagged
// with an old window is simply reset (to 0, tagged with the new one) by the
// first add that needs it. The reset briefly tags the slot with resetting;
// adders that see that tag spin (it lasts two atomic stores) and readers
// count the slot as 0.
//
// The one inexactness, accepted as HAProxy's freq_ctr accepts its own: an
// adder that read the slot's tag and was then descheduled for over a whole
// period adds its count to the window that reset the slot meanwhile.
type rateCtr struct {
	s [2]rateSlot
}

type rateSlot struct {
	win atomic.Int64 // the window counted; resetting while being reset
	n   atomic.Uint64
}

const resetting = math.MinInt64

// add counts n in window w. A slot that already holds a later window (a
// caller whose clock lags two periods) takes the count as it is.
func (r *rateCtr) add(w int64, n uint64) {
	s := &r.s[w&1]
	for {
		cur := s.win.Load()
		switch {
		case cur == resetting:
			runtime.Gosched()
		case cur >= w:
			s.n.Add(n)
			return
		case s.win.CompareAndSwap(cur, resetting):
			s.n.Store(0)
			s.win.Store(w)
		}
	}
}

// read returns the count of window w, 0 if its slot holds another window.
func (r *rateCtr) read(w int64) uint64 {
	s := &r.s[w&1]
	if s.win.Load() != w {
		return 0
	}
	n := s.n.Load()
	if s.win.Load() != w {
		return 0
	}
	return n
}
