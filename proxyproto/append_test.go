package proxyproto

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// TestAppendGolden checks the encoders against headers written by hand from
// the specification.
func TestAppendGolden(t *testing.T) {
	tls := Header{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443"), ALPN: "h2", TLS: true, TLSVersion: "TLSv1.3"}
	for _, c := range []struct {
		name string
		got  []byte
		want string
	}{
		{"v1 TCP4", AppendV1(nil, Header{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}),
			"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"},
		{"v1 TCP6", AppendV1(nil, Header{Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8:0:0:0:0:0:2]:443")}),
			"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"},
		{"v1 UNKNOWN", AppendV1(nil, Header{Local: true, Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2")}),
			"PROXY UNKNOWN\r\n"},
		{"v2 PROXY TCP4", AppendV2(nil, Header{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}),
			"\r\n\r\n\x00\r\nQUIT\n" + // signature
				"\x21" + // version 2, PROXY
				"\x11" + // AF_INET, STREAM
				"\x00\x0c" + // 12 bytes follow
				"\xc0\x00\x02\x01" + // 192.0.2.1
				"\xc6\x33\x64\x02" + // 198.51.100.2
				"\xdc\x04" + // 56324
				"\x01\xbb"}, // 443
		{"v2 PROXY TCP6", AppendV2(nil, Header{Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8::2]:443")}),
			"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" +
				"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" +
				"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" +
				"\xdc\x04\x01\xbb"},
		{"v2 LOCAL", AppendV2(nil, Header{Local: true, Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2")}),
			"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"},
		{"v2 PROXY UNSPEC", AppendV2(nil, Header{}),
			"\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00"},
		{"v2 PROXY TCP4 TLS", AppendV2(nil, tls),
			"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x23" + // 12 + 5 + 18 = 35 bytes follow
				"\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb" +
				"\x01\x00\x02h2" + // PP2_TYPE_ALPN
				"\x20\x00\x0f" + // PP2_TYPE_SSL, 15 bytes
				"\x01" + // PP2_CLIENT_SSL
				"\x00\x00\x00\x00" + // verify: OK
				"\x21\x00\x07TLSv1.3"}, // PP2_SUBTYPE_SSL_VERSION
		{"v2 LOCAL authority", AppendV2(nil, Header{Local: true, Authority: "example.com"}),
			"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x0e\x02\x00\x0bexample.com"},
	} {
		if string(c.got) != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

func TestAppendKeepsDst(t *testing.T) {
	h := Header{Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2"), ALPN: "h2"}
	for name, f := range map[string]func([]byte, Header) []byte{"AppendV1": AppendV1, "AppendV2": AppendV2} {
		prefix := []byte("prefix")
		b := f(prefix, h)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("%s lost dst: %q", name, b)
		}
		if _, n, err := Parse(b[len(prefix):]); err != nil || n != len(b)-len(prefix) {
			t.Fatalf("%s: Parse = %d, %v", name, n, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tlvs := func(h Header) Header {
		h.ALPN, h.Authority, h.TLS, h.TLSVersion = "h2", "www.example.com", true, "TLSv1.2"
		return h
	}
	for _, c := range []struct {
		name string
		in   Header
		// The addresses both encoders write; zero with local.
		src, dst string
		local    bool
	}{
		{name: "IPv4", in: Header{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}, src: "192.0.2.1:56324", dst: "198.51.100.2:443"},
		{name: "IPv6", in: Header{Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:65535")}, src: "[2001:db8::1]:1", dst: "[2001:db8::2]:65535"},
		{name: "zero ports", in: Header{Source: ap("10.0.0.1:0"), Dest: ap("10.0.0.2:0")}, src: "10.0.0.1:0", dst: "10.0.0.2:0"},
		{name: "mapped", in: Header{Source: ap("[::ffff:192.0.2.1]:1"), Dest: ap("[::ffff:192.0.2.2]:2")}, src: "192.0.2.1:1", dst: "192.0.2.2:2"},
		{name: "mapped and IPv4", in: Header{Source: ap("[::ffff:192.0.2.1]:1"), Dest: ap("192.0.2.2:2")}, src: "192.0.2.1:1", dst: "192.0.2.2:2"},
		{name: "IPv4 to IPv6", in: Header{Source: ap("192.0.2.1:1"), Dest: ap("[2001:db8::2]:2")}, src: "[::ffff:192.0.2.1]:1", dst: "[2001:db8::2]:2"},
		{name: "IPv6 to IPv4", in: Header{Source: ap("[2001:db8::1]:1"), Dest: ap("192.0.2.2:2")}, src: "[2001:db8::1]:1", dst: "[::ffff:192.0.2.2]:2"},
		{name: "zone", in: Header{Source: ap("[fe80::1%eth0]:1"), Dest: ap("[fe80::2]:2")}, src: "[fe80::1]:1", dst: "[fe80::2]:2"},
		{name: "local", in: Header{Local: true, Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2")}, local: true},
		{name: "no addresses", in: Header{}, local: true},
		{name: "no destination", in: Header{Source: ap("192.0.2.1:1")}, local: true},
		{name: "IPv4 with TLVs", in: tlvs(Header{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}), src: "192.0.2.1:56324", dst: "198.51.100.2:443"},
		{name: "IPv6 with TLVs", in: tlvs(Header{Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:2")}), src: "[2001:db8::1]:1", dst: "[2001:db8::2]:2"},
		{name: "mixed with TLVs", in: tlvs(Header{Source: ap("192.0.2.1:1"), Dest: ap("[2001:db8::2]:2")}), src: "[::ffff:192.0.2.1]:1", dst: "[2001:db8::2]:2"},
		{name: "local with TLVs", in: tlvs(Header{Local: true}), local: true},
		{name: "TLS without version", in: Header{Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2"), TLS: true}, src: "192.0.2.1:1", dst: "192.0.2.2:2"},
		{name: "ALPN only", in: Header{Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2"), ALPN: "acme-tls/1"}, src: "192.0.2.1:1", dst: "192.0.2.2:2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var addrs Header
			if c.local {
				addrs.Local = true
			} else {
				addrs.Source, addrs.Dest = ap(c.src), ap(c.dst)
			}

			want1 := addrs
			want1.Version = 1
			b1 := AppendV1(nil, c.in)
			h1, n1, err := Parse(b1)
			if err != nil || n1 != len(b1) || h1 != want1 {
				t.Errorf("v1 %q:\n got %+v, %d, %v\nwant %+v", b1, h1, n1, err, want1)
			}

			want2 := addrs
			want2.Version = 2
			want2.ALPN, want2.Authority, want2.TLS = c.in.ALPN, c.in.Authority, c.in.TLS
			if c.in.TLS {
				want2.TLSVersion = c.in.TLSVersion
			}
			b2 := AppendV2(nil, c.in)
			h2, n2, err := Parse(b2)
			if err != nil || n2 != len(b2) || h2 != want2 {
				t.Errorf("v2 %q:\n got %+v, %d, %v\nwant %+v", b2, h2, n2, err, want2)
			}
		})
	}
}

// TestAppendV2Oversized checks that TLVs that would take the header beyond
// what Parse accepts are left out rather than corrupting the header.
func TestAppendV2Oversized(t *testing.T) {
	long := strings.Repeat("a", 70000)
	base := Header{Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:2")}
	for _, c := range []struct {
		name     string
		in, want Header
	}{
		{"ALPN", Header{ALPN: long, Authority: "x", TLS: true, TLSVersion: "TLSv1.3"}, Header{Authority: "x", TLS: true, TLSVersion: "TLSv1.3"}},
		{"Authority", Header{ALPN: "h2", Authority: long[:4090], TLS: true}, Header{ALPN: "h2", TLS: true}},
		{"exactly the limit", Header{Authority: long[:4096-12-3]}, Header{Authority: long[:4096-12-3]}},
		{"TLS version", Header{Authority: long[:4096-12-3-3-8-3], TLS: true, TLSVersion: "TLSv1.3"}, Header{Authority: long[:4096-12-3-3-8-3], TLS: true}},
		{"TLS", Header{Authority: long[:4096-12-3-3-4], TLS: true, TLSVersion: "TLSv1.3"}, Header{Authority: long[:4096-12-3-3-4]}},
	} {
		in, want := c.in, c.want
		in.Source, in.Dest = base.Source, base.Dest
		want.Source, want.Dest, want.Version = base.Source, base.Dest, 2
		b := AppendV2(nil, in)
		h, n, err := Parse(b)
		if err != nil || n != len(b) || h != want {
			t.Errorf("%s: Parse(AppendV2) = %d bytes, %v; header equal: %v", c.name, n, err, h == want)
		}
	}
}

func TestWireAddrsKeepsInput(t *testing.T) {
	// Appending must not need the addresses to be canonical.
	h := Header{Source: netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.0.0.1"), 5), Dest: ap("10.0.0.2:6")}
	if got := string(AppendV1(nil, h)); got != "PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n" {
		t.Fatalf("AppendV1 = %q", got)
	}
}
