package balancer

import "sync/atomic"

// roundRobin is smooth weighted round robin, as in nginx: over every cycle of
// the schedule each server gets its weight's share of picks, spread out
// rather than in bursts (weights 5, 1, 1 give a a b a c a a, not
// a a a a a b c).
//
// The schedule is computed once, so a pick is one atomic increment. It sits
// behind an atomic pointer so that a change of weights can build a new one
// and swap it in while picks go on.
type roundRobin struct {
	next  atomic.Uint64
	sched atomic.Pointer[schedule]
	// spilled counts the picks that found no usable server in the slots
	// they took (see spill).
	spilled atomic.Uint64
}

// schedule is one cycle of smooth weighted round robin over servers.
type schedule struct {
	servers []*Server
	// order lists indices into servers, each as many times as its weight
	// (after dividing all weights by their greatest common divisor, which
	// repeats the same sequence fewer times). Servers of weight 0 are absent.
	order []int32
}

func newRoundRobin(servers []*Server) *roundRobin {
	rr := &roundRobin{}
	rr.sched.Store(newSchedule(servers))
	return rr
}

// newSchedule runs smooth weighted round robin for one cycle: each step, every
// server's current weight grows by its weight, the server with the greatest
// current weight (the first one on a tie) is picked, and its current weight
// drops by the total weight.
func newSchedule(servers []*Server) *schedule {
	sc := &schedule{servers: servers}
	g := int64(0)
	for _, s := range servers {
		if w := s.weight(); w > 0 {
			g = gcd(g, w)
		}
	}
	if g == 0 {
		return sc
	}
	weights := make([]int64, len(servers))
	current := make([]int64, len(servers))
	total := int64(0)
	for i, s := range servers {
		weights[i] = max(s.weight(), 0) / g
		total += weights[i]
	}
	sc.order = make([]int32, total)
	for k := range sc.order {
		best := -1
		for i, w := range weights {
			if w == 0 {
				continue
			}
			current[i] += w
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		sc.order[k] = int32(best)
	}
	return sc
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick returns the server at the next slot of the schedule. A server that r
// must skip gives up its slot and the pick takes the next free one: the
// schedule, minus the slots of unusable servers, is still served in order,
// so their share goes to the others in proportion to their weights (not all
// to the server that follows them). A pick takes at most as many slots as
// there are servers; if none was usable (a heavy server is down, say), it
// spills over the usable servers by weight.
func (rr *roundRobin) Pick(r *Request) *Server {
	sc := rr.sched.Load()
	n := uint64(len(sc.order))
	if n == 0 {
		return nil
	}
	for range len(sc.servers) {
		i := rr.next.Add(1) - 1
		if s := sc.servers[sc.order[i%n]]; !r.skip(s) {
			return s
		}
	}
	return spill(sc.servers, r, rr.spilled.Add(1)-1)
}
