package balancer

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// newPool returns a pool of primaries p1, p2 and backups b1, b2, all of
// weight 1 and maxconn 1.
func newPool(t testing.TB, algorithm string) *Pool {
	t.Helper()
	var servers []*Server
	for _, name := range []string{"p1", "p2", "b1", "b2"} {
		servers = append(servers, NewServer(name, "10.0.0.1:80", 1, 1, name[0] == 'b'))
	}
	p, err := NewPool("web", algorithm, servers)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolFallback(t *testing.T) {
	tests := []struct {
		name  string
		tried []string
		full  []string
		want  string // the servers that may be picked; "-" for nil
	}{
		{"primary first", nil, nil, "p1 p2"},
		{"untried primary", []string{"p1"}, nil, "p2"},
		{"free primary", nil, []string{"p1"}, "p2"},
		{"backup when primaries tried", []string{"p1", "p2"}, nil, "b1 b2"},
		{"backup when primaries full", nil, []string{"p1", "p2"}, "b1 b2"},
		{"backup when primaries tried or full", []string{"p2"}, []string{"p1"}, "b1 b2"},
		{"untried backup", []string{"p1", "p2", "b1"}, nil, "b2"},
		{"any primary when all tried", []string{"p1", "p2", "b1", "b2"}, nil, "p1 p2"},
		{"any free primary when all tried", []string{"p1", "p2", "b1", "b2"}, []string{"p2"}, "p1"},
		{"any backup when all tried and primaries full", []string{"b1", "b2"}, []string{"p1", "p2"}, "b1 b2"},
		{"tried primary before full backup", []string{"p1", "p2"}, []string{"b1", "b2"}, "p1 p2"},
		{"none when all full", nil, []string{"p1", "p2", "b1", "b2"}, "-"},
		{"none when all tried and full", []string{"p1", "b1"}, []string{"p1", "p2", "b1", "b2"}, "-"},
	}
	for _, alg := range algorithms {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				p := newPool(t, alg)
				byName := make(map[string]*Server)
				for _, s := range p.Servers {
					byName[s.Name] = s
				}
				for _, name := range tt.full {
					byName[name].active.Store(1)
				}
				for range 20 {
					r := &Request{Tried: make([]*Server, 0, 8)}
					for _, name := range tt.tried {
						r.Tried = append(r.Tried, byName[name])
					}
					s := p.Pick(r)
					got := nameOf(s)
					if !containsWord(tt.want, got) {
						t.Fatalf("picked %s, want one of %q", got, tt.want)
					}
					if len(r.Tried) != len(tt.tried) {
						t.Errorf("r.Tried has %d servers after the pick, want %d", len(r.Tried), len(tt.tried))
					}
					if s != nil {
						if s.Active() != 1 {
							t.Fatalf("%s holds %d connections after the pick, want 1", s.Name, s.Active())
						}
						s.Release()
					}
				}
			})
		}
	}
}

func containsWord(list, w string) bool {
	for i := 0; i+len(w) <= len(list); i++ {
		if list[i:i+len(w)] == w && (i+len(w) == len(list) || list[i+len(w)] == ' ') && (i == 0 || list[i-1] == ' ') {
			return true
		}
	}
	return false
}

// TestPoolRelease checks that a full server takes connections again once
// one is released, and that a server filled between pick and acquire is
// passed over.
func TestPoolRelease(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			p := newPool(t, alg)
			var held []*Server
			for range 4 {
				s := p.Pick(&Request{})
				if s == nil {
					t.Fatal("pool of 4 free servers refused a connection")
				}
				held = append(held, s)
			}
			if s := p.Pick(&Request{}); s != nil {
				t.Fatalf("full pool gave %s", s.Name)
			}
			for _, s := range held {
				s.Release()
				if got := p.Pick(&Request{}); got != s {
					t.Fatalf("after a release on %s, picked %s", s.Name, nameOf(got))
				}
			}
			for _, s := range held {
				s.Release()
				if s.Active() != 0 || s.Total() != 2 {
					t.Errorf("%s: %d active, %d total, want 0 and 2", s.Name, s.Active(), s.Total())
				}
			}
		})
	}
}

func TestPoolPickAllocs(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			p := newPool(t, alg)
			r := &Request{Tried: make([]*Server, 0, 8)}
			for _, tried := range [][]*Server{nil, p.Servers[:2], p.Servers} {
				n := testing.AllocsPerRun(100, func() {
					r.Hash++
					r.Tried = append(r.Tried[:0], tried...)
					s := p.Pick(r)
					if s == nil {
						panic("no server")
					}
					s.Release()
				})
				if n != 0 {
					t.Errorf("with %d tried, Pick allocates %v times", len(tried), n)
				}
			}
		})
	}
}

// TestPoolConcurrent picks and releases from many goroutines at once (run
// it with -race): no server ever holds more than its maxconn, and every
// count returns to 0.
func TestPoolConcurrent(t *testing.T) {
	const (
		goroutines = 32
		picks      = 2000
		maxConn    = 3
	)
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			servers := newServers(1, 2, 3, 1)
			servers = append(servers, NewServer("backup", "10.0.0.9:80", 1, maxConn, true))
			for _, s := range servers {
				s.MaxConn = maxConn
			}
			p, err := NewPool("web", alg, servers)
			if err != nil {
				t.Fatal(err)
			}
			var peak atomic.Int64
			var granted, refused atomic.Uint64
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					r := &Request{Tried: make([]*Server, 0, 8)}
					for i := range picks {
						r.Hash = uint64(g*picks + i)
						r.Tried = r.Tried[:0]
						s := p.Pick(r)
						if s == nil {
							refused.Add(1)
							continue
						}
						granted.Add(1)
						n := s.Active()
						for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
						}
						runtime.Gosched()
						s.Release()
					}
				})
			}
			wg.Wait()
			if m := peak.Load(); m > maxConn {
				t.Errorf("a server held %d connections, over its maxconn %d", m, maxConn)
			}
			total := uint64(0)
			for _, s := range servers {
				if s.Active() != 0 {
					t.Errorf("%s holds %d connections after all were released", s.Name, s.Active())
				}
				total += s.Total()
			}
			if total != granted.Load() {
				t.Errorf("servers counted %d connections, picks granted %d", total, granted.Load())
			}
			if granted.Load()+refused.Load() != goroutines*picks {
				t.Errorf("%d granted + %d refused != %d picks", granted.Load(), refused.Load(), goroutines*picks)
			}
			t.Logf("%d granted, %d refused, peak %d", granted.Load(), refused.Load(), peak.Load())
		})
	}
}

func BenchmarkPoolPick(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(alg, func(b *testing.B) {
			servers := newServers(1, 2, 3, 4, 1, 2, 3, 4)
			p, err := NewPool("web", alg, servers)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := &Request{Tried: make([]*Server, 0, 4)}
				for pb.Next() {
					r.Hash++
					s := p.Pick(r)
					if s == nil {
						panic("no server")
					}
					s.Release()
				}
			})
		})
	}
}

func TestPoolHashes(t *testing.T) {
	for alg, want := range map[string]bool{"roundrobin": false, "leastconn": false, "random": false, "first": false, "source": true, "hash": true} {
		p, err := NewPool("app", alg, []*Server{NewServer("s1", "127.0.0.1:1", 1, 0, false)})
		if err != nil {
			t.Fatal(err)
		}
		if p.Hashes() != want {
			t.Errorf("%s: Hashes() = %v, want %v", alg, !want, want)
		}
	}
}
