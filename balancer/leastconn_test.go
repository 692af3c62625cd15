package balancer

import "testing"

func TestLeastConn(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64
		want    string // successive picks, with the counts left as they are
	}{
		{"fewest active", []int{1, 1, 1}, []int64{3, 1, 2}, "bbb"},
		{"relative to weight", []int{3, 1}, []int64{2, 1}, "aaa"},             // 2/3 < 1/1
		{"weight outweighs", []int{1, 4}, []int64{1, 3}, "bbb"},               // 3/4 < 1/1
		{"ties rotate", []int{1, 1, 1}, []int64{0, 0, 0}, "abcabc"},           // all idle
		{"weighted tie", []int{2, 1}, []int64{4, 2}, "abab"},                  // 4/2 == 2/1
		{"ties apart rotate", []int{1, 1, 1, 1}, []int64{0, 5, 0, 5}, "acac"}, // not a c c c
		{"weight 0 never", []int{0, 1}, []int64{0, 9}, "bb"},
		{"empty", nil, nil, "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			for i, a := range tt.active {
				servers[i].active.Store(a)
			}
			if got := sequence(newLeastConn(servers), &Request{}, len(tt.want)); got != tt.want {
				t.Errorf("picks %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLeastConnBalances takes every pick's slot and checks that the
// connections end up spread by weight.
func TestLeastConnBalances(t *testing.T) {
	servers := newServers(1, 2, 3)
	lc := newLeastConn(servers)
	for range 600 {
		if s := lc.Pick(&Request{}); s == nil || !s.acquire() {
			t.Fatal("no server")
		}
	}
	for i, want := range []int64{100, 200, 300} {
		if got := servers[i].Active(); got != want {
			t.Errorf("server %s holds %d connections, want %d", servers[i].Name, got, want)
		}
	}
}

func BenchmarkLeastConnPick(b *testing.B) { benchmarkPick(b, "leastconn") }
