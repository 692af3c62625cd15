package stats

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Values are counters by series: a metric's name and label values, as Key
// joins them.
type Values map[string]float64

// Key is the series key of a metric with label values.
func Key(name string, labels ...string) string {
	n := len(name)
	for _, l := range labels {
		n += 1 + len(l)
	}
	b := make([]byte, 0, n)
	b = append(b, name...)
	for _, l := range labels {
		b = append(append(b, 0), l...)
	}
	return string(b)
}

// Report is what one generation counted itself, since it started: sent to
// the newest generation while it drains and when it exits, handed to the
// next generation with the state. Values only grow, so a report may come
// twice, late or out of order: the newest generation keeps the largest
// value of each series.
type Report struct {
	Generation int    `json:"generation"`
	Pid        int    `json:"pid"`
	Values     Values `json:"values"`
	// Connections is how many connections the generation serves now.
	Connections int64 `json:"connections"`
	// Final says the generation has exited, or is about to: it counts
	// nothing more.
	Final bool `json:"final,omitempty"`
	// Seen, in Live's answer, is when the ledger last heard of the
	// generation.
	Seen time.Time `json:"-"`
	// Zero, in a handed-over ledger, is what the generation had counted
	// when the counters were cleared (clear counters all): what it
	// counts is its values less these.
	Zero Values `json:"zero,omitempty"`
}

// ID names the generation of r in a ledger.
func (r Report) ID() string { return fmt.Sprintf("%d/%d", r.Generation, r.Pid) }

// Carried is a ledger as handed to the next generation and saved in the
// state file.
type Carried struct {
	// Base is the sum of the generations that ended.
	Base Values `json:"base,omitempty"`
	// Live are the generations that may still count, as last reported.
	Live []Report `json:"live,omitempty"`
	// Ended names the generations whose counts are in Base, so that a late
	// report of theirs is not counted twice.
	Ended []string `json:"ended,omitempty"`
}

// maxEnded bounds the ended generations a ledger remembers: a report comes
// at most seconds after its generation ended, long before this many
// reloads.
const maxEnded = 1024

// Ledger is what the other generations counted: the ones before this one,
// ended or draining. Its zero value is empty; it is safe for concurrent
// use.
type Ledger struct {
	mu    sync.Mutex
	base  Values
	live  map[string]*liveGen
	ended []string
	done  map[string]bool
	sum   Values // base + every live generation's values
}

type liveGen struct {
	Report
	seen time.Time
	// zero is what the generation had counted when the counters were
	// cleared: what it counts is its values less these.
	zero Values
}

// counted is what g counted since the counters were last cleared.
func (g *liveGen) counted(k string, v float64) float64 { return max(v-g.zero[k], 0) }

// Restore sets l to c, as the previous generation left it.
func (l *Ledger) Restore(c Carried, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.base, l.live, l.ended, l.done = Values{}, map[string]*liveGen{}, nil, map[string]bool{}
	for k, v := range c.Base {
		l.base[k] = v
	}
	for _, id := range c.Ended {
		l.endedLocked(id)
	}
	for _, r := range c.Live {
		l.mergeLocked(r, now)
	}
	l.resum()
}

// Merge takes a generation's report in and reports whether it changed
// anything.
func (l *Ledger) Merge(r Report, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mergeLocked(r, now) {
		return false
	}
	l.resum()
	return true
}

func (l *Ledger) mergeLocked(r Report, now time.Time) bool {
	id := r.ID()
	if l.done[id] {
		return false
	}
	if l.live == nil {
		l.live = map[string]*liveGen{}
	}
	g := l.live[id]
	if g == nil {
		g = &liveGen{Report: Report{Generation: r.Generation, Pid: r.Pid, Values: Values{}}}
		l.live[id] = g
	}
	for k, v := range r.Values {
		if v > g.Values[k] {
			g.Values[k] = v
		}
	}
	if r.Zero != nil && g.zero == nil {
		g.zero = r.Zero
	}
	g.Connections, g.seen = r.Connections, now
	if r.Final {
		l.endLocked(id)
	}
	return true
}

// End folds the generation id into the base: it counts no more (it
// exited, or died).
func (l *Ledger) End(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live[id] != nil {
		l.endLocked(id)
		l.resum()
	}
}

func (l *Ledger) endLocked(id string) {
	g := l.live[id]
	if g == nil {
		return
	}
	if l.base == nil {
		l.base = Values{}
	}
	for k, v := range g.Values {
		l.base[k] += g.counted(k, v)
	}
	delete(l.live, id)
	l.endedLocked(id)
}

func (l *Ledger) endedLocked(id string) {
	if l.done == nil {
		l.done = map[string]bool{}
	}
	if l.done[id] {
		return
	}
	l.done[id] = true
	l.ended = append(l.ended, id)
	if len(l.ended) > maxEnded {
		delete(l.done, l.ended[0])
		l.ended = l.ended[1:]
	}
}

// resum recomputes the sum; l.mu is held.
func (l *Ledger) resum() {
	sum := make(Values, len(l.base))
	for k, v := range l.base {
		sum[k] = v
	}
	for _, g := range l.live {
		for k, v := range g.Values {
			sum[k] += g.counted(k, v)
		}
	}
	l.sum = sum
}

// Clear forgets what the other generations counted until now: the ended
// ones' counts, and the live ones' so far (what they report from now on
// counts from here).
func (l *Ledger) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.base = Values{}
	for _, g := range l.live {
		g.zero = make(Values, len(g.Values))
		for k, v := range g.Values {
			g.zero[k] = v
		}
	}
	l.resum()
}

// Sum returns what the other generations counted, by series. The map is
// shared: do not change it.
func (l *Ledger) Sum() Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sum
}

// Live returns the generations that may still count, oldest first.
func (l *Ledger) Live() []Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Report, 0, len(l.live))
	for _, g := range l.live {
		r := g.Report
		r.Values, r.Zero, r.Seen = nil, nil, g.seen
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Generation < out[j].Generation })
	return out
}

// Carry returns the ledger to hand over, with own (this generation's own
// report) among the live generations.
func (l *Ledger) Carry(own Report) Carried {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Carried{Base: make(Values, len(l.base)), Ended: append([]string(nil), l.ended...)}
	for k, v := range l.base {
		c.Base[k] = v
	}
	for _, g := range l.live {
		r := g.Report
		r.Values = make(Values, len(g.Values))
		for k, v := range g.Values {
			r.Values[k] = v
		}
		r.Zero = g.zero
		c.Live = append(c.Live, r)
	}
	sort.Slice(c.Live, func(i, j int) bool { return c.Live[i].Generation < c.Live[j].Generation })
	if own.Final {
		for k, v := range own.Values {
			c.Base[k] += v
		}
		c.Ended = append(c.Ended, own.ID())
	} else {
		c.Live = append(c.Live, own)
	}
	return c
}
