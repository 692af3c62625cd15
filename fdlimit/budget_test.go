package fdlimit

import (
	"sync"
	"testing"
	"time"
)

func TestBudgetTakeGiveWake(t *testing.T) {
	b := NewBudget(5)
	for i := range 2 {
		if ok, _ := b.Take(2); !ok {
			t.Fatalf("take %d of 2 descriptors from 5 refused", i+1)
		}
	}
	ok, wake := b.Take(2)
	if ok || wake == nil {
		t.Fatalf("took 2 more with 1 free (ok %v, wake %v)", ok, wake)
	}
	if b.Free() != 1 {
		t.Fatalf("free = %d after a refused take, want 1", b.Free())
	}
	select {
	case <-wake:
		t.Fatal("wake closed before anything was given back")
	default:
	}
	b.Give(2)
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("wake not closed by Give")
	}
	if ok, _ := b.Take(2); !ok {
		t.Fatal("take refused after Give")
	}
}

func TestBudgetServesAConnectionLargerThanItself(t *testing.T) {
	b := NewBudget(1)
	if ok, _ := b.Take(2); !ok {
		t.Fatal("a connection larger than the whole budget is never served")
	}
	if ok, _ := b.Take(1); ok {
		t.Fatal("took more while the oversize connection holds everything")
	}
	b.Give(2)
	if b.Free() != 1 {
		t.Fatalf("free = %d, want 1", b.Free())
	}
}

// Many takers never hold more than the budget at once, and none waits for
// ever.
func TestBudgetConcurrent(t *testing.T) {
	const size, per = 10, 2
	b := NewBudget(size)
	var mu sync.Mutex
	held, most := 0, 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				for {
					ok, wake := b.Take(per)
					if ok {
						break
					}
					<-wake
				}
				mu.Lock()
				held += per
				most = max(most, held)
				mu.Unlock()
				mu.Lock()
				held -= per
				mu.Unlock()
				b.Give(per)
			}
		})
	}
	wg.Wait()
	if most > size || b.Free() != size {
		t.Fatalf("at most %d held of %d, %d free at the end", most, size, b.Free())
	}
}
