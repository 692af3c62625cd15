package balancer

import (
	"math"
	"testing"
)

func TestRandom(t *testing.T) {
	const picks = 100_000
	tests := []struct {
		name    string
		weights []int
		active  []int64
		full    string             // a server at its maxconn, if any
		want    map[string]float64 // share of picks
	}{
		// With equal loads two choices pick the first drawn: the shares
		// are the weights'.
		{"equal", []int{1, 1, 1, 1}, nil, "", map[string]float64{"a": .25, "b": .25, "c": .25, "d": .25}},
		{"weighted", []int{1, 2, 3, 4}, nil, "", map[string]float64{"a": .1, "b": .2, "c": .3, "d": .4}},
		{"weight 0 never", []int{0, 1, 3}, nil, "", map[string]float64{"a": 0, "b": .25, "c": .75}},
		// A loaded server wins only when drawn twice: (1/4)².
		{"loaded avoided", []int{1, 1, 1, 1}, []int64{10, 0, 0, 0}, "", map[string]float64{"a": 1. / 16, "b": 5. / 16, "c": 5. / 16, "d": 5. / 16}},
		{"full skipped", []int{1, 1, 2}, nil, "c", map[string]float64{"a": .5, "b": .5, "c": 0}},
		// Draws keep hitting a: the pick spills over b and c by weight.
		{"heavy full", []int{256, 1, 3}, nil, "a", map[string]float64{"a": 0, "b": .25, "c": .75}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			for i, a := range tt.active {
				servers[i].active.Store(a)
			}
			if tt.full != "" {
				s := named(servers, tt.full)
				s.MaxConn = 1
				s.active.Store(1)
			}
			got := counts(newRandom(servers), &Request{}, picks)
			for name, want := range tt.want {
				share := float64(got[name]) / picks
				// The standard deviation of a share is at most 0.0016.
				if math.Abs(share-want) > 0.01 {
					t.Errorf("server %s: share %.4f, want %.4f", name, share, want)
				}
			}
		})
	}
}

func BenchmarkRandomPick(b *testing.B) { benchmarkPick(b, "random") }
