package balancer

// Last resorts shared by selectors, for when their own way of picking finds
// only servers to skip.

// scan returns the first server r need not skip, looking at each server once
// from index start on and wrapping around; nil if there is none.
func scan(servers []*Server, start int, r *Request) *Server {
	n := len(servers)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if s := servers[i]; !r.skip(s) {
			return s
		}
	}
	return nil
}

// spill picks among the servers r need not skip in proportion to their
// weights: of their total weight W, k mod W falls in the share of the server
// returned. Successive values of k give each server its weight's share
// exactly; random values of k give it on average. It returns nil if every
// server is to be skipped.
func spill(servers []*Server, r *Request, k uint64) *Server {
	total := uint64(0)
	for _, s := range servers {
		if !r.skip(s) {
			total += uint64(s.weight())
		}
	}
	if total == 0 {
		return nil
	}
	k %= total
	for _, s := range servers {
		if r.skip(s) {
			continue
		}
		w := uint64(s.weight())
		if k < w {
			return s
		}
		k -= w
	}
	// A server filled up since the first pass.
	return scan(servers, 0, r)
}
