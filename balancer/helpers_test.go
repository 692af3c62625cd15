package balancer

import (
	"fmt"
	"strings"
	"testing"
)

// algorithms lists every balancing algorithm NewSelector knows.
var algorithms = []string{"roundrobin", "leastconn", "random", "source", "first"}

// newServers returns primary servers named a, b, c... with the given weights
// and no connection limit.
func newServers(weights ...int) []*Server {
	servers := make([]*Server, len(weights))
	for i, w := range weights {
		name := string(rune('a' + i))
		servers[i] = NewServer(name, fmt.Sprintf("10.0.0.%d:80", i+1), w, 0, false)
	}
	return servers
}

// named returns the server called name.
func named(servers []*Server, name string) *Server {
	for _, s := range servers {
		if s.Name == name {
			return s
		}
	}
	panic("no server " + name)
}

func mustSelector(t testing.TB, algorithm string, servers []*Server) Selector {
	t.Helper()
	sel, err := NewSelector(algorithm, servers)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// nameOf returns the name of s, "-" for nil.
func nameOf(s *Server) string {
	if s == nil {
		return "-"
	}
	return s.Name
}

// sequence returns the names of n successive picks, "-" for nil.
func sequence(sel Selector, r *Request, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(nameOf(sel.Pick(r)))
	}
	return b.String()
}

// counts returns how many of n picks went to each server, "-" for nil.
func counts(sel Selector, r *Request, n int) map[string]int {
	c := make(map[string]int)
	for range n {
		c[nameOf(sel.Pick(r))]++
	}
	return c
}

// maxRuns returns, for each letter of seq, the longest run of it, counting
// runs that wrap around from the end to the start (seq is one cycle of a
// periodic sequence).
func maxRuns(seq string) map[byte]int {
	runs := make(map[byte]int)
	double := seq + seq
	for i := 0; i < len(double); {
		j := i
		for j < len(double) && double[j] == double[i] && j-i < len(seq) {
			j++
		}
		runs[double[i]] = max(runs[double[i]], j-i)
		i = j
	}
	return runs
}
