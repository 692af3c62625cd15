package h2

import (
	"sync"
	"time"
)

// Stream goroutines that outlive their stream.
const (
	// maxIdleWorkers bounds the goroutines kept waiting for a stream, all
	// connections of a Server together: after a burst, the rest end.
	maxIdleWorkers = 1024
	// workerIdle is how long a goroutine waits for its next stream: one
	// idle through a whole period of the reaper (and at most two) ends.
	workerIdle = 5 * time.Second
)

// workers runs the streams' handlers on goroutines that serve one stream
// after another. A goroutine started per stream starts on a small stack
// and grows it, copying it each time (runtime.morestack), to the depth of
// a proxied exchange: perf put that at some 4% of lb's CPU for each HTTP/2
// request. A goroutine kept waiting has its stack grown already.
//
// The zero value is ready to use; stop ends the waiting goroutines and
// those to come.
type workers struct {
	mu      sync.Mutex
	idle    []*worker // the most recently idle last
	stopped bool
	// reap, while armed, ends the workers idle since before its previous
	// round; round counts its rounds.
	reap  *time.Timer
	armed bool
	round uint64
	// linger is the reaper's period; 0 means workerIdle.
	linger time.Duration
	// live counts the goroutines, busy or idle, not told to end.
	live int
}

// worker is one goroutine waiting in runWorker.
type worker struct {
	next  chan *Stream // a stream to serve, or nil: end
	since uint64       // the reaper's round when it became idle
}

// run serves st on a waiting goroutine, or on a new one.
func (ws *workers) run(st *Stream) {
	ws.mu.Lock()
	if n := len(ws.idle); n > 0 {
		w := ws.idle[n-1]
		ws.idle[n-1] = nil
		ws.idle = ws.idle[:n-1]
		ws.mu.Unlock()
		w.next <- st
		return
	}
	ws.live++
	ws.mu.Unlock()
	go runWorker(ws, &worker{next: make(chan *Stream, 1)}, st)
}

// runWorker serves st, then the streams run hands it, until it is told to
// end or finds no room among the idle workers.
func runWorker(ws *workers, w *worker, st *Stream) {
	for st != nil {
		c := st.c
		c.s.Handler.ServeStream(st)
		c.endStream(st)
		c.wg.Done()
		if !ws.wait(w) {
			return
		}
		st = <-w.next
	}
}

// wait makes w idle; false when it should end instead.
func (ws *workers) wait(w *worker) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.stopped || len(ws.idle) >= maxIdleWorkers {
		ws.live--
		return false
	}
	w.since = ws.round
	ws.idle = append(ws.idle, w)
	if !ws.armed {
		ws.armed = true
		if ws.reap == nil {
			ws.reap = time.AfterFunc(ws.period(), ws.reapIdle)
		} else {
			ws.reap.Reset(ws.period())
		}
	}
	return true
}

// reapIdle is the reaper: it ends the workers that were idle already at its
// previous round (the oldest, first in ws.idle), and fires again while some
// are left.
func (ws *workers) reapIdle() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	n := 0
	for n < len(ws.idle) && ws.idle[n].since < ws.round {
		ws.idle[n].next <- nil
		ws.idle[n] = nil
		n++
	}
	ws.live -= n
	ws.idle = append(ws.idle[:0], ws.idle[n:]...)
	ws.round++
	if ws.stopped || len(ws.idle) == 0 {
		ws.armed = false
		return
	}
	ws.reap.Reset(ws.period())
}

func (ws *workers) period() time.Duration {
	if ws.linger > 0 {
		return ws.linger
	}
	return workerIdle
}

// stop ends the idle workers, and each busy one when its stream is done.
func (ws *workers) stop() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.stopped = true
	for i, w := range ws.idle {
		w.next <- nil
		ws.idle[i] = nil
	}
	ws.live -= len(ws.idle)
	ws.idle = ws.idle[:0]
}
