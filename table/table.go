// Package table implements HAProxy-style stick tables: bounded maps from a
// key (a client address, a header value, ...) to an Entry of counters, used
// for rate limiting and for stickiness to a server.
//
// A Table lives in one process. On a reload it is handed to the next process
// as a Snapshot (JSON-friendly, also what the state file holds), which the
// next process adds into its own table with Merge, so that counts carry on.
//
// Nothing here reads the clock: every method that needs the time takes it as
// now, which keeps the package deterministic under test.
//
// The hot path (Acquire of an existing key, counter updates, Get) does not
// allocate and takes no global lock: the table is split into shards by a
// hash of the key, each with its own lock, and an existing key is found under
// the shard's read lock; entries themselves are updated with atomics only.
package table

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Spec configures a table.
type Spec struct {
	// Name names the table (in snapshots, metrics and the admin interface).
	Name string
	// Size bounds the number of entries (> 0). The bound is kept per shard:
	// each of the table's shards holds at most ceil(Size/shards) entries, so
	// the table holds at most Size rounded up to a multiple of the shard count.
	// Tables with Size below 128 have a single shard, so their bound is exact.
	// When a shard is full, inserting evicts its least recently used entry
	// that no one holds (see Table.Acquire); if all are held, nothing is
	// inserted.
	Size int
	// Expire is how long an entry may go untouched before it is gone. Expiry
	// is lazy: checked on lookup, during inserts and by Table.Sweep.
	Expire time.Duration
	// Period is the window of every *_rate figure.
	Period time.Duration
}

// Shard sizing: tables are split into up to maxShards shards, but never so
// many that a shard would hold fewer than minPerShard entries.
const (
	maxShards   = 32
	minPerShard = 64
	// expireOnInsert bounds how many expired entries an insert removes.
	expireOnInsert = 4
)

// Table is a stick table. Its methods are safe for concurrent use. A Table
// must be made by New; the zero Table is not usable.
type Table struct {
	spec   Spec
	period int64 // ns
	expire int64 // ns
	seed   maphash.Seed
	mask   uint64 // len(shards)-1
	shards []shard
}

// shard is one part of a table: a map plus an intrusive LRU list of the same
// entries. Readers (Acquire of an existing key, Lookup, Each) take mu for
// reading; anything that links or unlinks an entry takes it for writing.
type shard struct {
	mu         sync.RWMutex
	m          map[string]*Entry
	head, tail *Entry // head is the most recently listed
	cap        int
	n          atomic.Int64 // len(m), readable without mu
	evicted    atomic.Uint64
	_          [64]byte // keep shards' locks off each other's cache lines
}

// New makes a table. It panics if s.Size, s.Period or s.Expire is not
// positive: configurations are validated before they get here.
func New(s Spec) *Table {
	if s.Size <= 0 || s.Period <= 0 || s.Expire <= 0 {
		panic("table: New: Size, Period and Expire must be positive")
	}
	n := 1
	for n < maxShards && s.Size/(n*2) >= minPerShard {
		n *= 2
	}
	t := &Table{
		spec:   s,
		period: int64(s.Period),
		expire: int64(s.Expire),
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard, n),
	}
	perShard := (s.Size + n - 1) / n
	for i := range t.shards {
		t.shards[i].m = make(map[string]*Entry)
		t.shards[i].cap = perShard
	}
	return t
}

// Spec returns the table's configuration.
func (t *Table) Spec() Spec { return t.spec }

func (t *Table) shardOf(key []byte) *shard {
	if t.mask == 0 {
		return &t.shards[0]
	}
	return &t.shards[maphash.Bytes(t.seed, key)&t.mask]
}

// expired reports whether e is gone at ns: unheld and untouched for Expire.
func (t *Table) expired(e *Entry, ns int64) bool {
	return e.held.Load() == 0 && ns-e.seen.Load() >= t.expire
}

// Acquire finds or creates the entry of key, marks it used at now and holds
// it: a held entry is neither evicted nor expired until its Release. key is
// copied only when a new entry is made. Acquire returns nil when the key is
// new and its shard is full of held entries.
func (t *Table) Acquire(key []byte, now time.Time) *Entry {
	ns := now.UnixNano()
	sh := t.shardOf(key)
	sh.mu.RLock()
	if e := sh.m[string(key)]; e != nil && !t.expired(e, ns) {
		// Holds are only taken under the shard lock, so no writer (which
		// checks held before evicting) can be between its check and its act.
		e.held.Add(1)
		e.touch(ns)
		sh.mu.RUnlock()
		return e
	}
	sh.mu.RUnlock()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[string(key)]
	if e != nil && t.expired(e, ns) {
		sh.unlink(e)
		e = nil
	}
	if e == nil {
		if e = t.insert(sh, key, ns, ns); e == nil {
			return nil
		}
	}
	e.held.Add(1)
	e.touch(ns)
	return e
}

// Lookup finds the live entry of key, or nil. It neither creates nor holds
// the entry, nor refreshes its use time.
func (t *Table) Lookup(key []byte, now time.Time) *Entry {
	ns := now.UnixNano()
	sh := t.shardOf(key)
	sh.mu.RLock()
	e := sh.m[string(key)]
	sh.mu.RUnlock()
	if e == nil || t.expired(e, ns) {
		return nil
	}
	return e
}

// Len returns how many entries the table holds, counting expired ones that
// no lookup, insert or Sweep has removed yet.
func (t *Table) Len() int {
	n := int64(0)
	for i := range t.shards {
		n += t.shards[i].n.Load()
	}
	return int(n)
}

// Evicted returns how many entries were evicted to make room, in total.
// Expired entries removed are not counted.
func (t *Table) Evicted() uint64 {
	n := uint64(0)
	for i := range t.shards {
		n += t.shards[i].evicted.Load()
	}
	return n
}

// Clear removes the entry of key, held or not, and reports whether there was
// one. Holders of a removed entry keep working on it harmlessly: it is
// detached, and the next Acquire of key makes a fresh entry.
func (t *Table) Clear(key []byte) bool {
	sh := t.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[string(key)]
	if e == nil {
		return false
	}
	sh.unlink(e)
	return true
}

// ClearAll removes every entry, as Clear does, and returns how many.
func (t *Table) ClearAll() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for e := sh.head; e != nil; {
			next := e.next
			e.prev, e.next, e.linked = nil, nil, false
			e = next
		}
		n += len(sh.m)
		clear(sh.m)
		sh.head, sh.tail = nil, nil
		sh.n.Store(0)
		sh.mu.Unlock()
	}
	return n
}

// Sweep removes the entries expired at now that no one holds, and returns how many.
func (t *Table) Sweep(now time.Time) int {
	ns := now.UnixNano()
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for e := sh.tail; e != nil; {
			prev := e.prev
			if t.expired(e, ns) {
				sh.unlink(e)
				n++
			}
			e = prev
		}
		sh.mu.Unlock()
	}
	return n
}

// Each calls fn with a copy of every live entry at now, shard by shard, until
// fn returns false. The order is unspecified. fn runs without any lock held,
// so it may use the table; entries changed meanwhile may or may not be seen.
func (t *Table) Each(now time.Time, fn func(Record) bool) {
	ns := now.UnixNano()
	var live []*Entry
	for i := range t.shards {
		sh := &t.shards[i]
		live = live[:0]
		sh.mu.RLock()
		for e := sh.head; e != nil; e = e.next {
			if !t.expired(e, ns) {
				live = append(live, e)
			}
		}
		sh.mu.RUnlock()
		for _, e := range live {
			if !fn(e.record(ns)) {
				return
			}
		}
	}
}

// insert makes a new entry for key in sh, with seen as its use time, making
// room if sh is full. It returns nil if sh is full of held entries. The
// caller holds sh.mu for writing and knows key is not in sh.m.
func (t *Table) insert(sh *shard, key []byte, ns, seen int64) *Entry {
	// Lazily expire from the cold end of the list.
	for i := 0; i < expireOnInsert && sh.tail != nil && t.expired(sh.tail, ns); i++ {
		sh.unlink(sh.tail)
	}
	if len(sh.m) >= sh.cap && !sh.evict() {
		return nil
	}
	e := &Entry{period: t.period, key: string(key)}
	e.seen.Store(seen)
	e.listed = seen
	sh.m[e.key] = e
	sh.pushFront(e)
	e.linked = true
	sh.n.Add(1)
	return e
}

// evict removes the least recently used entry of sh that no one holds and
// reports whether there was one.
//
// The list is ordered by Acquire-time inserts only: to keep the hot path
// under a read lock, touching an entry just raises its seen, and it is here
// that an entry seen since it was listed gets its second chance (moved to
// the front, as a write-locked Acquire would have done). Held entries met on
// the way are moved to the front too, so that later inserts do not walk them
// again. After one full pass without an untouched candidate, the unheld
// entry least recently seen goes.
func (sh *shard) evict() bool {
	var oldest *Entry
	for i, n, e := 0, len(sh.m), sh.tail; i < n && e != nil; i++ {
		prev := e.prev
		if e.held.Load() > 0 {
			sh.moveToFront(e)
			e = prev
			continue
		}
		s := e.seen.Load()
		if s <= e.listed {
			sh.unlink(e)
			sh.evicted.Add(1)
			return true
		}
		e.listed = s
		sh.moveToFront(e)
		if oldest == nil || s < oldest.listed {
			oldest = e
		}
		e = prev
	}
	// Holds are taken only under sh.mu, so oldest is still unheld.
	if oldest != nil {
		sh.unlink(oldest)
		sh.evicted.Add(1)
		return true
	}
	return false
}

func (sh *shard) pushFront(e *Entry) {
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	} else {
		sh.tail = e
	}
	sh.head = e
}

func (sh *shard) moveToFront(e *Entry) {
	if sh.head == e {
		return
	}
	sh.detach(e)
	sh.pushFront(e)
}

// detach takes e out of the list only.
func (sh *shard) detach(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// unlink removes e from sh (map and list).
func (sh *shard) unlink(e *Entry) {
	if !e.linked {
		return
	}
	sh.detach(e)
	delete(sh.m, e.key)
	e.linked = false
	sh.n.Add(-1)
}
