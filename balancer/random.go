package balancer

import "math/rand/v2"

// draws bounds how many times random draws again after drawing a server it
// must skip, before it weighs the usable servers one by one (see spill).
const draws = 4

// random is the power of two random choices: it draws two servers, each with
// a probability proportional to its weight, and picks the less loaded one.
// With equal loads the pick follows the weights; a loaded server is picked
// less, without the herding of leastconn when many balancers share servers.
type random struct {
	servers []*Server
	// cumulative[i] is the sum of the weights of servers[0..i].
	cumulative []uint64
}

func newRandom(servers []*Server) *random {
	rd := &random{servers: servers, cumulative: make([]uint64, len(servers))}
	sum := uint64(0)
	for i, s := range servers {
		sum += uint64(max(s.weight(), 0))
		rd.cumulative[i] = sum
	}
	return rd
}

// Pick draws two servers that r need not skip and returns the one with fewer
// active connections relative to its weight, the first one drawn on a tie.
func (rd *random) Pick(r *Request) *Server {
	if len(rd.cumulative) == 0 || rd.cumulative[len(rd.cumulative)-1] == 0 {
		return nil
	}
	a := rd.candidate(r)
	if a == nil {
		return spill(rd.servers, r, rand.Uint64())
	}
	b := rd.candidate(r)
	if b == nil || b == a {
		return a
	}
	if b.Active()*a.weight() < a.Active()*b.weight() {
		return b
	}
	return a
}

// candidate draws servers by weight until one need not be skipped, giving up
// after a few draws.
func (rd *random) candidate(r *Request) *Server {
	total := rd.cumulative[len(rd.cumulative)-1]
	for range draws {
		x := rand.Uint64N(total)
		// The first i with cumulative[i] > x; servers of weight 0 add
		// nothing to the sum, so they are never found.
		lo, hi := 0, len(rd.cumulative)-1
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if rd.cumulative[mid] > x {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		if s := rd.servers[lo]; !r.skip(s) {
			return s
		}
	}
	return nil
}
