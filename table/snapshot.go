package table

import (
	"encoding/base64"
	"math/bits"
	"time"
	"unicode/utf8"
)

// Record is an entry as a snapshot holds it: a copy, compact in JSON (a
// table of 100,000 keys is handed over at every reload and saved in the
// state file). Its totals and rates are columns whose names the Snapshot
// gives, so that a version of lb with other figures still reads it.
type Record struct {
	// Key is the key bytes as a Go string. JSON replaces bytes that are not
	// valid UTF-8, so such keys also come as KeyB64.
	Key string `json:"k"`
	// KeyB64 is the key in standard base64, set only when Key is not valid UTF-8.
	KeyB64 string `json:"b,omitempty"`
	// Seen is the entry's last use, in Unix milliseconds.
	Seen int64 `json:"s"`
	// Server is the server the key sticks to, if any.
	Server string `json:"srv,omitempty"`
	// ConnCur is informational: Merge does not restore it.
	ConnCur uint64 `json:"c,omitempty"`
	// Counts are the totals, in the order of CountNames (conn_cnt,
	// http_req_cnt, http_err_cnt).
	Counts [numCounts]uint64 `json:"n"`
	// Rates are each rate counter's counts of the window the snapshot was
	// taken in and of the one before, in pairs, in the order of RateNames.
	Rates [2 * numRates]uint64 `json:"r"`

	// window is the index of the window Rates are aligned to.
	window int64
}

// CountNames and RateNames name a Record's columns, as a Snapshot lists
// them.
var (
	CountNames = figureNamesWhere(Figure.isCount)
	RateNames  = figureNamesWhere(Figure.isRate)
)

func figureNamesWhere(is func(Figure) bool) []string {
	var out []string
	for f := range numFigures {
		if is(f) {
			out = append(out, f.String())
		}
	}
	return out
}

// SeenTime returns Seen as a time.
func (r *Record) SeenTime() time.Time { return time.UnixMilli(r.Seen) }

// RawKey returns the key bytes: KeyB64 decoded if set (and valid base64),
// else Key's bytes.
func (r *Record) RawKey() []byte {
	if r.KeyB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(r.KeyB64); err == nil {
			return b
		}
	}
	return []byte(r.Key)
}

// Snapshot is a whole table, for a reload or the state file.
type Snapshot struct {
	Name   string `json:"name"`
	Period string `json:"period"` // Spec.Period as time.Duration.String gives it
	// Window is the start of the window the records' rates are aligned
	// to, in Unix nanoseconds.
	Window int64 `json:"window"`
	// Counts and Rates name the records' columns.
	Counts  []string `json:"counts"`
	Rates   []string `json:"rates"`
	Records []Record `json:"records"`
}

// Snapshot returns every entry live at now, its rates aligned to now's window.
func (t *Table) Snapshot(now time.Time) Snapshot {
	w, _ := window(now.UnixNano(), t.period)
	s := Snapshot{Name: t.spec.Name, Period: t.spec.Period.String(), Window: w * t.period,
		Counts: CountNames, Rates: RateNames, Records: make([]Record, 0, t.Len())}
	t.Each(now, func(r Record) bool {
		s.Records = append(s.Records, r)
		return true
	})
	return s
}

// record copies e, its rates aligned to the window of ns.
func (e *Entry) record(ns int64) Record {
	r := Record{
		Key:     e.key,
		Seen:    e.seen.Load() / 1e6,
		Server:  e.Server(),
		ConnCur: uint64(max(e.connCur.Load(), 0)),
	}
	if !utf8.ValidString(e.key) {
		r.KeyB64 = base64.StdEncoding.EncodeToString([]byte(e.key))
	}
	for i := range r.Counts {
		r.Counts[i] = e.counts[i].Load()
	}
	if e.period > 0 {
		w, _ := window(ns, e.period)
		r.window = w
		for i := range numRates {
			r.Rates[2*i], r.Rates[2*i+1] = e.rates[i].read(w), e.rates[i].read(w-1)
		}
	}
	return r
}

// Merge adds s into t and returns how many records it merged. A record whose
// Seen is zero or expired at now is skipped. Otherwise the entry of its key
// (created if needed, evicting as Acquire does; the record is skipped if the
// shard is full of held entries):
//   - gets the record's totals added;
//   - gets its rate windows added after aligning them to now: a record
//     window that is now's adds curr to curr and prev to prev; one that is
//     the window before now's adds its curr to prev; older ones add nothing.
//     A record window later than now's (clock skew between processes) counts
//     as now's. If s.Period is not t's Period, rates are not merged at all,
//     since windows do not line up;
//   - has its use time set to the later of its own and Seen;
//   - sticks to the record's server if it sticks to none.
//
// ConnCur is never merged. Unknown figure names are ignored.
func (t *Table) Merge(s Snapshot, now time.Time) int {
	ns := now.UnixNano()
	p, err := time.ParseDuration(s.Period)
	rates := err == nil && p == t.spec.Period && t.period > 0
	w, _ := window(ns, t.period)
	var rw int64
	if rates {
		rw, _ = window(s.Window, t.period)
	}
	// The columns of s, as this version counts them (-1: unknown).
	countCol := columns(s.Counts, len(Record{}.Counts), Figure.isCount, countIndex[:])
	rateCol := columns(s.Rates, len(Record{}.Rates)/2, Figure.isRate, rateIndex[:])
	merged := 0
	for i := range s.Records {
		r := &s.Records[i]
		if r.Seen <= 0 {
			continue
		}
		seen := r.Seen * 1e6
		if ns-seen >= t.expire {
			continue
		}
		key := r.RawKey()
		sh := t.shardOf(key)
		sh.mu.Lock()
		e := sh.m[string(key)]
		if e != nil && t.expired(e, ns) {
			sh.unlink(e)
			e = nil
		}
		if e == nil {
			if e = t.insert(sh, key, ns, seen); e == nil {
				sh.mu.Unlock()
				continue
			}
		}
		e.touch(seen)
		for col, idx := range countCol {
			if idx >= 0 && r.Counts[col] != 0 {
				e.counts[idx].Add(r.Counts[col])
			}
		}
		if rates {
			for col, idx := range rateCol {
				if idx < 0 {
					continue
				}
				rc := &e.rates[idx]
				curr, prev := r.Rates[2*col], r.Rates[2*col+1]
				switch {
				case rw >= w:
					if curr != 0 {
						rc.add(w, curr)
					}
					if prev != 0 {
						rc.add(w-1, prev)
					}
				case rw == w-1:
					if curr != 0 {
						rc.add(w-1, curr)
					}
				}
			}
		}
		if r.Server != "" && e.server.Load() == nil {
			name := r.Server
			e.server.CompareAndSwap(nil, &name)
		}
		sh.mu.Unlock()
		merged++
	}
	return merged
}

// columns maps the column names of a snapshot (at most n of them) to this
// version's counters, through index: -1 for a name it does not know.
func columns(names []string, n int, is func(Figure) bool, index []int8) []int {
	out := make([]int, min(len(names), n))
	for i := range out {
		out[i] = -1
		if f, err := ParseFigure(names[i]); err == nil && is(f) {
			out[i] = int(index[f])
		}
	}
	return out
}

// Get reports figure f of the record at now, as Entry.Get would have for
// its entry; period is the table's. A record's rates are those of the
// window its snapshot was taken in: read in a later window, they slide
// out as an entry's would.
func (r *Record) Get(f Figure, period time.Duration, now time.Time) uint64 {
	switch {
	case f == ConnCur:
		return r.ConnCur
	case f.isCount():
		return r.Counts[countIndex[f]]
	case !f.isRate() || period <= 0:
		return 0
	}
	i := int(rateIndex[f])
	p := int64(period)
	w, elapsed := window(now.UnixNano(), p)
	var curr, prev uint64
	switch r.window {
	case w:
		curr, prev = r.Rates[2*i], r.Rates[2*i+1]
	case w - 1:
		prev = r.Rates[2*i]
	default:
		return 0
	}
	hi, lo := bits.Mul64(prev, uint64(p-elapsed))
	q, _ := bits.Div64(hi, lo, uint64(p))
	return curr + q
}
