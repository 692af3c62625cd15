package balancer

import (
	"math"
	"testing"
)

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		cycle   string       // one cycle of the schedule
		runs    map[byte]int // longest run of each server, over cycles
	}{
		{"equal", []int{1, 1, 1}, "abc", map[byte]int{'a': 1, 'b': 1, 'c': 1}},
		{"3:1", []int{3, 1}, "aaba", map[byte]int{'a': 3, 'b': 1}},
		{"5:1:1", []int{5, 1, 1}, "aabacaa", map[byte]int{'a': 4, 'b': 1, 'c': 1}},
		{"3:2:1", []int{3, 2, 1}, "abacba", map[byte]int{'a': 2, 'b': 1, 'c': 1}},
		{"2:2 interleaves", []int{2, 2}, "ab", map[byte]int{'a': 1, 'b': 1}},
		{"reduced by gcd", []int{256, 128}, "aba", map[byte]int{'a': 2, 'b': 1}},
		{"weight 0 absent", []int{0, 1, 2}, "cbc", map[byte]int{'b': 1, 'c': 2}},
		{"single", []int{7}, "a", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			rr := newRoundRobin(servers)
			if got := sequence(rr, &Request{}, len(tt.cycle)); got != tt.cycle {
				t.Fatalf("first cycle %q, want %q", got, tt.cycle)
			}

			// Exact shares over many cycles.
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			picks := 1000 * total
			seq := sequence(rr, &Request{}, picks)
			for i, s := range servers {
				got := 0
				for j := range len(seq) {
					if seq[j] == s.Name[0] {
						got++
					}
				}
				if want := 1000 * tt.weights[i]; got != want {
					t.Errorf("server %s: %d picks of %d, want %d", s.Name, got, picks, want)
				}
			}

			// No bursts: the longest runs are those of one smooth cycle,
			// and no server runs longer than ceil(w/(W-w))+1.
			runs := maxRuns(seq)
			for c, want := range tt.runs {
				if runs[c] != want {
					t.Errorf("longest run of %c is %d, want %d", c, runs[c], want)
				}
			}
			for i, w := range tt.weights {
				if rest := total - w; rest > 0 && w > 0 {
					limit := int(math.Ceil(float64(w)/float64(rest))) + 1
					if got := runs[servers[i].Name[0]]; got > limit {
						t.Errorf("server %s (weight %d of %d) runs %d picks in a row, more than %d", servers[i].Name, w, total, got, limit)
					}
				}
			}
		})
	}
}

func TestRoundRobinSkip(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		skip    string // the server to skip: full
		picks   int
		want    map[string]int
	}{
		// a's slots are given up, and the rest of the schedule is served in
		// order: b and c alternate instead of b taking a's share.
		{"equal", []int{1, 1, 1}, "a", 3000, map[string]int{"b": 1500, "c": 1500}},
		{"weighted", []int{3, 1, 1}, "a", 3000, map[string]int{"b": 1500, "c": 1500}},
		{"others weighted", []int{1, 3, 1}, "a", 4000, map[string]int{"b": 3000, "c": 1000}},
		// a holds almost every slot: picks spill over b and c by weight.
		{"heavy", []int{256, 1, 1}, "a", 3000, map[string]int{"b": 1500, "c": 1500}},
		{"heavy weighted", []int{256, 3, 1}, "a", 4000, map[string]int{"b": 3000, "c": 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			full := named(servers, tt.skip)
			full.MaxConn = 1
			full.active.Store(1)
			got := counts(newRoundRobin(servers), &Request{}, tt.picks)
			for name, want := range tt.want {
				// Spilled picks and slot picks interleave, so allow 1%.
				if d := got[name] - want; d < -tt.picks/100 || d > tt.picks/100 {
					t.Errorf("server %s: %d picks of %d, want %d", name, got[name], tt.picks, want)
				}
			}
			if got[tt.skip] != 0 {
				t.Errorf("full server %s picked %d times", tt.skip, got[tt.skip])
			}
		})
	}
}

func BenchmarkRoundRobinPick(b *testing.B) { benchmarkPick(b, "roundrobin") }
