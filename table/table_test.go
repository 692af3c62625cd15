package table

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 starts a window for every period used here (a multiple of 10s since the epoch).
var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newTable(size int) *Table {
	return New(Spec{Name: "t", Size: size, Expire: time.Hour, Period: 10 * time.Second})
}

// touch acquires key at now and releases it at once.
func touch(tb *Table, key string, now time.Time) *Entry {
	e := tb.Acquire([]byte(key), now)
	if e != nil {
		e.Release()
	}
	return e
}

func TestFigureNames(t *testing.T) {
	tests := []struct {
		f    Figure
		name string
	}{
		{ConnCur, "conn_cur"}, {ConnCnt, "conn_cnt"}, {ConnRate, "conn_rate"},
		{HTTPReqCnt, "http_req_cnt"}, {HTTPReqRate, "http_req_rate"},
		{HTTPErrCnt, "http_err_cnt"}, {HTTPErrRate, "http_err_rate"},
		{BytesInRate, "bytes_in_rate"}, {BytesOutRate, "bytes_out_rate"},
	}
	var all []Figure
	for _, tt := range tests {
		all = append(all, tt.f)
		if got := tt.f.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.f, got, tt.name)
		}
		f, err := ParseFigure(tt.name)
		if err != nil || f != tt.f {
			t.Errorf("ParseFigure(%q) = %v, %v; want %v", tt.name, f, err, tt.f)
		}
	}
	if got := Figures(); !slices.Equal(got, all) {
		t.Errorf("Figures() = %v, want %v", got, all)
	}
	for _, bad := range []string{"", "conn", "HTTP_REQ_RATE", "gpc0"} {
		_, err := ParseFigure(bad)
		if err == nil {
			t.Fatalf("ParseFigure(%q): no error", bad)
		}
		for _, tt := range tests {
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("ParseFigure(%q) error %q does not list %q", bad, err, tt.name)
			}
		}
	}
	if got := Figure(42).String(); got != "Figure(42)" {
		t.Errorf("Figure(42).String() = %q", got)
	}
}

func TestCounting(t *testing.T) {
	now := at(time.Second)
	tests := []struct {
		name string
		do   func(e *Entry)
		want map[Figure]uint64 // figures not listed must be 0
	}{
		{"nothing", func(e *Entry) {}, nil},
		{"connections", func(e *Entry) {
			e.ConnOpened(now)
			e.ConnOpened(now)
			e.ConnOpened(now)
			e.ConnClosed()
		}, map[Figure]uint64{ConnCur: 2, ConnCnt: 3, ConnRate: 3}},
		{"close never below zero", func(e *Entry) {
			e.ConnOpened(now)
			e.ConnClosed()
			e.ConnClosed()
			e.ConnClosed()
		}, map[Figure]uint64{ConnCnt: 1, ConnRate: 1}},
		{"requests and errors", func(e *Entry) {
			for range 5 {
				e.Request(now)
			}
			e.Error(now)
			e.Error(now)
		}, map[Figure]uint64{HTTPReqCnt: 5, HTTPReqRate: 5, HTTPErrCnt: 2, HTTPErrRate: 2}},
		{"bytes", func(e *Entry) {
			e.Bytes(100, 2000, now)
			e.Bytes(-5, 1, now)
			e.Bytes(7, -1, now)
		}, map[Figure]uint64{BytesInRate: 107, BytesOutRate: 2001}},
		{"huge bytes", func(e *Entry) {
			e.Bytes(math.MaxInt64, 0, now)
		}, map[Figure]uint64{BytesInRate: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(10)
			e := tb.Acquire([]byte("k"), now)
			defer e.Release()
			tt.do(e)
			for _, f := range Figures() {
				if got := e.Get(f, now); got != tt.want[f] {
					t.Errorf("Get(%v) = %d, want %d", f, got, tt.want[f])
				}
			}
			for _, f := range []Figure{-1, numFigures, 100} {
				if got := e.Get(f, now); got != 0 {
					t.Errorf("Get(%d) = %d, want 0", f, got)
				}
			}
		})
	}
}

func TestWindow(t *testing.T) {
	tests := []struct{ ns, p, w, elapsed int64 }{
		{0, 10, 0, 0}, {9, 10, 0, 9}, {10, 10, 1, 0}, {25, 10, 2, 5},
		{-1, 10, -1, 9}, {-10, 10, -1, 0}, {-11, 10, -2, 9},
	}
	for _, tt := range tests {
		w, el := window(tt.ns, tt.p)
		if w != tt.w || el != tt.elapsed {
			t.Errorf("window(%d, %d) = %d, %d; want %d, %d", tt.ns, tt.p, w, el, tt.w, tt.elapsed)
		}
	}
}

func TestRateWindows(t *testing.T) {
	const p = 10 * time.Second
	type add struct {
		at time.Duration
		n  int64
	}
	tests := []struct {
		name string
		adds []add
		at   time.Duration
		want uint64
	}{
		{"same window", []add{{time.Second, 100}}, 9 * time.Second, 100},
		{"at a window start: prev counts in full", []add{{time.Second, 100}}, p, 100},
		{"just before a window start", []add{{time.Second, 100}}, p - 1, 100},
		{"just before the next start: prev weighs ~0", []add{{time.Second, 100}, {p, 30}}, 2*p - 1, 30},
		{"halfway: curr + prev/2", []add{{time.Second, 100}, {p + time.Second, 30}}, p + p/2, 80},
		{"halfway rounds down", []add{{0, 101}}, p + p/2, 50},
		{"one period later", []add{{0, 100}}, p + time.Second, 90},
		{"added at a window start belongs to it", []add{{p, 100}}, p, 100},
		{"two periods later", []add{{0, 100}}, 2 * p, 0},
		{"two and a half periods later", []add{{0, 100}}, 2*p + p/2, 0},
		{"slot reused two windows on", []add{{0, 100}, {2 * p, 50}}, 2*p + p/2, 50},
		{"slot reused, previous window too", []add{{0, 100}, {p, 20}, {2 * p, 50}}, 2*p + p/2, 60},
		{"long after", []add{{0, 100}, {p, 20}}, 100 * p, 0},
		{"late add in an old window is ignored by now's read", []add{{5 * p, 7}, {0, 100}}, 5 * p, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(Spec{Size: 1, Expire: 1000 * p, Period: p})
			e := tb.Acquire([]byte("k"), t0)
			defer e.Release()
			for _, a := range tt.adds {
				e.Bytes(a.n, a.n, at(a.at))
			}
			for _, f := range []Figure{BytesInRate, BytesOutRate} {
				if got := e.Get(f, at(tt.at)); got != tt.want {
					t.Errorf("Get(%v) at +%v = %d, want %d", f, tt.at, got, tt.want)
				}
			}
		})
	}
}

func TestZeroEntry(t *testing.T) {
	var e Entry
	e.ConnOpened(t0)
	e.Request(t0)
	e.Bytes(5, 5, t0)
	e.SetServer("s1")
	if e.Get(ConnCur, t0) != 1 || e.Get(HTTPReqCnt, t0) != 1 || e.Get(HTTPReqRate, t0) != 0 || e.Server() != "s1" {
		t.Errorf("zero Entry: conn_cur %d, http_req_cnt %d, http_req_rate %d, server %q",
			e.Get(ConnCur, t0), e.Get(HTTPReqCnt, t0), e.Get(HTTPReqRate, t0), e.Server())
	}
	if len(e.Key()) != 0 {
		t.Errorf("zero Entry key %q", e.Key())
	}
}

func TestServer(t *testing.T) {
	tb := newTable(10)
	e := tb.Acquire([]byte("k"), t0)
	defer e.Release()
	steps := []string{"", "s1", "s1", "s2", "", ""}
	for _, s := range steps {
		e.SetServer(s)
		if got := e.Server(); got != s {
			t.Errorf("after SetServer(%q): Server() = %q", s, got)
		}
	}
	if string(e.Key()) != "k" {
		t.Errorf("Key() = %q", e.Key())
	}
}

func TestExpire(t *testing.T) {
	const exp = time.Minute
	newT := func() *Table { return New(Spec{Size: 10, Expire: exp, Period: 10 * time.Second}) }

	t.Run("untouched entry is gone", func(t *testing.T) {
		tb := newT()
		touch(tb, "a", t0).Request(t0)
		if tb.Lookup([]byte("a"), at(exp-1)) == nil {
			t.Error("Lookup just before Expire: nil")
		}
		if tb.Lookup([]byte("a"), at(exp)) != nil {
			t.Error("Lookup at Expire: not nil")
		}
		n := 0
		tb.Each(at(exp), func(Record) bool { n++; return true })
		if n != 0 {
			t.Errorf("Each at Expire visited %d", n)
		}
		if got := len(tb.Snapshot(at(exp)).Records); got != 0 {
			t.Errorf("Snapshot at Expire has %d records", got)
		}
		if tb.Len() != 1 {
			t.Errorf("Len before Sweep = %d, want 1", tb.Len())
		}
		if got := tb.Sweep(at(exp - 1)); got != 0 {
			t.Errorf("early Sweep removed %d", got)
		}
		if got := tb.Sweep(at(exp)); got != 1 || tb.Len() != 0 {
			t.Errorf("Sweep removed %d, Len %d; want 1, 0", got, tb.Len())
		}
	})
	t.Run("counting refreshes, Lookup does not", func(t *testing.T) {
		tb := newT()
		e := touch(tb, "a", t0)
		e.Request(at(30 * time.Second))
		if tb.Lookup([]byte("a"), at(exp+29*time.Second)) == nil {
			t.Fatal("refreshed entry gone")
		}
		if tb.Lookup([]byte("a"), at(exp+30*time.Second)) != nil {
			t.Fatal("Lookup refreshed the entry")
		}
	})
	t.Run("held entry stays", func(t *testing.T) {
		tb := newT()
		e := tb.Acquire([]byte("a"), t0)
		if got := tb.Sweep(at(10 * exp)); got != 0 {
			t.Errorf("Sweep removed %d held", got)
		}
		if tb.Lookup([]byte("a"), at(10*exp)) != e {
			t.Error("held entry not found")
		}
		if tb.Acquire([]byte("a"), at(10*exp)) != e {
			t.Error("Acquire of a held entry made a new one")
		}
		e.Release()
		e.Release()
		if got := tb.Sweep(at(12 * exp)); got != 1 {
			t.Errorf("Sweep after Release removed %d, want 1", got)
		}
	})
	t.Run("Acquire after expiry starts afresh", func(t *testing.T) {
		tb := newT()
		old := touch(tb, "a", t0)
		old.Request(t0)
		e := tb.Acquire([]byte("a"), at(exp))
		defer e.Release()
		if e == old || e.Get(HTTPReqCnt, at(exp)) != 0 || tb.Len() != 1 {
			t.Errorf("same entry %v, http_req_cnt %d, Len %d", e == old, e.Get(HTTPReqCnt, at(exp)), tb.Len())
		}
	})
	t.Run("inserts remove expired entries, not counted as evictions", func(t *testing.T) {
		tb := New(Spec{Size: 2, Expire: exp, Period: time.Second})
		touch(tb, "a", t0)
		touch(tb, "b", at(30*time.Second))
		touch(tb, "c", at(exp+time.Second))
		if tb.Lookup([]byte("b"), at(exp+time.Second)) == nil || tb.Len() != 2 || tb.Evicted() != 0 {
			t.Errorf("b found %v, Len %d, Evicted %d; want true, 2, 0",
				tb.Lookup([]byte("b"), at(exp+time.Second)) != nil, tb.Len(), tb.Evicted())
		}
	})
}

func TestLRU(t *testing.T) {
	// Ops, one per second: "a" acquires and releases a; "r:a" counts a
	// request through Lookup; "h:a" acquires a and holds it.
	tests := []struct {
		name    string
		ops     []string
		alive   []string
		evicted uint64
	}{
		{"no eviction below Size", []string{"a", "b", "c"}, []string{"a", "b", "c"}, 0},
		{"oldest goes", []string{"a", "b", "c", "d"}, []string{"b", "c", "d"}, 1},
		{"in order", []string{"a", "b", "c", "d", "e"}, []string{"c", "d", "e"}, 2},
		{"Acquire protects", []string{"a", "b", "c", "a", "d"}, []string{"a", "c", "d"}, 1},
		{"counting protects", []string{"a", "b", "c", "r:a", "d"}, []string{"a", "c", "d"}, 1},
		{"counting protects, then in use order", []string{"a", "b", "c", "r:a", "r:b", "d", "e"}, []string{"b", "d", "e"}, 2},
		{"held is skipped", []string{"h:a", "b", "c", "d", "e"}, []string{"a", "d", "e"}, 2},
		{"all touched: least recently seen goes", []string{"a", "b", "c", "r:c", "r:b", "r:a", "d"}, []string{"a", "b", "d"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(Spec{Size: 3, Expire: time.Hour, Period: time.Second})
			for i, op := range tt.ops {
				now := at(time.Duration(i) * time.Second)
				switch {
				case strings.HasPrefix(op, "r:"):
					tb.Lookup([]byte(op[2:]), now).Request(now)
				case strings.HasPrefix(op, "h:"):
					tb.Acquire([]byte(op[2:]), now)
				default:
					touch(tb, op, now)
				}
			}
			now := at(time.Minute)
			var alive []string
			tb.Each(now, func(r Record) bool { alive = append(alive, r.Key); return true })
			slices.Sort(alive)
			if !slices.Equal(alive, tt.alive) || tb.Evicted() != tt.evicted || tb.Len() != len(tt.alive) {
				t.Errorf("alive %v, Evicted %d, Len %d; want %v, %d", alive, tb.Evicted(), tb.Len(), tt.alive, tt.evicted)
			}
		})
	}
}

func TestFullOfHeld(t *testing.T) {
	tb := New(Spec{Size: 2, Expire: time.Minute, Period: time.Second})
	a := tb.Acquire([]byte("a"), t0)
	b := tb.Acquire([]byte("b"), t0)
	if e := tb.Acquire([]byte("c"), at(time.Hour)); e != nil {
		t.Fatal("Acquire in a table full of held entries: not nil")
	}
	if tb.Acquire([]byte("a"), t0) != a {
		t.Fatal("Acquire of an existing held key failed")
	}
	a.Release()
	snap := Snapshot{Name: "x", Period: "1s", Records: []Record{{Key: "m", Seen: t0.UnixMilli()}}}
	if n := tb.Merge(snap, t0); n != 0 {
		t.Errorf("Merge into a full table merged %d", n)
	}
	a.Release()
	if c := tb.Acquire([]byte("c"), at(time.Second)); c == nil {
		t.Fatal("Acquire after Release: nil")
	} else {
		c.Release()
	}
	if tb.Lookup([]byte("a"), at(time.Second)) != nil || tb.Lookup([]byte("b"), at(time.Second)) != b || tb.Evicted() != 1 {
		t.Errorf("want a evicted, b kept, 1 eviction; Evicted %d", tb.Evicted())
	}
	b.Release()
	defer func() {
		if recover() == nil {
			t.Error("extra Release did not panic")
		}
	}()
	b.Release()
}

func TestClear(t *testing.T) {
	tb := newTable(10)
	held := tb.Acquire([]byte("a"), t0)
	held.Request(t0)
	touch(tb, "b", t0)
	touch(tb, "c", t0)
	if !tb.Clear([]byte("a")) || tb.Clear([]byte("a")) || tb.Clear([]byte("zz")) {
		t.Fatal("Clear reports wrong")
	}
	if tb.Lookup([]byte("a"), t0) != nil || tb.Len() != 2 {
		t.Fatalf("cleared entry still there; Len %d", tb.Len())
	}
	// The holder keeps working on its detached entry.
	held.Request(t0)
	held.SetServer("s1")
	if held.Get(HTTPReqCnt, t0) != 2 {
		t.Errorf("detached entry http_req_cnt %d", held.Get(HTTPReqCnt, t0))
	}
	fresh := tb.Acquire([]byte("a"), t0)
	if fresh == held || fresh.Get(HTTPReqCnt, t0) != 0 || fresh.Server() != "" {
		t.Error("Acquire after Clear did not make a fresh entry")
	}
	held.Release()
	fresh.Release()
	if got := tb.ClearAll(); got != 3 || tb.Len() != 0 {
		t.Errorf("ClearAll = %d, Len %d; want 3, 0", got, tb.Len())
	}
	if tb.Clear([]byte("a")) || tb.Sweep(at(time.Hour*2)) != 0 {
		t.Error("entries left after ClearAll")
	}
	touch(tb, "a", t0)
	if tb.Len() != 1 {
		t.Errorf("Len after reuse = %d", tb.Len())
	}
}

// fill gives tb some traffic over two windows (now is t0+15s).
func fill(tb *Table, keys []string) {
	for i, k := range keys {
		e := tb.Acquire([]byte(k), t0)
		for j := 0; j <= i; j++ {
			e.ConnOpened(at(time.Second))
			e.Request(at(2 * time.Second))
			e.Bytes(int64(100*j), 7, at(3*time.Second))
		}
		e.Error(at(11 * time.Second))
		e.Request(at(12 * time.Second))
		e.Bytes(1000, 0, at(14*time.Second))
		if i%2 == 0 {
			e.SetServer(fmt.Sprintf("srv%d", i))
		}
		e.ConnClosed()
		e.Release()
	}
}

var testKeys = []string{"10.0.0.1", "", "héllo", "\xff\xfe\x00bin", "k\x80"}

// roundTrip returns s after JSON encoding and decoding.
func roundTrip(t *testing.T, s Snapshot) Snapshot {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out Snapshot
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameFigures compares every carried figure of every key at now.
func sameFigures(t *testing.T, got, want *Table, keys []string, now time.Time) {
	t.Helper()
	for _, k := range keys {
		g, w := got.Lookup([]byte(k), now), want.Lookup([]byte(k), now)
		if g == nil || w == nil {
			t.Fatalf("key %q: got %v, want %v", k, g, w)
		}
		for _, f := range Figures()[1:] {
			if gv, wv := g.Get(f, now), w.Get(f, now); gv != wv {
				t.Errorf("key %q %v at %v: got %d, want %d", k, f, now.Sub(t0), gv, wv)
			}
		}
	}
}

func TestSnapshotMergeRoundTrip(t *testing.T) {
	now := at(15 * time.Second)
	src := newTable(100)
	fill(src, testKeys)
	snap := roundTrip(t, src.Snapshot(now))
	if snap.Name != "t" || snap.Period != "10s" || len(snap.Records) != len(testKeys) {
		t.Fatalf("snapshot %q %q with %d records", snap.Name, snap.Period, len(snap.Records))
	}
	for _, r := range snap.Records {
		binary := strings.ContainsAny(r.Key, "\ufffd") || r.Key == "k\x80" || strings.HasPrefix(r.Key, "\xff")
		if (r.KeyB64 != "") != binary {
			t.Errorf("key %q: key_b64 %q", r.Key, r.KeyB64)
		}
		if r.Counts[0] == 0 || r.Rates[2] != 1 { // conn_cnt; http_req_rate, the current window
			t.Errorf("key %q: record %+v", r.Key, r)
		}
	}
	dst := newTable(100)
	if n := dst.Merge(snap, now); n != len(testKeys) {
		t.Fatalf("Merge = %d, want %d", n, len(testKeys))
	}
	sameFigures(t, dst, src, testKeys, now)
	for i, k := range testKeys {
		d, s := dst.Lookup([]byte(k), now), src.Lookup([]byte(k), now)
		if d.Server() != s.Server() || d.Get(ConnCur, now) != 0 || string(d.Key()) != k {
			t.Errorf("key %q (%d): server %q want %q, conn_cur %d", k, i, d.Server(), s.Server(), d.Get(ConnCur, now))
		}
		if d.seen.Load() != s.seen.Load() {
			t.Errorf("key %q: seen %d want %d", k, d.seen.Load(), s.seen.Load())
		}
	}

	// Into a table with the same counts: everything doubles, as if the
	// traffic had come twice.
	again, twice := newTable(100), newTable(100)
	fill(again, testKeys)
	again.Merge(snap, now)
	fill(twice, testKeys)
	fill(twice, testKeys)
	sameFigures(t, again, twice, testKeys, now)
}

func TestMergeLaterNow(t *testing.T) {
	src := newTable(100)
	fill(src, testKeys)
	snap := roundTrip(t, src.Snapshot(at(15*time.Second)))
	for _, later := range []time.Duration{15 * time.Second, 20*time.Second - 1, 20 * time.Second, 25 * time.Second, 30 * time.Second, 35 * time.Second, time.Minute} {
		t.Run(later.String(), func(t *testing.T) {
			dst := newTable(100)
			if n := dst.Merge(snap, at(later)); n != len(testKeys) {
				t.Fatalf("Merge = %d", n)
			}
			// The merged rates read as the source's at any time from now on.
			for _, d := range []time.Duration{0, 3 * time.Second, 10 * time.Second, 15 * time.Second} {
				sameFigures(t, dst, src, testKeys, at(later+d))
			}
		})
	}
}

func TestMergeSnapshotFromTheFuture(t *testing.T) {
	// A snapshot taken by a process whose clock is a period ahead: its
	// current window counts as the merging process's current window.
	src := newTable(10)
	fill(src, []string{"a"})
	snap := src.Snapshot(at(15 * time.Second))
	dst := newTable(10)
	dst.Merge(snap, at(5*time.Second))
	e := dst.Lookup([]byte("a"), at(5*time.Second))
	for _, f := range []Figure{HTTPReqRate, BytesInRate, BytesOutRate} {
		if got, want := e.Get(f, at(5*time.Second)), src.Lookup([]byte("a"), t0).Get(f, at(15*time.Second)); got != want {
			t.Errorf("%v = %d, want %d", f, got, want)
		}
	}
}

func TestMergePeriodMismatch(t *testing.T) {
	now := at(15 * time.Second)
	src := newTable(100)
	fill(src, testKeys)
	snap := roundTrip(t, src.Snapshot(now))
	for _, period := range []string{"10s", "", "garbage"} {
		t.Run(period, func(t *testing.T) {
			snap.Period = period // the source's is 10s
			dst := New(Spec{Size: 100, Expire: time.Hour, Period: 5 * time.Second})
			if n := dst.Merge(snap, now); n != len(testKeys) {
				t.Fatalf("Merge = %d", n)
			}
			for _, k := range testKeys {
				d, s := dst.Lookup([]byte(k), now), src.Lookup([]byte(k), now)
				for _, f := range Figures()[1:] {
					want := s.Get(f, now)
					if f.isRate() {
						want = 0
					}
					if got := d.Get(f, now); got != want {
						t.Errorf("key %q %v = %d, want %d", k, f, got, want)
					}
				}
				if d.Server() != s.Server() {
					t.Errorf("key %q server %q, want %q", k, d.Server(), s.Server())
				}
			}
		})
	}
}

func TestMergeRecords(t *testing.T) {
	exp := time.Hour
	tests := []struct {
		name       string
		have       string        // server of an existing entry "a" ("-" for no entry)
		haveSeen   time.Duration // its use time
		rec        Record
		now        time.Duration
		merged     int
		wantServer string
		wantSeen   time.Duration
	}{
		{"new entry", "-", 0, Record{Key: "a", Seen: at(time.Minute).UnixMilli(), Server: "s1"}, 2 * time.Minute, 1, "s1", time.Minute},
		{"expired record skipped", "-", 0, Record{Key: "a", Seen: t0.UnixMilli()}, exp, 0, "", 0},
		{"zero Seen skipped", "-", 0, Record{Key: "a"}, 0, 0, "", 0},
		{"server kept", "s0", 0, Record{Key: "a", Seen: t0.UnixMilli(), Server: "s1"}, 0, 1, "s0", 0},
		{"server set when none", "", 0, Record{Key: "a", Seen: t0.UnixMilli(), Server: "s1"}, 0, 1, "s1", 0},
		{"later Seen wins", "", 0, Record{Key: "a", Seen: at(time.Minute).UnixMilli()}, time.Minute, 1, "", time.Minute},
		{"own later Seen kept", "", time.Minute, Record{Key: "a", Seen: t0.UnixMilli()}, time.Minute, 1, "", time.Minute},
		{"unknown figures ignored", "-", 0, Record{Key: "a", Seen: t0.UnixMilli(),
			Counts: [numCounts]uint64{5, 3, 9}, Rates: [2 * numRates]uint64{5, 0, 1, 0}}, 0, 1, "", 0},
		{"bad base64 falls back to Key", "-", 0, Record{Key: "a", KeyB64: "!!", Seen: t0.UnixMilli()}, 0, 1, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(Spec{Size: 10, Expire: exp, Period: 10 * time.Second})
			if tt.have != "-" {
				touch(tb, "a", at(tt.haveSeen)).SetServer(tt.have)
			}
			now := at(tt.now)
			// Columns this version does not count as such: ignored.
			snap := Snapshot{Period: "10s", Window: now.UnixNano() - now.UnixNano()%int64(10*time.Second),
				Counts: []string{"gpc0", "conn_rate", "conn_cur"}, Rates: []string{"conn_cnt", "nope"}, Records: []Record{tt.rec}}
			if n := tb.Merge(snap, now); n != tt.merged {
				t.Fatalf("Merge = %d, want %d", n, tt.merged)
			}
			e := tb.Lookup([]byte("a"), now)
			if tt.merged == 0 {
				if e != nil {
					t.Fatal("skipped record made an entry")
				}
				return
			}
			if e.Server() != tt.wantServer || e.seen.Load() != at(tt.wantSeen).UnixNano() {
				t.Errorf("server %q seen %v; want %q %v", e.Server(), time.Unix(0, e.seen.Load()).Sub(t0), tt.wantServer, tt.wantSeen)
			}
			for _, f := range Figures() {
				if got := e.Get(f, now); got != 0 {
					t.Errorf("%v = %d, want 0", f, got)
				}
			}
		})
	}
}

func TestRawKey(t *testing.T) {
	for _, k := range []string{"", "plain", "héllo", "\xff", "\x00\x01\xc3\x28"} {
		tb := newTable(10)
		touch(tb, k, t0).Request(t0)
		snap := roundTrip(t, tb.Snapshot(t0))
		if len(snap.Records) != 1 {
			t.Fatalf("%q: %d records", k, len(snap.Records))
		}
		if got := string(snap.Records[0].RawKey()); got != k {
			t.Errorf("RawKey = %q, want %q (record %+v)", got, k, snap.Records[0])
		}
	}
}

func TestShardBound(t *testing.T) {
	tests := []struct{ size, shards int }{
		{1, 1}, {3, 1}, {127, 1}, {128, 2}, {1000, 8}, {1001, 8}, {2048, 32}, {5000, 32},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			tb := New(Spec{Size: tt.size, Expire: time.Hour, Period: time.Second})
			if len(tb.shards) != tt.shards {
				t.Errorf("%d shards, want %d", len(tb.shards), tt.shards)
			}
			bound := tt.shards * ((tt.size + tt.shards - 1) / tt.shards)
			key := make([]byte, 0, 16)
			for i := range 3 * tt.size {
				key = fmt.Appendf(key[:0], "k%d", i)
				touch(tb, string(key), at(time.Duration(i)))
			}
			if tb.Len() > bound || tb.Len() < tt.size*9/10 {
				t.Errorf("Len %d, want in [%d, %d]", tb.Len(), tt.size*9/10, bound)
			}
			if got := int(tb.Evicted()); got != 3*tt.size-tb.Len() {
				t.Errorf("Evicted %d, want %d", got, 3*tt.size-tb.Len())
			}
		})
	}
}

func TestNew(t *testing.T) {
	ok := Spec{Name: "n", Size: 1, Expire: time.Second, Period: time.Second}
	if got := New(ok).Spec(); got != ok {
		t.Errorf("Spec() = %+v", got)
	}
	for _, s := range []Spec{
		{Size: 0, Expire: time.Second, Period: time.Second},
		{Size: 1, Expire: 0, Period: time.Second},
		{Size: 1, Expire: time.Second, Period: -1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", s)
				}
			}()
			New(s)
		}()
	}
}

func TestHotPathAllocs(t *testing.T) {
	tb := newTable(1 << 12)
	key := []byte("192.0.2.1")
	touch(tb, "192.0.2.1", t0).SetServer("s1")
	now := at(time.Second)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		e := tb.Acquire(key, now)
		e.ConnOpened(now)
		e.Request(now)
		e.Error(now)
		e.Bytes(10, 20, now)
		e.ConnClosed()
		e.SetServer("s1")
		for f := range numFigures {
			_ = e.Get(f, now)
		}
		_ = e.Server()
		_ = e.Key()
		_ = tb.Lookup(key, now)
		e.Release()
	})
	if allocs != 0 {
		t.Errorf("hot path: %v allocs, want 0", allocs)
	}
}

func TestConcurrentCounts(t *testing.T) {
	const workers, iters = 8, 1000
	tb := newTable(4096)
	var wg, bg sync.WaitGroup
	stop := make(chan struct{})
	bg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			now := at(time.Duration(i) * time.Millisecond)
			tb.Sweep(now)
			tb.Snapshot(now)
			tb.Each(now, func(Record) bool { return i%2 == 0 })
			_ = tb.Len()
			if e := tb.Lookup([]byte("same"), now); e != nil {
				_ = e.Get(HTTPReqRate, now)
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			own := []byte(fmt.Sprintf("w%d", w))
			for i := range iters {
				now := at(time.Duration(i) * time.Millisecond)
				e := tb.Acquire([]byte("same"), now)
				e.Request(now)
				_ = e.Get(HTTPReqRate, now)
				e.Release()
				o := tb.Acquire(own, now)
				o.ConnOpened(now)
				o.Bytes(1, 2, now)
				o.SetServer(fmt.Sprint("s", i%3))
				o.ConnClosed()
				o.Release()
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	now := at(time.Second)
	same := tb.Lookup([]byte("same"), now)
	if got := same.Get(HTTPReqCnt, now); got != workers*iters {
		t.Errorf("http_req_cnt %d, want %d", got, workers*iters)
	}
	if got := same.Get(HTTPReqRate, now); got != workers*iters {
		t.Errorf("http_req_rate %d, want %d", got, workers*iters)
	}
	for w := range workers {
		o := tb.Lookup(fmt.Appendf(nil, "w%d", w), now)
		if o.Get(ConnCnt, now) != iters || o.Get(ConnCur, now) != 0 || o.Get(BytesOutRate, now) != 2*iters {
			t.Errorf("w%d: conn_cnt %d conn_cur %d bytes_out_rate %d", w, o.Get(ConnCnt, now), o.Get(ConnCur, now), o.Get(BytesOutRate, now))
		}
	}
	checkHeld(t, tb)
}

func TestConcurrentChurn(t *testing.T) {
	// Small table, many keys, time running over many periods and past
	// Expire: eviction, expiry, window resets, Clear and Merge all race.
	const workers, iters = 8, 2000
	tb := New(Spec{Size: 256, Expire: time.Second, Period: 100 * time.Millisecond})
	var wg, bg sync.WaitGroup
	stop := make(chan struct{})
	bg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			now := at(time.Duration(i) * 10 * time.Millisecond)
			tb.Sweep(now)
			s := tb.Snapshot(now)
			tb.Merge(s, now)
			tb.Clear(fmt.Appendf(nil, "k%d", i%50))
			if i%50 == 0 {
				tb.ClearAll()
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			key := make([]byte, 0, 8)
			for i := range iters {
				now := at(time.Duration(i) * 5 * time.Millisecond)
				key = fmt.Appendf(key[:0], "k%d", (i*7+w)%(i%3*500+50))
				e := tb.Acquire(key, now)
				if e == nil {
					t.Error("Acquire: nil")
					return
				}
				e.Request(now)
				e.Bytes(10, 10, now)
				_ = e.Get(HTTPReqRate, now)
				if l := tb.Lookup([]byte("same"), now); l != nil {
					l.Error(now)
				}
				e.Release()
				s := tb.Acquire([]byte("same"), now)
				s.Error(now)
				s.Release()
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	if tb.Len() > 256 {
		t.Errorf("Len %d > 256", tb.Len())
	}
	checkHeld(t, tb)
}

// checkHeld fails if an entry of tb is still held or the shard lists
// disagree with the maps.
func checkHeld(t *testing.T, tb *Table) {
	t.Helper()
	for i := range tb.shards {
		sh := &tb.shards[i]
		n := 0
		for e := sh.head; e != nil; e = e.next {
			n++
			if e.held.Load() != 0 {
				t.Errorf("key %q still held %d", e.key, e.held.Load())
			}
			if sh.m[e.key] != e || !e.linked {
				t.Errorf("key %q: list and map disagree", e.key)
			}
		}
		if n != len(sh.m) || int64(n) != sh.n.Load() || n > sh.cap {
			t.Errorf("shard %d: list %d, map %d, n %d, cap %d", i, n, len(sh.m), sh.n.Load(), sh.cap)
		}
	}
}
