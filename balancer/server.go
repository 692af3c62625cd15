// Package balancer picks the server that takes each new connection.
//
// A Pool holds a backend's servers and one Selector per tier (primary and
// backup servers). Selectors are pure functions of the servers' state: they
// read atomics, keep at most a few atomics of their own, never lock and
// never allocate, so a pick is safe on the hot path under any concurrency.
package balancer

import (
	"fmt"
	"sync/atomic"
	"time"

	"lb/stats"
)

// Server is one backend server as the data path sees it. The identity fields
// are set once, before the server is shared; the connection counters are
// atomics.
type Server struct {
	// Name is the server's name in its backend.
	Name string
	// Addr is the resolved "ip:port" to connect to.
	Addr string
	// Weight is the server's share of new connections, 0 to 256. A server of
	// weight 0 is never picked.
	Weight int
	// MaxConn limits concurrent connections; 0 means no limit.
	MaxConn int64
	// Backup servers are picked only when no primary server can be.
	Backup bool

	// SlowStart is how long a server that comes back up takes to ramp from
	// a small share of new connections to its full weight; 0 means at once.
	SlowStart time.Duration

	// hash identifies the server for consistent hashing; derived from Name
	// so that every generation maps clients the same way.
	hash uint64
	// pool is the Pool the server belongs to, whose queue Release serves.
	pool *Pool

	active    atomic.Int64
	maxActive atomic.Int64
	total     atomic.Uint64

	// Runtime state, changed by health checks and operators.
	down      atomic.Bool   // failed its health checks
	admin     atomic.Uint32 // an Admin state
	runWeight atomic.Int32  // the weight an operator set; starts at Weight
	eff       atomic.Int32  // runWeight, scaled down while ramping up
	upSince   atomic.Int64  // unix ns when it last came up, for slow start

	// Counters for statistics.
	errors atomic.Uint64
	// Counts are the server's traffic counters: HTTP exchanges, bytes and
	// latencies.
	Counts stats.Server
}

// NewServer returns a server ready to join a Pool: up, ready, at its
// configured weight.
func NewServer(name, addr string, weight int, maxConn int64, backup bool) *Server {
	s := &Server{Name: name, Addr: addr, Weight: weight, MaxConn: maxConn, Backup: backup, hash: hashString(name)}
	s.runWeight.Store(int32(weight))
	s.eff.Store(int32(weight))
	return s
}

// Admin is an operator's state for a server.
type Admin uint32

// Admin states.
const (
	// AdminReady servers take connections.
	AdminReady Admin = iota
	// AdminDrain servers take no new connections; established ones go on,
	// and health checks go on.
	AdminDrain
	// AdminMaint servers take no traffic and are not checked.
	AdminMaint
)

var adminNames = [...]string{"ready", "drain", "maint"}

// String returns the state as the admin socket writes it.
func (a Admin) String() string {
	if int(a) < len(adminNames) {
		return adminNames[a]
	}
	return "unknown"
}

// ParseAdmin parses "ready", "drain" or "maint".
func ParseAdmin(s string) (Admin, error) {
	for i, n := range adminNames {
		if s == n {
			return Admin(i), nil
		}
	}
	return 0, fmt.Errorf("unknown state %q: use ready, drain or maint", s)
}

// Up reports whether the server passes its health checks (or has none).
func (s *Server) Up() bool { return !s.down.Load() }

// SetUp records the outcome of health checking and reports whether it
// changed. A server that comes up starts its slow start now; call the
// Pool's Refresh afterwards.
func (s *Server) SetUp(up bool) bool {
	if s.down.Swap(!up) == !up {
		return false
	}
	if up {
		s.upSince.Store(time.Now().UnixNano())
		if s.pool != nil {
			s.pool.kick() // requests waiting in the queue may take it
		}
	}
	return true
}

// Admin returns the operator's state for the server.
func (s *Server) Admin() Admin { return Admin(s.admin.Load()) }

// SetAdmin sets the operator's state for the server. A server set ready
// takes requests waiting in its pool's queue at once.
func (s *Server) SetAdmin(a Admin) {
	s.admin.Store(uint32(a))
	if a == AdminReady && s.pool != nil {
		s.pool.kick()
	}
}

// RuntimeWeight returns the weight in force: the configured one unless an
// operator set another.
func (s *Server) RuntimeWeight() int { return int(s.runWeight.Load()) }

// SetWeight sets the weight in force, 0 to 256; call the Pool's Refresh
// afterwards.
func (s *Server) SetWeight(w int) error {
	if w < 0 || w > 256 {
		return fmt.Errorf("weight %d is out of range (0 to 256)", w)
	}
	s.runWeight.Store(int32(w))
	return nil
}

// EffectiveWeight returns the weight selectors balance by now: the
// runtime weight, scaled down during slow start.
func (s *Server) EffectiveWeight() int { return int(s.eff.Load()) }

// ramping reports whether the server is still in slow start at now.
func (s *Server) ramping(now int64) bool {
	return s.SlowStart > 0 && s.Up() && now-s.upSince.Load() < int64(s.SlowStart)
}

// refreshWeight recomputes the effective weight at now and reports whether
// it changed.
func (s *Server) refreshWeight(now int64) bool {
	w := s.runWeight.Load()
	if s.ramping(now) && w > 0 {
		// Linear from 1/16 of the weight, never below 1, up to all of it.
		frac := float64(now-s.upSince.Load()) / float64(s.SlowStart)
		w = max(1, int32(float64(w)*(1+15*frac)/16))
	}
	return s.eff.Swap(w) != w
}

// CountError counts a failed connection for statistics.
func (s *Server) CountError() { s.errors.Add(1) }

// CountBytes adds a finished connection's bytes for statistics.
func (s *Server) CountBytes(in, out int64) { s.Counts.Bytes(in, out) }

// Stats is a snapshot of a server's counters.
type Stats struct {
	Active, Total, Errors, BytesIn, BytesOut uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Active: uint64(max(s.active.Load(), 0)), Total: s.total.Load(), Errors: s.errors.Load(),
		BytesIn: s.Counts.BytesIn.Load(), BytesOut: s.Counts.BytesOut.Load(),
	}
}

// Active returns the number of connections the server holds now.
func (s *Server) Active() int64 { return s.active.Load() }

// Total returns the number of connections the server was ever given.
func (s *Server) Total() uint64 { return s.total.Load() }

// usable reports whether the server may be picked: it is up, ready, has
// weight and a free slot. It is advisory; acquire decides.
func (s *Server) usable() bool {
	return s.takesNew() && (s.MaxConn <= 0 || s.active.Load() < s.MaxConn)
}

// weight is the weight selectors balance by: the effective weight. Selectors
// that precompute from weights (roundrobin, random) are rebuilt by the
// Pool's Refresh when it changes.
func (s *Server) weight() int64 { return int64(s.eff.Load()) }

// acquire takes one connection slot, failing when the server is full.
func (s *Server) acquire() bool {
	if s.MaxConn <= 0 {
		s.noteActive(s.active.Add(1))
		s.total.Add(1)
		return true
	}
	for {
		n := s.active.Load()
		if n >= s.MaxConn {
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			s.noteActive(n + 1)
			s.total.Add(1)
			return true
		}
	}
}

// noteActive keeps the most connections held at once: a load and, only
// when a new maximum is reached, a compare-and-swap.
func (s *Server) noteActive(n int64) {
	for {
		m := s.maxActive.Load()
		if n <= m || s.maxActive.CompareAndSwap(m, n) {
			return
		}
	}
}

// MaxActive returns the most connections the server held at once.
func (s *Server) MaxActive() int64 { return s.maxActive.Load() }

// Release gives back the slot that a Pick took. When requests wait in the
// pool's queue, the slot goes to the first of them instead.
func (s *Server) Release() {
	p := s.pool
	if p != nil && p.release(s) {
		return
	}
	s.active.Add(-1)
	if p != nil {
		p.kick() // a waiter may have queued since release looked
	}
}

// takesNew reports whether the server may be given new requests, full or
// not: it is up, ready and has weight.
func (s *Server) takesNew() bool {
	return !s.down.Load() && s.admin.Load() == uint32(AdminReady) && s.weight() > 0
}

// ResetMax forgets the most connections held at once: clear counters.
func (s *Server) ResetMax() { s.maxActive.Store(s.active.Load()) }

// ResetCounters sets the server's counters to zero: clear counters all.
func (s *Server) ResetCounters() {
	s.total.Store(0)
	s.errors.Store(0)
	s.ResetMax()
	s.Counts.Reset()
}
