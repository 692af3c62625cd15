package balancer

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
)

// clientKeys returns the hash keys of n client addresses.
func clientKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = HashAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	return keys
}

// assign maps every key to the name of its server.
func assign(sel Selector, keys []uint64) []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = nameOf(sel.Pick(&Request{Hash: k}))
	}
	return names
}

func TestSourceSpread(t *testing.T) {
	keys := clientKeys(10_000)
	tests := []struct {
		name    string
		weights []int
	}{
		{"equal 4", []int{1, 1, 1, 1}},
		{"equal 10", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"weighted", []int{1, 2, 3, 4}},
		{"heavy", []int{256, 64, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := newServers(tt.weights...)
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			got := make(map[string]int)
			for _, name := range assign(newSource(servers), keys) {
				got[name]++
			}
			for i, s := range servers {
				want := float64(tt.weights[i]) / float64(total)
				share := float64(got[s.Name]) / float64(len(keys))
				// The standard deviation of a share is at most 0.005.
				if math.Abs(share-want) > 0.02 {
					t.Errorf("server %s (weight %d): share %.4f, want %.4f", s.Name, tt.weights[i], share, want)
				}
			}
		})
	}
}

func TestSourceStable(t *testing.T) {
	keys := clientKeys(1000)
	servers := newServers(1, 2, 3, 4)
	want := assign(newSource(servers), keys)

	// The same key twice, the same server.
	if got := assign(newSource(servers), keys); !slices.Equal(got, want) {
		t.Error("a second pick of the same keys differs")
	}
	// A new generation: new Server values of the same names, in another
	// order, some of them full of connections from the old generation
	// that are gone by now.
	next := newServers(1, 2, 3, 4)
	slices.Reverse(next)
	if got := assign(newSource(next), keys); !slices.Equal(got, want) {
		t.Error("a new generation of the same servers maps keys elsewhere")
	}
	// Pinned values: the mapping must not change between versions of lb,
	// since a change would move every client on the upgrade.
	pinned := make([]string, 8)
	for i := range pinned {
		pinned[i] = nameOf(newSource(servers).Pick(&Request{Hash: uint64(i)}))
	}
	if got := fmt.Sprint(pinned); got != "[c c d c a d a d]" {
		t.Errorf("keys 0..7 map to %s, which changed", got)
	}
}

func TestSourceMoves(t *testing.T) {
	keys := clientKeys(10_000)
	four := newServers(1, 1, 1, 1)
	before := assign(newSource(four), keys)

	t.Run("add", func(t *testing.T) {
		five := append(slices.Clone(four), NewServer("e", "10.0.0.5:80", 1, 0, false))
		after := assign(newSource(five), keys)
		moved := 0
		for i := range keys {
			if after[i] != before[i] {
				moved++
				if after[i] != "e" {
					t.Fatalf("key %d moved from %s to %s, not to the new server", i, before[i], after[i])
				}
			}
		}
		if f := float64(moved) / float64(len(keys)); f < 0.10 || f > 0.30 {
			t.Errorf("adding a 5th server moved %.3f of the keys, want about 0.2", f)
		}
	})
	t.Run("remove", func(t *testing.T) {
		three := slices.Delete(slices.Clone(four), 1, 2) // without b
		after := assign(newSource(three), keys)
		moved := make(map[string]int)
		for i := range keys {
			if after[i] != before[i] {
				if before[i] != "b" {
					t.Fatalf("key %d moved from %s to %s, but only b was removed", i, before[i], after[i])
				}
				moved[after[i]]++
			}
			if before[i] == "b" && after[i] == "b" {
				t.Fatalf("key %d stays on the removed server", i)
			}
		}
		// b's keys spread over the others.
		for _, name := range []string{"a", "c", "d"} {
			if moved[name] < 600 {
				t.Errorf("only %d of b's keys went to %s", moved[name], name)
			}
		}
	})
	t.Run("skip", func(t *testing.T) {
		// A tried or full server is skipped as if it were removed.
		full := named(four, "c")
		full.MaxConn = 1
		full.active.Store(1)
		defer full.active.Store(0)
		sel := newSource(four)
		for i, k := range keys {
			tried := named(four, "a")
			got := nameOf(sel.Pick(&Request{Hash: k, Tried: []*Server{tried}}))
			if before[i] != "a" && before[i] != "c" && got != before[i] {
				t.Fatalf("key %d moved from %s to %s, but only a and c are skipped", i, before[i], got)
			}
			if got == "a" || got == "c" {
				t.Fatalf("key %d picked skipped server %s", i, got)
			}
		}
	})
}

func TestHashAddr(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"same v4", "192.0.2.1", "192.0.2.1", true},
		{"v4 and mapped v6", "192.0.2.1", "::ffff:192.0.2.1", true},
		{"zone ignored", "fe80::1%eth0", "fe80::1", true},
		{"v4 neighbours", "192.0.2.1", "192.0.2.2", false},
		{"v4 and v6", "192.0.2.1", "::192.0.2.1", false},
		{"v6 neighbours", "2001:db8::1", "2001:db8::2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := HashAddr(netip.MustParseAddr(tt.a)), HashAddr(netip.MustParseAddr(tt.b))
			if (a == b) != tt.same {
				t.Errorf("HashAddr(%s) = %#x, HashAddr(%s) = %#x, same = %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
			}
		})
	}
	// Fixed across processes and versions.
	if got := HashAddr(netip.MustParseAddr("192.0.2.1")); got != 0x395c5bc678c14723 {
		t.Errorf("HashAddr(192.0.2.1) = %#x, which changed", got)
	}
	if got := hashString("web1"); got != 0x289f74a544c58cff {
		t.Errorf("hashString(web1) = %#x, which changed", got)
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { _ = HashAddr(v6) }); n != 0 {
		t.Errorf("HashAddr allocates %v times", n)
	}
}

func BenchmarkSourcePick(b *testing.B) { benchmarkPick(b, "source") }

func BenchmarkHashAddr(b *testing.B) {
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		_ = HashAddr(a)
	}
}
