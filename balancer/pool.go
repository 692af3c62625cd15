package balancer

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
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
	case "source", "hash":
		// hash is source's rendezvous hashing over a key the HTTP proxy
		// takes from the request instead of the client address.
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

	prim, back []*Server
	byName     map[string]*Server
	tiers      atomic.Pointer[tiers]
	refresh    sync.Mutex
	queue      queue
}

// tiers are the selectors in force; Refresh replaces them as a whole.
type tiers struct {
	primary, backup Selector
}

// Hashes reports whether the pool's algorithm picks by Request.Hash
// ("source", "hash"): others need not have it computed.
func (p *Pool) Hashes() bool { return p.Algorithm == "source" || p.Algorithm == "hash" }

// NewPool builds a pool that balances servers with algorithm.
func NewPool(name, algorithm string, servers []*Server) (*Pool, error) {
	p := &Pool{Name: name, Algorithm: algorithm, Servers: slices.Clone(servers), byName: make(map[string]*Server, len(servers))}
	for _, s := range servers {
		p.byName[s.Name] = s
		s.pool = p
		if s.Backup {
			p.back = append(p.back, s)
		} else {
			p.prim = append(p.prim, s)
		}
	}
	if err := p.build(); err != nil {
		return nil, fmt.Errorf("backend %q: %w", name, err)
	}
	return p, nil
}

// build makes the selectors from the servers' effective weights.
func (p *Pool) build() error {
	prim, err := NewSelector(p.Algorithm, p.prim)
	if err != nil {
		return err
	}
	back, err := NewSelector(p.Algorithm, p.back)
	if err != nil {
		return err
	}
	p.tiers.Store(&tiers{primary: prim, backup: back})
	return nil
}

// Refresh brings the effective weights up to date (runtime weights set by
// an operator, slow start ramps) and rebuilds the selectors when one
// changed. Picks go on meanwhile with the selectors in force. It reports
// whether a server is still ramping up, so the caller knows to call it
// again soon.
func (p *Pool) Refresh() (ramping bool) {
	p.refresh.Lock()
	defer p.refresh.Unlock()
	now := time.Now().UnixNano()
	changed := false
	for _, s := range p.Servers {
		if s.refreshWeight(now) {
			changed = true
		}
		ramping = ramping || s.ramping(now)
	}
	if changed {
		_ = p.build() // the algorithm was valid when the pool was made
	}
	p.kick() // servers may have come up, been set ready or gained weight
	return ramping
}

// Pick chooses a server for a new connection and takes one of its slots;
// the caller must Release it. It prefers, in order: a primary not yet tried,
// a backup not yet tried, then any primary, then any backup (so a backend of
// one server retries that server). It returns nil when no server can take
// the connection. A server that fills up between its pick and its slot is
// added to r.Tried, except in the last two steps, which leave r.Tried as it
// was.
func (p *Pool) Pick(r *Request) *Server {
	t := p.tiers.Load()
	if s := pickAcquire(t.primary, r); s != nil {
		return s
	}
	if s := pickAcquire(t.backup, r); s != nil {
		return s
	}
	if len(r.Tried) == 0 {
		return nil
	}
	// Pick again as if nothing had been tried. The empty list shares the
	// spare capacity of r.Tried, so this does not allocate either.
	tried := r.Tried
	r.Tried = tried[len(tried):]
	s := pickAcquire(t.primary, r)
	if s == nil {
		s = pickAcquire(t.backup, r)
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

// Lookup returns the server of that name, or nil. It does not allocate when
// name is converted from a []byte in the call.
func (p *Pool) Lookup(name string) *Server { return p.byName[name] }

// AcquireSticky takes a slot on s for a client that is stuck to it (by a
// persistence cookie): s must be up and not in maintenance; a server being
// drained still takes its stuck clients, as in HAProxy. It reports whether
// the slot was taken; the caller must Release it then.
func (p *Pool) AcquireSticky(s *Server) bool {
	if s == nil || s.down.Load() || s.admin.Load() == uint32(AdminMaint) {
		return false
	}
	return s.acquire()
}

// Available reports whether some server could take a connection if it had
// a free slot: it is up, ready and has weight. Pick returning nil while
// Available is true means every such server is full, and a request may
// wait in a queue.
func (p *Pool) Available() bool {
	for _, s := range p.Servers {
		if s.takesNew() {
			return true
		}
	}
	return false
}
