package turn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSettle on one P: Settle waits for goroutines that are ready to run
// and write (the runtime may run the caller early now and then, more often
// under the race detector, which shuffles the run queue: so in most
// trials, not all), returns when nothing is written, and after max turns
// when writes never stop.
func TestSettle(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var n atomic.Uint32

	const trials = 20
	whole := 0
	for range trials {
		n.Store(0)
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					n.Add(1)
					runtime.Gosched()
				}
			}()
		}
		Settle(&n, 100)
		if n.Load() == 30 {
			whole++
		}
		wg.Wait()
	}
	if whole < trials/2 {
		t.Errorf("Settle returned after every write of the goroutines ready before it in %d of %d trials, want most", whole, trials)
	}

	// Nothing written: Settle returns.
	Settle(&n, 100)

	// Writes that never stop: Settle returns after max turns.
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			n.Add(1)
			runtime.Gosched()
		}
	}()
	Settle(&n, 5)
	stop.Store(true)
	<-done
}
