package table

import (
	"encoding/base64"
	"math/bits"
	"time"
	"unicode/utf8"
)

// Record is an entry as a snapshot holds it: a JSON-friendly copy. Figures
// at 0 are left out of Counts and Rates.
type Record struct {
	// Key is the key bytes as a Go string. JSON replaces bytes that are not
	// valid UTF-8, so such keys also come as KeyB64.
	Key string `json:"key"`
	// KeyB64 is the key in standard base64, set only when Key is not valid UTF-8.
	KeyB64 string `json:"key_b64,omitempty"`
	// Seen is the entry's last use.
	Seen time.Time `json:"seen"`
	// Server is the server the key sticks to, if any.
	Server string `json:"server,omitempty"`
	// ConnCur is informational: Merge does not restore it.
	ConnCur uint64 `json:"conn_cur,omitempty"`
	// Counts holds the totals (conn_cnt, http_req_cnt, http_err_cnt), keyed by Figure name.
	Counts map[string]uint64 `json:"counts,omitempty"`
	// Rates holds the rate counters' raw state, keyed by Figure name.
	Rates map[string]Rate `json:"rates,omitempty"`
}

// Rate is a rate counter's raw state: the start of its current window and the
// counts of that window and of the one before. Windows are Period long and
// start at multiples of Period since the Unix epoch.
type Rate struct {
	Start time.Time `json:"start"`
	Curr  uint64    `json:"curr"`
	Prev  uint64    `json:"prev"`
}

// RawKey returns the key bytes: KeyB64 decoded if set (and valid base64),
// else Key's bytes.
func (r Record) RawKey() []byte {
	if r.KeyB64 != "" {
		if b, err := base64.StdEncoding.DecodeString(r.KeyB64); err == nil {
			return b
		}
	}
	return []byte(r.Key)
}

// Snapshot is a whole table, for a reload or the state file.
type Snapshot struct {
	Name    string   `json:"name"`
	Period  string   `json:"period"` // Spec.Period as time.Duration.String gives it
	Records []Record `json:"records"`
}

// Snapshot returns every entry live at now, its rates aligned to now's window.
func (t *Table) Snapshot(now time.Time) Snapshot {
	s := Snapshot{Name: t.spec.Name, Period: t.spec.Period.String(), Records: make([]Record, 0, t.Len())}
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
		Seen:    time.Unix(0, e.seen.Load()).UTC(),
		Server:  e.Server(),
		ConnCur: uint64(max(e.connCur.Load(), 0)),
	}
	if !utf8.ValidString(e.key) {
		r.KeyB64 = base64.StdEncoding.EncodeToString([]byte(e.key))
	}
	for f := range numFigures {
		switch {
		case f.isCount():
			if v := e.counts[countIndex[f]].Load(); v != 0 {
				if r.Counts == nil {
					r.Counts = make(map[string]uint64, numCounts)
				}
				r.Counts[f.String()] = v
			}
		case f.isRate():
			if v := e.rateRaw(int(rateIndex[f]), ns); v.Curr != 0 || v.Prev != 0 {
				if r.Rates == nil {
					r.Rates = make(map[string]Rate, numRates)
				}
				r.Rates[f.String()] = v
			}
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
	rates := err == nil && p == t.spec.Period
	w, _ := window(ns, t.period)
	merged := 0
	for i := range s.Records {
		r := &s.Records[i]
		if r.Seen.IsZero() {
			continue
		}
		seen := r.Seen.UnixNano()
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
		for name, v := range r.Counts {
			if f, err := ParseFigure(name); err == nil && f.isCount() {
				e.counts[countIndex[f]].Add(v)
			}
		}
		if rates {
			for name, v := range r.Rates {
				f, err := ParseFigure(name)
				if err != nil || !f.isRate() {
					continue
				}
				rc := &e.rates[rateIndex[f]]
				rw, _ := window(v.Start.UnixNano(), t.period)
				switch {
				case rw >= w:
					if v.Curr != 0 {
						rc.add(w, v.Curr)
					}
					if v.Prev != 0 {
						rc.add(w-1, v.Prev)
					}
				case rw == w-1:
					if v.Curr != 0 {
						rc.add(w-1, v.Curr)
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

// Get reports figure f of the record at now, as Entry.Get would have for
// its entry; period is the table's. A record's rates are those of the
// window its snapshot was taken in: read in a later window, they slide
// out as an entry's would.
func (r Record) Get(f Figure, period time.Duration, now time.Time) uint64 {
	switch {
	case f == ConnCur:
		return r.ConnCur
	case f.isCount():
		return r.Counts[f.String()]
	case !f.isRate() || period <= 0:
		return 0
	}
	rt, ok := r.Rates[f.String()]
	if !ok {
		return 0
	}
	p := int64(period)
	w, elapsed := window(now.UnixNano(), p)
	start, _ := window(rt.Start.UnixNano(), p)
	var curr, prev uint64
	switch start {
	case w:
		curr, prev = rt.Curr, rt.Prev
	case w - 1:
		prev = rt.Curr
	default:
		return 0
	}
	hi, lo := bits.Mul64(prev, uint64(p-elapsed))
	q, _ := bits.Div64(hi, lo, uint64(p))
	return curr + q
}
