package tlshello

import (
	"errors"
	"strings"
	"testing"
)

// checkPrefixes checks that every strict prefix of hello gives ErrIncomplete.
func checkPrefixes(t *testing.T, hello []byte) {
	t.Helper()
	for i := range len(hello) {
		if sni, err := Parse(hello[:i]); err != ErrIncomplete {
			t.Fatalf("Parse of the first %d of %d bytes = %q, %v; want ErrIncomplete", i, len(hello), sni, err)
		}
	}
}

func TestParseRealHellos(t *testing.T) {
	for _, hc := range realHellos {
		t.Run(hc.name, func(t *testing.T) {
			hello := captureHello(t, hc)
			sni, n, err := parse(hello)
			if err != nil || sni != hc.want {
				t.Fatalf("Parse = %q, %v; want %q", sni, err, hc.want)
			}
			if n != len(hello) {
				t.Errorf("parse says the hello takes %d bytes; it takes %d", n, len(hello))
			}
			checkPrefixes(t, hello)

			// Bytes after the hello do not matter.
			more := append(append([]byte(nil), hello...), 23, 3, 3, 0, 5, 'h', 'e', 'l', 'l', 'o')
			if sni, err := Parse(more); err != nil || sni != hc.want {
				t.Errorf("Parse with bytes after the hello = %q, %v; want %q", sni, err, hc.want)
			}

			// The handshake message split across records, anywhere.
			msgLen := len(hello) - 5
			for _, sizes := range [][]int{
				{1}, {2}, {3}, {4}, {5}, {40}, {msgLen / 2}, {msgLen - 1},
				{100, 100, 100}, {7, 1, 1, 300},
			} {
				split := reframe(hello, sizes...)
				if sni, n, err := parse(split); err != nil || sni != hc.want || n != len(split) {
					t.Errorf("parse of the hello in records of %v bytes = %q, %d, %v; want %q, %d", sizes, sni, n, err, hc.want, len(split))
				}
			}
			split := reframe(hello, msgLen/3, msgLen/3)
			checkPrefixes(t, split)
		})
	}
}

// TestParseSplitTwoRecords splits a real hello with a name into two
// records at every offset, including inside the name.
func TestParseSplitTwoRecords(t *testing.T) {
	hello := captureHello(t, helloConfig{serverName: "a.b.test", tls12: true})
	msgLen := len(hello) - 5
	for i := 1; i < msgLen; i++ {
		split := reframe(hello, i)
		if sni, err := Parse(split); err != nil || sni != "a.b.test" {
			t.Fatalf("Parse of the hello split after %d of %d bytes = %q, %v", i, msgLen, sni, err)
		}
	}
	checkPrefixes(t, reframe(hello, msgLen/2))
}

// TestParseOneByteRecords carries a hello one byte per record.
func TestParseOneByteRecords(t *testing.T) {
	hello := captureHello(t, helloConfig{serverName: "a.b.test", tls12: true})
	sizes := make([]int, len(hello))
	for i := range sizes {
		sizes[i] = 1
	}
	split := reframe(hello, sizes...)
	if sni, err := Parse(split); err != nil || sni != "a.b.test" {
		t.Fatalf("Parse of the hello in %d one-byte records = %q, %v", len(hello)-5, sni, err)
	}
	checkPrefixes(t, split)
}

func TestParseBuilt(t *testing.T) {
	noExts := defaultParts()
	emptyExts := defaultParts()
	emptyExts.exts = vec16()
	noSession := defaultParts()
	noSession.sessionID = nil
	sslv3 := record(handshake(noExts.body()))
	sslv3[2] = 0 // record version 3.0

	tests := []struct {
		name  string
		hello []byte
		want  string
	}{
		{"trailing dot", helloWith(sniExt("Example.COM.")), "example.com"},
		{"one letter", helloWith(sniExt("X")), "x"},
		{"255 bytes", helloWith(sniExt(strings.Repeat("A", 255))), strings.Repeat("a", 255)},
		{"255 bytes with the dot", helloWith(sniExt(strings.Repeat("a", 254) + ".")), strings.Repeat("a", 254)},
		{"printable bytes", helloWith(sniExt("!~{}_-")), "!~{}_-"},
		{"first host_name", helloWith(sniExt("one.test", "two.test")), "one.test"},
		{"other name types first", helloWith(ext(0, vec16(sniEntry(7, "zz z"), sniEntry(0, "B.test")))), "b.test"},
		{"other name types only", helloWith(ext(0, vec16(sniEntry(7, "zz z")))), ""},
		{"after other extensions", helloWith(ext(16, vec16([]byte("\x02h2"))), ext(0xff01, []byte{0}), sniExt("late.test")), "late.test"},
		{"empty extensions", record(handshake(emptyExts.body())), ""},
		{"no extensions", record(handshake(noExts.body())), ""},
		{"no session id", record(handshake(noSession.body())), ""},
		{"record version 3.0", sslv3, ""},
		{"other extensions only", helloWith(ext(10, vec16(u16(nil, 29))), ext(0x1234, nil)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sni, err := Parse(tt.hello)
			if err != nil || sni != tt.want {
				t.Fatalf("Parse = %q, %v; want %q", sni, err, tt.want)
			}
			checkPrefixes(t, tt.hello)
		})
	}
}

func TestParseNotTLS(t *testing.T) {
	for _, in := range []string{
		"G",
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"\x80\x2e\x01\x03\x01",                     // SSLv2-compatible hello
		"\x15\x03\x03\x00\x02\x02\x28",             // alert record
		"\x17\x03\x03\x00\x05hello",                // application data
		"\x16\x02",                                 // record version 2.x
		"\x16\x03\x03\x00\x04\x02\x00\x00\x00",     // server_hello
		"\x16\x03\x01\x00\x04\x00\x00\x00\x00",     // hello_request
		"\x16\x03\x01\x00\x01\x0b",                 // certificate, first byte only
		"\x16\x03\x01\x00\x02\x02\x00\x00\x00\x00", // handshake type 2
	} {
		if sni, err := Parse([]byte(in)); err != ErrNotTLS {
			t.Errorf("Parse(%q) = %q, %v; want ErrNotTLS", in, sni, err)
		}
	}
}

func TestParseIncomplete(t *testing.T) {
	for _, in := range []string{"", "\x16", "\x16\x03", "\x16\x03\x01\x02", "\x16\x03\x01\x02\x00", "\x16\x03\x01\x02\x00\x01\x00"} {
		if sni, err := Parse([]byte(in)); err != ErrIncomplete {
			t.Errorf("Parse(%q) = %q, %v; want ErrIncomplete", in, sni, err)
		}
	}
}

// malformedCase is a malformed hello and what Parse's *Error says about it.
type malformedCase struct {
	name  string
	hello []byte
	want  string // in the message
}

func malformedHellos() []malformedCase {
	good := helloWith(sniExt("example.com"))

	// body edits a default body.
	body := func(edit func(p *helloParts)) []byte {
		p := defaultParts()
		p.exts = vec16(sniExt("example.com"))
		edit(&p)
		return record(handshake(p.body()))
	}
	// raw is a hello whose body is given byte by byte from the session id on.
	raw := func(rest []byte) []byte {
		b := append([]byte{3, 3}, make([]byte, 32)...)
		return record(handshake(append(b, rest...)))
	}
	long := make([]byte, 0, MaxHello+10)
	long = append(long, 22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfd)
	hugeRecord := []byte{22, 3, 1, 0x40, 0x01, 1, 0, 0, 41}
	manyRecords := func() []byte {
		// A 3000-byte hello in 1-byte records: 3000*6 > 16448 bytes.
		p := defaultParts()
		p.exts = vec16(ext(0x1234, make([]byte, 3000)))
		h := record(handshake(p.body()))
		sizes := make([]int, len(h))
		for i := range sizes {
			sizes[i] = 1
		}
		return reframe(h, sizes...)
	}()
	alertInside := append(reframe(good, 10)[:15], 21, 3, 3, 0, 2, 2, 40)
	v2Inside := append(reframe(good, 10)[:15], 22, 2, 0, 0, 2, 2, 40)
	emptyRecord := append(reframe(good, 10)[:15], 22, 3, 1, 0, 0)

	return []malformedCase{
		{"overrun session id", body(func(p *helloParts) { p.sessionID = make([]byte, 33) }), "session_id of 33 bytes, longer than 32"},
		{"session id past the end", raw([]byte{20, 1, 2, 3}), "session_id of 20 bytes overruns the ClientHello by 17 bytes"},
		{"odd cipher suites", body(func(p *helloParts) { p.suites = vec16([]byte{0x13, 0x01, 0x13}) }), "cipher_suites of 3 bytes: not a positive even length"},
		{"no cipher suites", body(func(p *helloParts) { p.suites = vec16() }), "cipher_suites of 0 bytes"},
		{"cipher suites past the end", raw([]byte{0, 0, 8, 0x13, 0x01}), "cipher_suites of 8 bytes overruns the ClientHello by 6 bytes"},
		{"no compression methods", body(func(p *helloParts) { p.comp = []byte{0} }), "no compression_methods"},
		{"compression methods past the end", raw([]byte{0, 0, 2, 0x13, 0x01, 3, 0}), "compression_methods of 3 bytes overruns"},
		{"stray byte", raw([]byte{0, 0, 2, 0x13, 0x01, 1, 0, 0}), "1 stray byte after compression_methods"},
		{"extensions length too long", body(func(p *helloParts) { p.exts = append(u16(nil, len(p.exts)-1), p.exts[2:]...) }), "extensions of 21 bytes, but 20 bytes remain"},
		{"extensions length too short", body(func(p *helloParts) { p.exts = append(p.exts, 0) }), "extensions of 20 bytes, but 21 bytes remain"},
		{"extension overrun", helloWith(append(u16(nil, 0x1234), 0, 9, 1)), "extension 4660 of 9 bytes overruns the extensions by 8 bytes"},
		{"extension header cut", helloWith([]byte{0, 1, 0}), "extensions too short for its extension header: 3 of 4 bytes"},
		{"server_name list overrun", helloWith(ext(0, append(u16(nil, 40), sniEntry(0, "example.com")...))), "server_name list of 40 bytes overruns its 16-byte extension"},
		{"server_name list short", helloWith(ext(0, append(vec16(sniEntry(0, "example.com")), 0, 0))), "2 stray bytes after the server_name list"},
		{"server_name entry overrun", helloWith(ext(0, vec16(u16([]byte{0}, 20), []byte("example.com")))), "server_name entry of 20 bytes overruns the list by 9 bytes"},
		{"server_name entry header cut", helloWith(ext(0, vec16(sniEntry(0, "a.test"), []byte{0, 0}))), "server_name list too short for its server_name entry header: 2 of 3 bytes"},
		{"empty server_name extension", helloWith(ext(0, nil)), "empty server_name extension"},
		{"server_name extension of 1 byte", helloWith(ext(0, []byte{0})), "server_name extension too short for its server_name list length"},
		{"empty server_name list", helloWith(ext(0, vec16())), "empty server_name list"},
		{"two server_name extensions", helloWith(sniExt("a.test"), sniExt("b.test")), "two server_name extensions"},
		{"name with a space", helloWith(sniExt("exa mple.com")), "host_name with byte 0x20 at offset 3"},
		{"name with a control char", helloWith(sniExt("example\x00.com")), "host_name with byte 0x00 at offset 7"},
		{"name with a DEL", helloWith(sniExt("\x7fexample.com")), "host_name with byte 0x7f at offset 0"},
		{"name with UTF-8", helloWith(sniExt("exämple.com")), "host_name with byte 0xc3 at offset 2"},
		{"empty name", helloWith(sniExt("")), "host_name of 0 bytes, not 1 to 255"},
		{"256-byte name", helloWith(sniExt(strings.Repeat("a", 256))), "host_name of 256 bytes, not 1 to 255"},
		{"dot only", helloWith(sniExt(".")), `host_name "."`},
		{"two trailing dots", helloWith(sniExt("example.com..")), `host_name ending with ".."`},
		{"longer than MaxHello", long, "ClientHello longer than 16384 bytes"},
		{"record longer than 16384", hugeRecord, "record of 16385 bytes, longer than 16384"},
		{"too many records", manyRecords, "ClientHello spread over too many records"},
		{"alert inside", alertInside, "record of type 21 inside the ClientHello"},
		{"record version 2 inside", v2Inside, "record version 2.x inside the ClientHello"},
		{"empty record", emptyRecord, "empty handshake record"},
		{"empty first record", []byte{22, 3, 1, 0, 0, 1}, "empty handshake record"},
		{"hello shorter than its fields", record(handshake([]byte{3, 3, 1, 2})), "ClientHello too short for its client_version and random: 4 of 34 bytes"},
	}
}

func TestParseMalformed(t *testing.T) {
	tests := malformedHellos()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sni, err := Parse(tt.hello)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %q, %v; want an *Error", sni, err)
			}
			if !strings.HasPrefix(err.Error(), "tlshello: ") || !strings.Contains(e.Msg, tt.want) {
				t.Errorf("Parse error %q; want one saying %q", err, tt.want)
			}
		})
	}
}

// TestParseEarlyError checks that a malformation is reported as soon as the
// bytes show it, before the rest of the hello arrives.
func TestParseEarlyError(t *testing.T) {
	p := defaultParts()
	p.sessionID = make([]byte, 40)
	p.exts = vec16(ext(0x1234, make([]byte, 3000)))
	hello := record(handshake(p.body()))
	var e *Error
	if _, err := Parse(hello[:5+4+2+32+1]); !errors.As(err, &e) {
		t.Fatalf("Parse of a hello cut after its bad session_id length = %v; want an *Error", err)
	}
}

func TestParseAllocs(t *testing.T) {
	withName := captureHello(t, helloConfig{serverName: "Example.COM"})
	noName := captureHello(t, helloConfig{})
	split := reframe(withName, 100, 200)
	for _, tt := range []struct {
		name  string
		hello []byte
		max   float64
	}{
		{"with a name", withName, 1},
		{"split", split, 1},
		{"without a name", noName, 0},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Parse(tt.hello); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > tt.max {
			t.Errorf("Parse of a hello %s: %v allocations; want at most %v", tt.name, allocs, tt.max)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	hello := captureHello(b, helloConfig{serverName: "www.example.com", alpn: []string{"h2", "http/1.1"}})
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(hello); err != nil {
			b.Fatal(err)
		}
	}
}
