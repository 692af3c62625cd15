// Package reclaim gives back to the operating system the memory that a
// burst of work left behind.
//
// Go keeps the memory its heap grew to: after a burst (thousands of
// connections served at once, then parked; a flood of unfinished request
// heads), the goroutine stacks and buffers it used go back to the heap,
// but the process keeps them resident until the heap grows again or the
// runtime's scavenger slowly returns them. A Burst watches a level of such
// memory: once it went over High and fell back near zero (an eighth of its
// peak) for a while, it collects garbage and returns the free memory
// (runtime/debug.FreeOSMemory), at most once every few seconds. Steady
// load below High costs an atomic add per change and nothing else.
package reclaim

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Burst's timings.
const (
	// DefaultPoll is how often a burst's watch looks at the level.
	DefaultPoll = 100 * time.Millisecond
	// DefaultSettle is how long the level must stay under High for the
	// burst to be over (and what held the memory to let go of it).
	DefaultSettle = 500 * time.Millisecond
	// DefaultGap is the least time between two frees.
	DefaultGap = 5 * time.Second
)

// Burst watches a level of transient memory, in bytes. Set High (and the
// optional fields) before the first Add.
type Burst struct {
	// High is the level that makes a burst worth reclaiming after.
	High int64
	// Free collects garbage and returns memory to the operating system;
	// nil means runtime.GC twice (a sync.Pool keeps its objects through
	// one collection) and debug.FreeOSMemory. Tests replace it.
	Free func()
	// Poll, Settle and Gap override DefaultPoll, DefaultSettle and
	// DefaultGap when not 0.
	Poll, Settle, Gap time.Duration

	level atomic.Int64
	peak  atomic.Int64
	// watching says a watch goroutine runs.
	watching atomic.Bool

	mu       sync.Mutex
	lastFree time.Time
}

// Add changes the level by n.
func (b *Burst) Add(n int64) {
	l := b.level.Add(n)
	if n <= 0 || l <= b.High {
		return
	}
	for p := b.peak.Load(); l > p && !b.peak.CompareAndSwap(p, l); p = b.peak.Load() {
	}
	if b.watching.CompareAndSwap(false, true) {
		go b.watch()
	}
}

// Level returns the level now.
func (b *Burst) Level() int64 { return b.level.Load() }

// Watching reports whether a burst is being watched.
func (b *Burst) Watching() bool { return b.watching.Load() }

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// watch is a burst's goroutine: it waits for the level to stay under High
// for Settle, frees memory if the level is then near zero (an eighth of
// the peak or less, and the last free was over Gap ago), and ends; the
// next burst starts it again.
func (b *Burst) watch() {
	t := time.NewTicker(or(b.Poll, DefaultPoll))
	defer t.Stop()
	var calm time.Time // since when the level is under High
	for now := range t.C {
		level, high := b.level.Load(), b.High
		switch {
		case level > high:
			calm = time.Time{}
			continue
		case calm.IsZero():
			calm = now
			continue
		case now.Sub(calm) < or(b.Settle, DefaultSettle):
			continue
		case level <= b.peak.Load()/8:
			// The gap is kept on the clock, not on the tick's time, which
			// a busy process reads late.
			at := time.Now()
			b.mu.Lock()
			due := at.Sub(b.lastFree) >= or(b.Gap, DefaultGap)
			if due {
				b.lastFree = at
			}
			b.mu.Unlock()
			if !due {
				continue // the burst is over, but the last free was recent
			}
			if b.Free != nil {
				b.Free()
			} else {
				freeMemory()
			}
		}
		b.peak.Store(0)
		// Nothing of b but its atomics is read after this: once Watching
		// reports false, High and Free may change.
		b.watching.Store(false)
		// A burst that began as this one ended starts its own watch.
		if b.level.Load() > high && b.watching.CompareAndSwap(false, true) {
			calm = time.Time{}
			continue
		}
		return
	}
}

// freeMemory collects garbage twice, so that what sync.Pools held goes
// too, and returns the free memory to the operating system.
func freeMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
