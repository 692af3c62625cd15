package ipbytes

import (
	"net/netip"
	"testing"
)

func TestParseIPv6(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1::2", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1:2:3:4:5:6::8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
		"1:2:3:4:5:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "::01.2.3.4", "::1.2.3", "::1.2.3.4.5", "::256.1.1.1",
		"abcd:EF01::", "12345::", ":1", "1:", ":::", "1:::2", "1::2::3", "", ":", "[::1]", "::1%eth0",
		"1.2.3.4", "::1.2.3.4:5", "::fffff", "0:0:0:0:0:0:0:0:0", "::0:0:0:0:0:0:0", "::0:0:0:0:0:0:0:0",
		"1:2:3:4:5:6:7:1.2.3.4", "::a:b:c:d:1.2.3.4", "::a:b:c:d:e:f:1.2.3.4", "0::0",
	} {
		t.Run(s, func(t *testing.T) {
			checkParseIPv6(t, s)
		})
	}
}

// checkParseIPv6 checks ParseIPv6 against netip.ParseAddr.
func checkParseIPv6(t *testing.T, s string) {
	t.Helper()
	a, err := netip.ParseAddr(s)
	want := err == nil && a.Is6() && a.Zone() == ""
	got, ok := ParseIPv6([]byte(s))
	if ok != want {
		t.Fatalf("ParseIPv6(%q) ok = %v, netip says %v (%v)", s, ok, want, err)
	}
	if ok && got != a.As16() {
		t.Fatalf("ParseIPv6(%q) = %v, want %v", s, netip.AddrFrom16(got), a)
	}
}

// FuzzParseIPv6 checks ParseIPv6 against netip.ParseAddr.
func FuzzParseIPv6(f *testing.F) {
	for _, s := range []string{"::", "::1", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1::2::3", "::01.2.3.4", "fe80::1%eth0", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkParseIPv6(t, s)
	})
}
