//go:build !race

package proxyproto

import "testing"

// TestZeroAllocs guards the allocation-free paths that the benchmarks
// measure.
func TestZeroAllocs(t *testing.T) {
	v2wire := AppendV2(nil, benchHeader)
	v1wire := AppendV1(nil, benchHeader)
	buf := make([]byte, 0, 256)
	for name, f := range map[string]func(){
		"Parse v2":  func() { _, _, _ = Parse(v2wire) },
		"Parse v1":  func() { _, _, _ = Parse(v1wire) },
		"AppendV2":  func() { buf = AppendV2(buf[:0], benchHeader) },
		"AppendV1":  func() { buf = AppendV1(buf[:0], benchHeader) },
		"ErrIncomp": func() { _, _, _ = Parse(v2wire[:20]) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}
