package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// queue holds the requests that wait for a slot because every server that
// could take them is full. It is first in, first out: a slot that frees up
// goes to the request that has waited longest, handed over directly, so a
// newcomer cannot take it first. Its zero value is an empty queue.
type queue struct {
	waiting    atomic.Int32 // len of the list, read without the lock by Release
	mu         sync.Mutex
	head, tail *waiter
}

// waiter is one queued request. got is written under the queue's lock,
// before the wake-up.
type waiter struct {
	prev, next *waiter
	hash       uint64
	got        *Server
	queued     bool
	wake       chan struct{} // buffered, 1
}

var waiters = sync.Pool{New: func() any { return &waiter{wake: make(chan struct{}, 1)} }}

func (q *queue) push(w *waiter) {
	w.prev, w.next, w.queued = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.waiting.Add(1)
}

func (q *queue) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.waiting.Add(-1)
}

// give hands s, whose slot the caller holds, to the first waiter: it
// reports false, and the caller keeps the slot, when nobody waits. The
// caller holds q.mu.
func (q *queue) give(s *Server) bool {
	w := q.head
	if w == nil {
		return false
	}
	q.remove(w)
	w.got = s
	w.wake <- struct{}{}
	return true
}

// Wait queues r until a server has a slot for it, or until the deadline
// passes or done is closed; it returns the server, whose slot the caller
// must Release, or nil. Slots go to waiters in the order they came. Call
// it after Pick returned nil while Available was true; r.Tried is not
// consulted. A nil done never closes.
func (p *Pool) Wait(r *Request, deadline time.Time, done <-chan struct{}) *Server {
	q := &p.queue
	w := waiters.Get().(*waiter)
	w.hash = r.Hash
	q.mu.Lock()
	q.push(w)
	// A slot may have freed up since the caller's Pick, before anybody
	// waited to be handed it: queued first, then looked for, it cannot be
	// missed (Release looks at the queue after it frees a slot).
	if q.head == w {
		if s := p.pickFree(w.hash); s != nil {
			q.remove(w)
			q.mu.Unlock()
			waiters.Put(w)
			return s
		}
	}
	q.mu.Unlock()

	t := time.NewTimer(time.Until(deadline))
	select {
	case <-w.wake:
	case <-t.C:
	case <-done:
	}
	t.Stop()
	q.mu.Lock()
	if w.queued {
		q.remove(w)
	}
	s := w.got
	q.mu.Unlock()
	// A hand-over may have raced the deadline: the wake-up is then still
	// in the channel, and the server is the caller's anyway.
	select {
	case <-w.wake:
	default:
	}
	w.got = nil
	waiters.Put(w)
	return s
}

// pickFree takes a slot for a request of that hash on any server that has
// one, primaries first, or returns nil.
func (p *Pool) pickFree(hash uint64) *Server {
	var tried [8]*Server
	return p.Pick(&Request{Hash: hash, Tried: tried[:0]})
}

// Queued returns how many requests wait for a slot now.
func (p *Pool) Queued() int { return int(p.queue.waiting.Load()) }

// kick gives free slots to waiters, first come first served, for as long
// as there are both: after a slot freed up or a server came up, was set
// ready or got more weight.
func (p *Pool) kick() {
	q := &p.queue
	if q.waiting.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head != nil {
		s := p.pickFree(q.head.hash)
		if s == nil {
			return
		}
		q.give(s)
	}
}

// release hands s's slot over to the request that has waited longest, if
// one waits and s takes new requests, and reports whether it did.
func (p *Pool) release(s *Server) bool {
	q := &p.queue
	if q.waiting.Load() == 0 || !s.takesNew() {
		return false
	}
	q.mu.Lock()
	ok := q.give(s)
	q.mu.Unlock()
	if ok {
		s.total.Add(1)
	}
	return ok
}
