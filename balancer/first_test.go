package balancer

import "testing"

func TestFirst(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64 // with maxconn 2 on every server
		want    string
	}{
		{"first", []int{1, 5, 1}, []int64{0, 0, 0}, "aaa"},
		{"first not full", []int{1, 5, 1}, []int64{2, 1, 0}, "bbb"},
		{"weight 0 passed over", []int{0, 1, 1}, []int64{0, 0, 0}, "bbb"},
		{"all full", []int{1, 1}, []int64{2, 2}, "-"},
		{"empty", nil, nil, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			for i, a := range tt.active {
				servers[i].MaxConn = 2
				servers[i].active.Store(a)
			}
			if got := sequence(newFirst(servers), &Request{}, len(tt.want)); got != tt.want {
				t.Errorf("picks %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFirstFillsInOrder takes connections through a pool: each server fills
// up to its maxconn before the next one gets any.
func TestFirstFillsInOrder(t *testing.T) {
	servers := newServers(1, 1, 1)
	for _, s := range servers {
		s.MaxConn = 2
	}
	p, err := NewPool("fill", "first", servers)
	if err != nil {
		t.Fatal(err)
	}
	var got []*Server
	seq := ""
	for range 7 {
		s := p.Pick(&Request{})
		if s == nil {
			seq += "-"
			continue
		}
		got = append(got, s)
		seq += s.Name
	}
	if want := "aabbcc-"; seq != want {
		t.Fatalf("picks %q, want %q", seq, want)
	}
	got[3].Release() // one of b's
	if s := p.Pick(&Request{}); s != servers[1] {
		t.Errorf("after a release on b, picked %s, want b", nameOf(s))
	}
	got[0].Release() // one of a's
	if s := p.Pick(&Request{}); s != servers[0] {
		t.Errorf("after a release on a, picked %s, want a", nameOf(s))
	}
}

func BenchmarkFirstPick(b *testing.B) { benchmarkPick(b, "first") }
