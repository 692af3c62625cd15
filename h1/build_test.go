package h1

import (
	"strings"
	"testing"
)

// TestBuildRequest builds a head from strings across several chunks of
// the arena and checks every slice stays intact.
func TestBuildRequest(t *testing.T) {
	var r Request
	for round := range 3 {
		r.Reset()
		r.SetRequestLine("POST", "/up?x=1", 1)
		r.AddString("Host", "a.example")
		long := strings.Repeat("v", 5000)
		r.AddString("Cookie", "a=1")
		for i := range 5 {
			r.AppendToLast("; ", long[:1000*i+1])
		}
		r.AddString("X-Long", long)
		if string(r.Method) != "POST" || string(r.Target) != "/up?x=1" || r.Minor != 1 {
			t.Fatalf("round %d: request line %q %q 1.%d", round, r.Method, r.Target, r.Minor)
		}
		want := "a=1"
		for i := range 5 {
			want += "; " + long[:1000*i+1]
		}
		if v, _ := r.Get("Cookie"); string(v) != want {
			t.Errorf("round %d: Cookie %d bytes, want %d", round, len(v), len(want))
		}
		if v, _ := r.Get("Host"); string(v) != "a.example" {
			t.Errorf("round %d: Host %q", round, v)
		}
		if v, _ := r.Get("X-Long"); string(v) != long {
			t.Errorf("round %d: X-Long %d bytes", round, len(v))
		}
	}
}

func TestValidators(t *testing.T) {
	for _, tc := range []struct {
		s                         string
		token, target, host, valu bool
	}{
		{"abc", true, true, true, true},
		{"/a?b=c&d", false, true, false, true},
		{"/a b", false, false, false, true},
		{"/a#b", false, false, false, true},
		{"caf\xc3\xa9", false, false, false, true},
		{"[::1]:80", false, true, true, true},
		{"u@h", false, true, false, true},
		{"a\tb", false, false, false, true},
		{"a\r\nb", false, false, false, false},
		{"", false, true, true, true},
	} {
		if ValidToken(tc.s) != tc.token || ValidTarget(tc.s) != tc.target || ValidHost(tc.s) != tc.host || ValidValue(tc.s) != tc.valu {
			t.Errorf("%q: token %v target %v host %v value %v; want %v %v %v %v", tc.s,
				ValidToken(tc.s), ValidTarget(tc.s), ValidHost(tc.s), ValidValue(tc.s), tc.token, tc.target, tc.host, tc.valu)
		}
	}
}
