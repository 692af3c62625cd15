// Package park holds idle connections at no cost but their sockets: a
// parked connection has no goroutine, no buffer and no pipe, only an entry
// in an epoll set that Go's own poller watches, and a timer for its
// deadline. When its peer sends bytes (or closes, or resets it) or its
// deadline passes, a Waker is called in a goroutine of its own, which
// serves the connection until it is idle again and parks it again.
//
// The epoll set is edge-free and one-shot: each parked connection is
// reported once, and taken out of the set before its Waker runs, so the
// Waker may read, write, park again or close the connection at will. The
// epoll descriptor is itself watched by the runtime's poller (it becomes
// readable when a parked connection is ready), so waiting costs no thread
// of its own. The deadlines of all parked connections share one timer,
// set for the earliest of them (a heap), so a parked connection costs no
// timer of its own either.
package park

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reason says why a parked connection woke.
type Reason uint8

// The reasons a Waker is called.
const (
	// Ready: the connection has something to read: bytes, the peer's
	// close, or an error.
	Ready Reason = iota + 1
	// Expired: its deadline passed first.
	Expired
	// Closed: the Poller was closed.
	Closed
	// Canceled: the owner took the connection back (Cancel).
	Canceled
)

func (r Reason) String() string {
	switch r {
	case Ready:
		return "ready"
	case Expired:
		return "expired"
	case Closed:
		return "closed"
	case Canceled:
		return "canceled"
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// Waker serves a connection that woke. It is called once per Park, in a
// goroutine of its own.
type Waker interface {
	Wake(r Reason)
}

// Poller watches parked connections. Its zero value is ready to use: the
// epoll set is made on the first Park. One Poller serves a whole process.
type Poller struct {
	once sync.Once
	err  error
	file *os.File // the epoll descriptor, watched by the runtime's poller
	epfd int

	mu      sync.Mutex
	slots   []*Parked // by slot; nil when free
	free    []uint32  // free slots
	closed  bool
	waiting atomic.Int64 // connections parked now
	done    chan struct{}
	// due holds the parked connections that have a deadline, earliest
	// first; timer fires at the earliest, timerAt (0: not set).
	due     dueHeap
	timer   *time.Timer
	timerAt int64
}

// Parked is one parked connection.
type Parked struct {
	p    *Poller
	fd   int
	slot uint32
	gen  uint32
	w    Waker
	// at is its deadline in nanoseconds (see clock), 0 for none; hi its
	// index in the Poller's heap, -1 when not in it. Both are p.mu's.
	at int64
	hi int
	// state is parked until one wake-up takes it: the event, the
	// deadline or the Poller's close, whichever comes first.
	state atomic.Uint32
}

// clock is the time deadlines are kept in: nanoseconds since the process
// began, monotonic.
var epoch = time.Now()

func clock(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(epoch)), 1)
}

// dueHeap orders parked connections by deadline (container/heap).
type dueHeap []*Parked

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}
func (h *dueHeap) Push(x any) {
	pk := x.(*Parked)
	pk.hi = len(*h)
	*h = append(*h, pk)
}
func (h *dueHeap) Pop() any {
	old := *h
	n := len(old) - 1
	pk := old[n]
	old[n] = nil
	*h = old[:n]
	pk.hi = -1
	return pk
}

const (
	stateParked uint32 = iota
	stateWoken
)

// maxEvents is how many ready connections one epoll_wait returns.
const maxEvents = 128

// errClosed is Park on a closed Poller.
var errClosed = errors.New("park: poller closed")

// init makes the epoll set and starts the goroutine that waits on it.
func (p *Poller) init() error {
	p.once.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.err = fmt.Errorf("park: epoll_create1: %w", err)
			return
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			p.err = fmt.Errorf("park: epoll descriptor: %w", err)
			return
		}
		p.epfd = fd
		p.file = os.NewFile(uintptr(fd), "park-epoll") // non-blocking: the runtime's poller watches it
		p.done = make(chan struct{})
		p.timer = time.AfterFunc(time.Duration(math.MaxInt64), p.expire)
		go p.wait()
	})
	return p.err
}

// Park parks c until it has something to read or until deadline, then
// calls w.Wake in a goroutine of its own. The caller must not read from c
// or close it until then. The zero deadline means none.
func (p *Poller) Park(c syscall.Conn, deadline time.Time, w Waker) (*Parked, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("park: %w", err)
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd = int(s) }); cerr != nil {
		return nil, fmt.Errorf("park: %w", cerr)
	}
	return p.ParkFD(fd, deadline, w)
}

// ParkFD is Park for a bare socket descriptor, one that no net.Conn holds
// (see sock.Detach).
func (p *Poller) ParkFD(fd int, deadline time.Time, w Waker) (*Parked, error) {
	if err := p.init(); err != nil {
		return nil, err
	}
	pk := &Parked{p: p, w: w, fd: fd, hi: -1}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errClosed
	}
	if n := len(p.free); n > 0 {
		pk.slot = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		pk.slot = uint32(len(p.slots))
		p.slots = append(p.slots, nil)
	}
	p.slots[pk.slot] = pk
	pk.gen = nextGen.Add(1)
	p.mu.Unlock()
	p.waiting.Add(1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(pk.slot), Pad: int32(pk.gen)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, pk.fd, &ev); err != nil {
		p.release(pk)
		return nil, fmt.Errorf("park: epoll_ctl: %w", err)
	}
	// The deadline counts once the descriptor is in the set: one that
	// passed first would take it out of the set before it was in.
	if !deadline.IsZero() {
		pk.Reschedule(deadline)
	}
	return pk, nil
}

// nextGen numbers parkings, so that a late event for a slot that was freed
// and taken again is not taken for the new one.
var nextGen atomic.Uint32

// Waiting returns how many connections are parked now.
func (p *Poller) Waiting() int64 { return p.waiting.Load() }

// Reschedule moves pk's deadline to t (the zero t: none), if pk is still
// parked.
func (pk *Parked) Reschedule(t time.Time) {
	p := pk.p
	at := clock(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if pk.state.Load() != stateParked {
		return
	}
	pk.at = at
	switch {
	case pk.hi >= 0 && at == 0:
		heap.Remove(&p.due, pk.hi)
	case pk.hi >= 0:
		heap.Fix(&p.due, pk.hi)
	case at != 0:
		heap.Push(&p.due, pk)
	}
	p.setTimer()
}

// setTimer sets the Poller's timer for the earliest deadline, unless it
// is set for that already; p.mu is held.
func (p *Poller) setTimer() {
	if len(p.due) == 0 {
		return // a timer that fires finds nothing due: no harm
	}
	if at := p.due[0].at; at != p.timerAt {
		p.timerAt = at
		p.timer.Reset(time.Duration(at - clock(time.Now())))
	}
}

// expire is the Poller's timer: it wakes the connections whose deadline
// passed, and sets the timer for the next.
func (p *Poller) expire() {
	now := clock(time.Now())
	var due []*Parked
	p.mu.Lock()
	p.timerAt = 0
	for len(p.due) > 0 && p.due[0].at <= now {
		due = append(due, heap.Pop(&p.due).(*Parked))
	}
	p.setTimer()
	p.mu.Unlock()
	for _, pk := range due {
		pk.wake(Expired)
	}
}

// Cancel wakes pk at once with Canceled, if it is still parked: its
// descriptor is out of the set when Cancel returns, so the caller may
// close it; the Waker runs as for any wake-up.
func (pk *Parked) Cancel() { pk.wake(Canceled) }

// wake takes pk out of the set, once, and runs its Waker.
func (pk *Parked) wake(r Reason) {
	if !pk.state.CompareAndSwap(stateParked, stateWoken) {
		return
	}
	// The registration goes before the Waker may close the descriptor
	// (and the number be reused).
	_ = unix.EpollCtl(pk.p.epfd, unix.EPOLL_CTL_DEL, pk.fd, nil)
	pk.p.release(pk)
	go pk.w.Wake(r)
}

// release frees pk's slot, and takes it out of the deadlines.
func (p *Poller) release(pk *Parked) {
	p.mu.Lock()
	if int(pk.slot) < len(p.slots) && p.slots[pk.slot] == pk {
		p.slots[pk.slot] = nil
		p.free = append(p.free, pk.slot)
	}
	if pk.hi >= 0 {
		heap.Remove(&p.due, pk.hi)
	}
	p.mu.Unlock()
	p.waiting.Add(-1)
}

// wait is the Poller's goroutine: it reads ready connections from the
// epoll set whenever the runtime's poller says it has some, until Close.
func (p *Poller) wait() {
	defer close(p.done)
	rc, err := p.file.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, maxEvents)
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				// Nothing ready: wait for the set to become readable.
				return p.isClosed()
			}
			p.dispatch(events[:n])
			if n < len(events) {
				return p.isClosed()
			}
		}
	})
}

func (p *Poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// dispatch wakes the connections of events.
func (p *Poller) dispatch(events []unix.EpollEvent) {
	for _, ev := range events {
		p.mu.Lock()
		var pk *Parked
		if slot := uint32(ev.Fd); int(slot) < len(p.slots) {
			if q := p.slots[slot]; q != nil && q.gen == uint32(ev.Pad) {
				pk = q
			}
		}
		p.mu.Unlock()
		if pk != nil {
			pk.wake(Ready)
		}
	}
}

// Close wakes every parked connection with Closed and stops the Poller's
// goroutine; Park fails from then on.
func (p *Poller) Close() error {
	if err := p.init(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.timer.Stop()
	parked := make([]*Parked, 0, len(p.slots))
	for _, pk := range p.slots {
		if pk != nil {
			parked = append(parked, pk)
		}
	}
	p.mu.Unlock()
	for _, pk := range parked {
		pk.wake(Closed)
	}
	err := p.file.Close()
	<-p.done
	return err
}
