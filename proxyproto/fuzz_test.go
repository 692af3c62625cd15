package proxyproto

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, c := range allCases() {
		f.Add(c.in)
	}
	f.Add(AppendV2(nil, Header{Source: ap("[2001:db8::1]:1"), Dest: ap("192.0.2.2:2"), ALPN: "h2", Authority: "a.example", TLS: true, TLSVersion: "TLSv1.3"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			var perr *Error
			switch {
			case err == ErrIncomplete:
				// Neither version needs more than these to decide.
				if len(b) >= v1MaxLen && b[0] == 'P' || len(b) >= v2FixedLen+v2MaxLen {
					t.Fatalf("ErrIncomplete for %d bytes", len(b))
				}
			case err == ErrNotProxy:
				if HasSignature(b) {
					t.Fatalf("ErrNotProxy for %q, which has a signature", b)
				}
			case errors.As(err, &perr):
				if perr.Version != 1 && perr.Version != 2 || perr.Msg == "" ||
					!strings.HasPrefix(err.Error(), "proxyproto: v") {
					t.Fatalf("bad *Error %#v", perr)
				}
				if !HasSignature(b) {
					t.Fatalf("*Error %v for %q, which has no signature", err, b)
				}
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if h != (Header{}) || n != 0 {
				t.Fatalf("error %v with %+v, %d", err, h, n)
			}
			return
		}

		if n <= 0 || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if !HasSignature(b) {
			t.Fatalf("parsed %q, which has no signature", b)
		}
		if h.Version != 1 && h.Version != 2 || h.Version == 1 && b[0] != 'P' {
			t.Fatalf("Version %d for %q", h.Version, b)
		}
		if h.Local && (h.Source.IsValid() || h.Dest.IsValid()) || !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid()) {
			t.Fatalf("Local %v with addresses %v, %v", h.Local, h.Source, h.Dest)
		}
		if h.Version == 1 && (h.ALPN != "" || h.Authority != "" || h.TLS || h.TLSVersion != "") {
			t.Fatalf("v1 header with TLVs: %+v", h)
		}
		if !h.TLS && h.TLSVersion != "" {
			t.Fatalf("TLSVersion without TLS: %+v", h)
		}

		// The header alone parses the same, and a byte less is too few.
		if h2, n2, err := Parse(b[:n]); err != nil || h2 != h || n2 != n {
			t.Fatalf("Parse(b[:n]) = %+v, %d, %v; Parse(b) = %+v, %d", h2, n2, err, h, n)
		}
		if _, _, err := Parse(b[:n-1]); err != ErrIncomplete {
			t.Fatalf("Parse(b[:n-1]) = %v, want ErrIncomplete", err)
		}

		// Re-encoding gives the same header again.
		addrs := Header{Local: true}
		if src, dst, ok := wireAddrs(h); ok {
			addrs = Header{Source: src, Dest: dst}
		}
		want1 := addrs
		want1.Version = 1
		enc1 := AppendV1(nil, h)
		if got, n1, err := Parse(enc1); err != nil || n1 != len(enc1) || got != want1 {
			t.Fatalf("AppendV1(%+v) = %q, parsed to %+v, %d, %v; want %+v", h, enc1, got, n1, err, want1)
		}
		want2 := addrs
		want2.Version, want2.ALPN, want2.Authority, want2.TLS, want2.TLSVersion = 2, h.ALPN, h.Authority, h.TLS, h.TLSVersion
		enc2 := AppendV2(nil, h)
		if got, n2, err := Parse(enc2); err != nil || n2 != len(enc2) || got != want2 {
			t.Fatalf("AppendV2(%+v) = %q, parsed to %+v, %d, %v; want %+v", h, enc2, got, n2, err, want2)
		}
	})
}
