// Package balancer picks the server that takes each new connection.
//
// A Pool holds a backend's servers and one Selector per tier (primary and
// backup servers). Selectors are pure functions of the servers' state: they
// read atomics, keep at most a few atomics of their own, never lock and
// never allocate, so a pick is safe on the hot path under any concurrency.
package balancer

import (
	"sync/atomic"
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

	// hash identifies the server for consistent hashing; derived from Name
	// so that every generation maps clients the same way.
	hash uint64

	active atomic.Int64
	total  atomic.Uint64
}

// NewServer returns a server ready to join a Pool.
func NewServer(name, addr string, weight int, maxConn int64, backup bool) *Server {
	return &Server{Name: name, Addr: addr, Weight: weight, MaxConn: maxConn, Backup: backup, hash: hashString(name)}
}

// Active returns the number of connections the server holds now.
func (s *Server) Active() int64 { return s.active.Load() }

// Total returns the number of connections the server was ever given.
func (s *Server) Total() uint64 { return s.total.Load() }

// usable reports whether the server may be picked: it has weight and a free
// slot. It is advisory; acquire decides.
func (s *Server) usable() bool {
	return s.weight() > 0 && (s.MaxConn <= 0 || s.active.Load() < s.MaxConn)
}

// weight is the weight selectors balance by. They read it through this
// method only, so that a weight that changes at run time (set by an
// operator, or ramping up after a server comes back) can be stored
// differently; selectors that precompute from weights (roundrobin, random)
// are then rebuilt.
func (s *Server) weight() int64 { return int64(s.Weight) }

// acquire takes one connection slot, failing when the server is full.
func (s *Server) acquire() bool {
	if s.MaxConn <= 0 {
		s.active.Add(1)
		s.total.Add(1)
		return true
	}
	for {
		n := s.active.Load()
		if n >= s.MaxConn {
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			s.total.Add(1)
			return true
		}
	}
}

// Release gives back the slot that a Pick took.
func (s *Server) Release() { s.active.Add(-1) }
