package reclaim

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fast is a Burst with short timings whose frees are counted.
func fast(high int64, gap time.Duration) (*Burst, *atomic.Int32) {
	var frees atomic.Int32
	return &Burst{High: high, Poll: 5 * time.Millisecond, Settle: 30 * time.Millisecond, Gap: gap,
		Free: func() { frees.Add(1) }}, &frees
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBurstFreesOnceOver: a level that went over High and came back to
// nothing frees memory once, after Settle; the watch then ends.
func TestBurstFreesOnceOver(t *testing.T) {
	b, frees := fast(100, time.Millisecond)
	b.Add(150)
	if !b.Watching() {
		t.Fatal("no watch after the level went over High")
	}
	time.Sleep(50 * time.Millisecond)
	if n := frees.Load(); n != 0 {
		t.Fatalf("%d frees while the level is over High", n)
	}
	b.Add(-150)
	waitUntil(t, "the free", func() bool { return frees.Load() == 1 })
	waitUntil(t, "the watch to end", func() bool { return !b.Watching() })
	time.Sleep(50 * time.Millisecond)
	if n := frees.Load(); n != 1 {
		t.Fatalf("%d frees for one burst, want 1", n)
	}
}

// TestBurstBelowHighCostsNothing: a level that never goes over High starts
// no watch and frees nothing.
func TestBurstBelowHighCostsNothing(t *testing.T) {
	b, frees := fast(100, time.Millisecond)
	for range 1000 {
		b.Add(100)
		b.Add(-100)
	}
	if b.Watching() {
		t.Fatal("a watch runs though the level never went over High")
	}
	time.Sleep(50 * time.Millisecond)
	if n := frees.Load(); n != 0 {
		t.Fatalf("%d frees, want 0", n)
	}
}

// TestBurstKeepsWhatIsInUse: a burst that settles under High but well
// above an eighth of its peak is not freed: the memory is still in use.
func TestBurstKeepsWhatIsInUse(t *testing.T) {
	b, frees := fast(100, time.Millisecond)
	b.Add(400)
	b.Add(-320) // 80: under High, above 400/8
	waitUntil(t, "the watch to end", func() bool { return !b.Watching() })
	if n := frees.Load(); n != 0 {
		t.Fatalf("%d frees while half the burst's memory is in use, want 0", n)
	}
	if b.Level() != 80 {
		t.Fatalf("level %d, want 80", b.Level())
	}
}

// TestBurstGap: bursts closer than Gap free memory once; the watch waits
// out the gap and frees for the later burst.
func TestBurstGap(t *testing.T) {
	const gap = 400 * time.Millisecond
	b, frees := fast(100, gap)
	// The times of the frees, taken as they happen: a wait that sees
	// them later (a busy machine) would shorten the gap it measures.
	var mu sync.Mutex
	var at []time.Time
	b.Free = func() {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		frees.Add(1)
	}
	b.Add(150)
	b.Add(-150)
	waitUntil(t, "the first free", func() bool { return frees.Load() == 1 })
	waitUntil(t, "the first watch to end", func() bool { return !b.Watching() })
	b.Add(150)
	b.Add(-150)
	waitUntil(t, "the second free", func() bool { return frees.Load() == 2 })
	mu.Lock()
	defer mu.Unlock()
	// Free runs a moment after the watch took its time; a preemption in
	// that moment may shift one free by some milliseconds. Without the gap
	// the second free comes a Settle (30ms) after its burst.
	if d := at[1].Sub(at[0]); d < gap-10*time.Millisecond {
		t.Fatalf("second free %v after the first, within the gap %v", d, gap)
	}
}
