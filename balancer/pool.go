package balancer

import (
	"fmt"
	"slices"
)

// Request is what one pick may depend on. Its zero value is a valid request.
type Request struct {
	// Hash is the client's key for hashing algorithms (see HashAddr).
	Hash uint64
	// Tried lists servers this connection already tried; selectors skip
	// them. Give it a capacity of retries+1 so that Pick never allocates.
	Tried []*Server
}

// tried reports whether s is in r.Tried.
func (r *Request) tried(s *Server) bool {
	for _, t := range r.Tried {
		if t == s {
			return true
		}
	}
	return false
}

// skip reports whether a selector must pass s over for this request.
func (r *Request) skip(s *Server) bool { return !s.usable() || r.tried(s) }

// Selector picks one server of a fixed set. It returns nil when every server
// is unusable or already tried. Implementations are safe for concurrent use
// and do not allocate.
type Selector interface {
	Pick(r *Request) *Server
}

// NewSelector returns the selector of a balancing algorithm over servers.
func NewSelector(algorithm string, servers []*Server) (Selector, error) {
	switch algorithm {
	case "roundrobin":
		return newRoundRobin(servers), nil
	case "leastconn":
		return newLeastConn(servers), nil
	case "random":
		return newRandom(servers), nil
	case "source":
		return newSource(servers), nil
	case "first":
		return newFirst(servers), nil
	}
	return nil, fmt.Errorf("unknown balancing algorithm %q", algorithm)
}

// Pool is a backend's servers: primaries, and backups that serve only when no
// primary can.
type Pool struct {
	Name      string
	Algorithm string
	Servers   []*Server

	primary Selector
	backup  Selector
}

// NewPool builds a pool that balances servers with algorithm.
func NewPool(name, algorithm string, servers []*Server) (*Pool, error) {
	var prim, back []*Server
	for _, s := range servers {
		if s.Backup {
			back = append(back, s)
		} else {
			prim = append(prim, s)
		}
	}
	p := &Pool{Name: name, Algorithm: algorithm, Servers: slices.Clone(servers)}
	var err error
	if p.primary, err = NewSelector(algorithm, prim); err != nil {
		return nil, fmt.Errorf("backend %q: %w", name, err)
	}
	if p.backup, err = NewSelector(algorithm, back); err != nil {
		return nil, fmt.Errorf("backend %q: %w", name, err)
	}
	return p, nil
}

// Pick chooses a server for a new connection and takes one of its slots;
// the caller must Release it. It prefers, in order: a primary not yet tried,
// a backup not yet tried, then any primary, then any backup (so a backend of
// one server retries that server). It returns nil when no server can take
// the connection. A server that fills up between its pick and its slot is
// added to r.Tried, except in the last two steps, which leave r.Tried as it
// was.
func (p *Pool) Pick(r *Request) *Server {
	if s := pickAcquire(p.primary, r); s != nil {
		return s
	}
	if s := pickAcquire(p.backup, r); s != nil {
		return s
	}
	if len(r.Tried) == 0 {
		return nil
	}
	// Pick again as if nothing had been tried. The empty list shares the
	// spare capacity of r.Tried, so this does not allocate either.
	tried := r.Tried
	r.Tried = tried[len(tried):]
	s := pickAcquire(p.primary, r)
	if s == nil {
		s = pickAcquire(p.backup, r)
	}
	r.Tried = tried
	return s
}

// pickAcquire picks with sel until a picked server grants a slot. A server
// that filled up between the pick and the acquire is marked tried, so the
// loop ends after at most one round over the servers.
func pickAcquire(sel Selector, r *Request) *Server {
	for {
		s := sel.Pick(r)
		if s == nil {
			return nil
		}
		if s.acquire() {
			return s
		}
		r.Tried = append(r.Tried, s)
	}
}
