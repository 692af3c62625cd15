package balancer

import "sync/atomic"

// leastConn picks the server with the fewest active connections relative to
// its weight: a server of weight 2 holding 4 connections is as loaded as one
// of weight 1 holding 2. Servers equally loaded take turns.
type leastConn struct {
	servers []*Server
	// ties counts the picks that had to break a tie.
	ties atomic.Uint64
}

func newLeastConn(servers []*Server) *leastConn { return &leastConn{servers: servers} }

// Pick returns the least loaded server that r need not skip. Loads compare
// as active_a*weight_b against active_b*weight_a, exact in integers. When
// several servers share the least load, the pick is the next of them in
// round robin.
func (lc *leastConn) Pick(r *Request) *Server {
	var best *Server
	var bestActive, bestWeight int64
	ties := uint64(0)
	for _, s := range lc.servers {
		if r.skip(s) {
			continue
		}
		a, w := s.Active(), s.weight()
		switch {
		case best == nil || a*bestWeight < bestActive*w:
			best, bestActive, bestWeight, ties = s, a, w, 1
		case a*bestWeight == bestActive*w:
			ties++
		}
	}
	if ties < 2 {
		return best
	}
	// Take the k-th of the tied servers. Counts may have moved since the
	// first pass; if the k-th tied server is gone, keep the first one.
	k := (lc.ties.Add(1) - 1) % ties
	for _, s := range lc.servers {
		if r.skip(s) || s.Active()*bestWeight != bestActive*s.weight() {
			continue
		}
		if k == 0 {
			return s
		}
		k--
	}
	return best
}
