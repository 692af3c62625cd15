package tlshello

import (
	"errors"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, hc := range realHellos {
		hello := captureHello(f, hc)
		f.Add(hello)
		f.Add(reframe(hello, 60, 1))
	}
	for _, m := range malformedHellos() {
		f.Add(m.hello)
	}
	f.Add(helloWith(sniExt("Example.COM.")))
	f.Add(helloWith(ext(0, vec16(sniEntry(7, "x"), sniEntry(0, "A.test"), sniEntry(0, "b.test")))))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		sni, n, err := parse(b)
		if err != nil {
			var e *Error
			if err != ErrIncomplete && err != ErrNotTLS && !errors.As(err, &e) {
				t.Fatalf("Parse returned an unexpected error: %v", err)
			}
			if sni != "" || n != 0 {
				t.Fatalf("Parse returned %q, %d with the error %v", sni, n, err)
			}
			if err == ErrIncomplete && len(b) >= maxWire {
				t.Fatalf("ErrIncomplete for %d bytes", len(b))
			}
			return
		}
		if n < 5 || n > len(b) || n > maxWire {
			t.Fatalf("the hello takes %d of %d bytes", n, len(b))
		}
		if sni != "" {
			if len(sni) > 255 {
				t.Fatalf("name of %d bytes", len(sni))
			}
			for i := 0; i < len(sni); i++ {
				if c := sni[i]; c < 0x21 || c > 0x7e || 'A' <= c && c <= 'Z' {
					t.Fatalf("name %q with byte %#02x", sni, c)
				}
			}
			if sni[len(sni)-1] == '.' {
				t.Fatalf("name %q with a trailing dot", sni)
			}
		}
		// Every strict prefix of the hello is incomplete; b up to it and
		// beyond gives the same answer.
		for _, k := range []int{0, 1, 5, n / 2, n - 1} {
			if k < n {
				if got, err := Parse(b[:k]); err != ErrIncomplete {
					t.Fatalf("Parse of the first %d of the hello's %d bytes = %q, %v; want ErrIncomplete", k, n, got, err)
				}
			}
		}
		if got, err := Parse(b[:n]); err != nil || got != sni {
			t.Fatalf("Parse of the hello's %d bytes = %q, %v; want %q", n, got, err, sni)
		}
	})
}
