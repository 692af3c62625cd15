package proxyproto

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// checkAddrParsers compares the v1 address parsers with net/netip, which
// implements the same grammar (and also rejects heading zeroes in IPv4).
func checkAddrParsers(t *testing.T, s string) {
	t.Helper()
	ref, err := netip.ParseAddr(s)
	refOK := err == nil && ref.Zone() == ""

	got4, ok4 := parseV1Addr([]byte(s), false)
	if want := refOK && ref.Is4(); ok4 != want || ok4 && got4 != ref {
		t.Errorf("IPv4 %q: got %v, %v; netip says %v, %v", s, got4, ok4, ref, err)
	}
	got6, ok6 := parseV1Addr([]byte(s), true)
	if want := refOK && ref.Is6(); ok6 != want || ok6 && got6 != ref {
		t.Errorf("IPv6 %q: got %v, %v; netip says %v, %v", s, got6, ok6, ref, err)
	}
	if ok4 || ok6 {
		// Whatever parses is a prefix of itself, and so are its prefixes.
		for i := range len(s) + 1 {
			if ok4 && !ipv4Prefix([]byte(s[:i])) {
				t.Errorf("ipv4Prefix(%q) = false, a prefix of %q", s[:i], s)
			}
			if ok6 && !isIPv6Text([]byte(s[:i])) {
				t.Errorf("isIPv6Text(%q) = false, a prefix of %q", s[:i], s)
			}
		}
	}
}

func TestAddrParsers(t *testing.T) {
	for _, s := range []string{
		"", "0.0.0.0", "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.",
		".1.2.3", "1..2.3", "1.2.3.4.5", "1.2.3.-4", "1.2.3.4 ", "0x1.2.3.4", "1.2.3.1000",
		"::", "::1", "1::", "1::2", ":", ":::", "1:::2", "::1:", ":1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
		"1:2:3:4:5:6:7", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7::8", "1::2::3", "12345::", "0000:0::",
		"FFFF:ffff::fFfF", "g::", "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
		"1:2:3:4:5:1.2.3.4", "::ffff:1.2.3", "::ffff:01.2.3.4", "1.2.3.4::", "::1.2.3.4:5", "fe80::1%eth0",
		"2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:255.255.255.255",
	} {
		checkAddrParsers(t, s)
	}
}

// TestAddrParsersRandom compares the parsers with net/netip on random
// strings of address characters.
func TestAddrParsersRandom(t *testing.T) {
	const alphabet = "0123456789abcdefABCDEF:..::00ff"
	r := rand.New(rand.NewPCG(1, 2))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	buf := make([]byte, 0, 48)
	for range n {
		buf = buf[:0]
		for range r.IntN(46) {
			buf = append(buf, alphabet[r.IntN(len(alphabet))])
		}
		checkAddrParsers(t, string(buf))
		if t.Failed() {
			return
		}
	}
	// Valid addresses, random and in netip's spelling and others.
	for range 20000 {
		var a [16]byte
		for i := range a {
			if r.IntN(3) == 0 {
				a[i] = byte(r.Uint32())
			}
		}
		ip := netip.AddrFrom16(a)
		checkAddrParsers(t, ip.String())
		checkAddrParsers(t, ip.StringExpanded())
		checkAddrParsers(t, netip.AddrFrom4([4]byte(a[:4])).String())
	}
}
