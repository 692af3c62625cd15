package fdlimit

import "sync"

// Budget is the file descriptors that the connections of every frontend
// share while lb runs (Result.Budget). A frontend takes a connection's
// descriptors before it accepts it and gives them back when the connection
// ends; while too few are left it does not accept, and new connections wait
// in the kernel's accept queue instead of being accepted and then failing to
// reach a server. The zero value has nothing to take; use NewBudget. A
// Budget is safe for concurrent use.
type Budget struct {
	mu   sync.Mutex
	size int
	free int
	// wake is closed, and cleared, when descriptors are given back; nil
	// when nobody waits.
	wake chan struct{}
}

// NewBudget returns a budget of size descriptors.
func NewBudget(size int) *Budget {
	return &Budget{size: size, free: size}
}

// Take takes n descriptors and reports true when that many are free (or
// when nothing at all is taken: a connection larger than the whole budget
// still gets served alone). Otherwise it takes none and returns a channel
// that is closed once some are given back.
func (b *Budget) Take(n int) (ok bool, wake <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.free >= n || (b.free == b.size && b.size > 0) {
		b.free -= n
		return true, nil
	}
	return false, b.wakeLocked()
}

// Give gives back n descriptors taken with Take.
func (b *Budget) Give(n int) {
	b.mu.Lock()
	b.free += n
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}

// Wake returns a channel that is closed the next time descriptors are given
// back: a connection ended, so a descriptor may be free again.
func (b *Budget) Wake() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wakeLocked()
}

func (b *Budget) wakeLocked() chan struct{} {
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	return b.wake
}

// Size returns the budget's size in descriptors.
func (b *Budget) Size() int { return b.size }

// Free returns the descriptors not taken now.
func (b *Budget) Free() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.free
}
