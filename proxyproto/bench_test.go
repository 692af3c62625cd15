package proxyproto

import "testing"

// benchHeader is a typical v2 header from a TLS-terminating proxy.
var benchHeader = Header{
	Source:     ap("[2001:db8::1]:56324"),
	Dest:       ap("[2001:db8::2]:443"),
	ALPN:       "h2",
	TLS:        true,
	TLSVersion: "TLSv1.3",
}

func BenchmarkParseV2(b *testing.B) {
	wire := AppendV2(nil, benchHeader)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		h, n, err := Parse(wire)
		if err != nil || n != len(wire) || !h.TLS {
			b.Fatal(h, n, err)
		}
	}
}

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV2(buf[:0], benchHeader)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParseV1(b *testing.B) {
	wire := AppendV1(nil, benchHeader)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendV1(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV1(buf[:0], benchHeader)
	}
	b.SetBytes(int64(len(buf)))
}
