package balancer

import (
	"testing"
)

func TestNewSelector(t *testing.T) {
	for _, alg := range algorithms {
		if _, err := NewSelector(alg, nil); err != nil {
			t.Errorf("NewSelector(%q): %v", alg, err)
		}
	}
	if _, err := NewSelector("roundrobbin", nil); err == nil {
		t.Error("NewSelector accepts an unknown algorithm")
	}
}

// TestSkip checks, for every algorithm, that tried and full servers are
// never picked and that a pick with nothing left is nil.
func TestSkip(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		tried   string // servers in r.Tried
		full    string // servers at their maxconn
		want    string // the servers that may be picked; "-" for nil
	}{
		{"none skipped", []int{1, 1, 1}, "", "", "abc"},
		{"tried", []int{1, 1, 1}, "ab", "", "c"},
		{"full", []int{1, 1, 1}, "", "bc", "a"},
		{"tried and full", []int{1, 2, 3}, "c", "a", "b"},
		{"weight 0", []int{0, 1, 0}, "", "", "b"},
		{"all tried", []int{1, 1}, "ab", "", "-"},
		{"all full", []int{1, 1}, "", "ab", "-"},
		{"all skipped", []int{1, 1, 0}, "a", "b", "-"},
		{"all weight 0", []int{0, 0}, "", "", "-"},
		{"empty", nil, "", "", "-"},
	}
	for _, alg := range algorithms {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				servers := newServers(tt.weights...)
				r := &Request{}
				for _, c := range tt.tried {
					r.Tried = append(r.Tried, named(servers, string(c)))
				}
				for _, c := range tt.full {
					s := named(servers, string(c))
					s.MaxConn = 3
					s.active.Store(3)
				}
				sel := mustSelector(t, alg, servers)
				for i := range 200 {
					r.Hash = uint64(i)
					got := nameOf(sel.Pick(r))
					if len(got) != 1 || !containsByte(tt.want, got[0]) {
						t.Fatalf("pick %d: %s, want one of %q", i, got, tt.want)
					}
				}
			})
		}
	}
}

func containsByte(s string, c byte) bool {
	for i := range len(s) {
		if s[i] == c {
			return true
		}
	}
	return false
}

// TestPickAllocs checks that no algorithm allocates, with or without
// servers to skip.
func TestPickAllocs(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			servers := newServers(1, 2, 3, 4, 0)
			servers[2].MaxConn = 1
			servers[2].active.Store(1)
			sel := mustSelector(t, alg, servers)
			r := &Request{Tried: make([]*Server, 0, 4)}
			r.Tried = append(r.Tried, servers[3])
			n := testing.AllocsPerRun(1000, func() {
				r.Hash++
				if sel.Pick(r) == nil {
					panic("no server")
				}
			})
			if n != 0 {
				t.Errorf("Pick allocates %v times", n)
			}
		})
	}
}

// benchmarkPick measures Pick of an algorithm over 8 servers, from one
// goroutine and from GOMAXPROCS goroutines.
func benchmarkPick(b *testing.B, algorithm string) {
	sel := mustSelector(b, algorithm, newServers(1, 2, 3, 4, 1, 2, 3, 4))
	b.Run("serial", func(b *testing.B) {
		r := &Request{Tried: make([]*Server, 0, 4)}
		b.ReportAllocs()
		for b.Loop() {
			r.Hash++
			if sel.Pick(r) == nil {
				b.Fatal("no server")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := &Request{Tried: make([]*Server, 0, 4)}
			for pb.Next() {
				r.Hash++
				if sel.Pick(r) == nil {
					panic("no server")
				}
			}
		})
	})
}
