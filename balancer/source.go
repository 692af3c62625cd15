package balancer

import "math"

// source maps each client key to a server by weighted rendezvous hashing
// (highest random weight): every server scores the key and the highest score
// wins. Scores depend only on the key and the server's name and weight, not
// on the other servers, the order of servers or the process, so:
//   - a client keeps its server across reloads and restarts;
//   - removing (or skipping) a server moves only the keys that were on it,
//     each to its second choice;
//   - adding one of N servers moves about 1/N of the keys, all to it.
type source struct {
	servers []*Server
}

func newSource(servers []*Server) *source { return &source{servers: servers} }

// Pick returns the server of highest score for r.Hash among those r need not
// skip. The score is weight / -ln(u), where u in (0, 1) is a hash of the key
// and the server: the highest of such scores falls on each server with a
// probability proportional to its weight.
func (sh *source) Pick(r *Request) *Server {
	key := mix64(r.Hash)
	var best *Server
	bestScore := 0.0
	for _, s := range sh.servers {
		if r.skip(s) {
			continue
		}
		score := float64(s.weight()) / -math.Log(unit(mix64(key^s.hash)))
		if best == nil || score > bestScore {
			best, bestScore = s, score
		}
	}
	return best
}

// unit maps a hash onto (0, 1), both ends excluded. 52 bits plus one half
// are exact in a float64.
func unit(h uint64) float64 {
	return (float64(h>>12) + 0.5) / (1 << 52)
}
