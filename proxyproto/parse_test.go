package proxyproto

import (
	"errors"
	"strings"
	"testing"
)

// parseCase is one Parse input and what Parse must say about it.
type parseCase struct {
	name string
	in   []byte
	// On success:
	want Header
	n    int // 0: len(in)
	// On failure, either a sentinel or an *Error whose text contains err:
	is  error
	err string
}

func (c parseCase) ok() bool { return c.is == nil && c.err == "" }

var tcp4 = Header{Version: 1, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}

var v1Cases = []parseCase{
	// Valid.
	{name: "v1 TCP4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), want: tcp4},
	{name: "v1 TCP4 with payload", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n"), want: tcp4, n: 45},
	{name: "v1 TCP4 zero ports and addresses", in: []byte("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
		want: Header{Version: 1, Source: ap("0.0.0.0:0"), Dest: ap("255.255.255.255:65535")}},
	{name: "v1 TCP6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"),
		want: Header{Version: 1, Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8::2]:443")}},
	{name: "v1 TCP6 longest", in: []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n"),
		want: Header{Version: 1, Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{name: "v1 TCP6 mapped IPv4 and unspecified", in: []byte("PROXY TCP6 ::ffff:192.0.2.1 :: 1 2\r\n"),
		want: Header{Version: 1, Source: ap("[::ffff:192.0.2.1]:1"), Dest: ap("[::]:2")}},
	{name: "v1 UNKNOWN", in: []byte("PROXY UNKNOWN\r\n"), want: Header{Version: 1, Local: true}},
	{name: "v1 UNKNOWN with addresses", in: []byte("PROXY UNKNOWN ffff:f:: ::1 1 2\r\nxyz"), want: Header{Version: 1, Local: true}, n: 32},
	{name: "v1 UNKNOWN of 107 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 91) + "\r\n"), want: Header{Version: 1, Local: true}},

	// Malformed.
	{name: "v1 unknown family", in: []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), err: `v1 header: unknown protocol "TCP5" (want TCP4, TCP6 or UNKNOWN)`},
	{name: "v1 lower-case family", in: []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), err: `unknown protocol "tcp4"`},
	{name: "v1 UNKNOWN glued", in: []byte("PROXY UNKNOWNX\r\n"), err: `unknown protocol "UNKNOWNX"`},
	{name: "v1 UDP4", in: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), err: `unknown protocol "UDP4"`},
	{name: "v1 no protocol", in: []byte("PROXY \r\n"), err: "missing protocol after PROXY"},
	{name: "v1 space after PROXY", in: []byte("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), err: "extra space after PROXY"},
	{name: "v1 no source address", in: []byte("PROXY TCP4\r\n"), err: "missing source address after TCP4"},
	{name: "v1 no destination address", in: []byte("PROXY TCP4 1.2.3.4\r\n"), err: "missing destination address"},
	{name: "v1 no source port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8\r\n"), err: "missing source port"},
	{name: "v1 no destination port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), err: "missing destination port"},
	{name: "v1 empty destination port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"), err: "missing destination port"},
	{name: "v1 two spaces", in: []byte("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), err: "extra space before the destination address"},
	{name: "v1 two spaces before port", in: []byte("PROXY TCP6 ::1 ::2  1 2\r\n"), err: "extra space before the source port"},
	{name: "v1 trailing space", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), err: "trailing space after the destination port"},
	{name: "v1 extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), err: `unexpected "3" after the destination port`},
	{name: "v1 octet out of range", in: []byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), err: `source address "1.2.3.256" is not a valid IPv4 address (TCP4)`},
	{name: "v1 heading zero octet", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n"), err: `destination address "5.6.7.08" is not a valid IPv4 address`},
	{name: "v1 three octets", in: []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), err: `source address "1.2.3" is not a valid IPv4 address`},
	{name: "v1 five octets", in: []byte("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), err: `source address "1.2.3.4.5"`},
	{name: "v1 host name", in: []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), err: `source address "localhost"`},
	{name: "v1 IPv6 in TCP4", in: []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), err: `source address "::1" is not a valid IPv4 address (TCP4)`},
	{name: "v1 IPv4 in TCP6", in: []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), err: `source address "1.2.3.4" is not a valid IPv6 address (TCP6)`},
	{name: "v1 mixed families", in: []byte("PROXY TCP6 ::1 5.6.7.8 1 2\r\n"), err: `destination address "5.6.7.8" is not a valid IPv6 address (TCP6)`},
	{name: "v1 IPv6 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), err: `source address "fe80::1%eth0" is not a valid IPv6 address`},
	{name: "v1 IPv6 two ellipses", in: []byte("PROXY TCP6 1::2::3 ::1 1 2\r\n"), err: `source address "1::2::3"`},
	{name: "v1 IPv6 short", in: []byte("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), err: `source address "1:2:3:4:5:6:7"`},
	{name: "v1 IPv6 long group", in: []byte("PROXY TCP6 12345::1 ::1 1 2\r\n"), err: `source address "12345::1"`},
	{name: "v1 source port out of range", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n"), err: `proxyproto: v1 header: source port "70000" is out of range`},
	{name: "v1 destination port out of range", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), err: `destination port "65536" is out of range`},
	{name: "v1 port of many digits", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999999999999999999\r\n"), err: `destination port "99999999999999999999" is out of range`},
	{name: "v1 port heading zero", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), err: `source port "080" has a heading zero`},
	{name: "v1 port not decimal", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 8x 2\r\n"), err: `source port "8x" is not a decimal number`},
	{name: "v1 port negative", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), err: `source port "-1" is not a decimal number`},
	{name: "v1 LF without CR", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), err: "line ends with a LF without a CR before it (byte 30)"},
	{name: "v1 UNKNOWN LF without CR", in: []byte("PROXY UNKNOWN\n"), err: "line ends with a LF without a CR"},
	{name: "v1 lone CR", in: []byte("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n"), err: "CR not followed by LF at byte 18"},
	{name: "v1 CR CR LF", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), err: "CR not followed by LF at byte 30"},
	{name: "v1 no CRLF in 107 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n"), err: "no CRLF within the first 107 bytes"},
	{name: "v1 no CRLF at all", in: []byte("PROXY TCP4 " + strings.Repeat("1", 200)), err: "no CRLF within the first 107 bytes"},

	// Malformed before the line is complete: reported at once.
	{name: "v1 partial bad family", in: []byte("PROXY TCPX"), err: `unknown protocol "TCPX"`},
	{name: "v1 partial bad address", in: []byte("PROXY TCP4 1.2.3.999"), err: `source address "1.2.3.999" is not a valid IPv4 address`},
	{name: "v1 partial bad IPv6", in: []byte("PROXY TCP6 ::1 fe80::1%"), err: `destination address "fe80::1%"`},
	{name: "v1 partial bad port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999"), err: `source port "99999" is out of range`},
	{name: "v1 partial heading zero", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 05"), err: `destination port "05" has a heading zero`},
	{name: "v1 partial extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "), err: "trailing space after the destination port"},

	// Incomplete.
	{name: "empty", in: []byte{}, is: ErrIncomplete},
	{name: "v1 signature prefix", in: []byte("PROX"), is: ErrIncomplete},
	{name: "v1 partial address", in: []byte("PROXY TCP4 1.2."), is: ErrIncomplete},
	{name: "v1 partial IPv6", in: []byte("PROXY TCP6 2001:db8:"), is: ErrIncomplete},
	{name: "v1 before LF", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), is: ErrIncomplete},
	{name: "v1 UNKNOWN before LF", in: []byte("PROXY UNKNOWN whatever"), is: ErrIncomplete},

	// Not PROXY.
	{name: "HTTP", in: []byte("GET / HTTP/1.1\r\n"), is: ErrNotProxy},
	{name: "TLS hello", in: []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), is: ErrNotProxy},
	{name: "TLS byte", in: []byte("\x16"), is: ErrNotProxy},
	{name: "lower-case proxy", in: []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), is: ErrNotProxy},
	{name: "PROXY without space", in: []byte("PROXYTCP4"), is: ErrNotProxy},
	{name: "PROXZ", in: []byte("PROXZ"), is: ErrNotProxy},
	{name: "CRLF", in: []byte("\r\n\r\n" + "GET"), is: ErrNotProxy},
	{name: "blank line", in: []byte("\r\nGET"), is: ErrNotProxy},
}

var (
	v2TCP4Body = concat(ip4(192, 0, 2, 1), ip4(198, 51, 100, 2), port(56324), port(443))
	v2TCP4     = Header{Version: 2, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}
	v2TCP6Body = concat(addr16("2001:db8::1"), addr16("2001:db8::2"), port(56324), port(443))
	v2TCP6     = Header{Version: 2, Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8::2]:443")}
	v2Local    = Header{Version: 2, Local: true}
)

var v2Cases = []parseCase{
	// Valid.
	{name: "v2 LOCAL", in: v2(0x20, 0x00), want: v2Local},
	{name: "v2 LOCAL with payload", in: append(v2(0x20, 0x00), "GET"...), want: v2Local, n: 16},
	{name: "v2 LOCAL with TLVs", in: v2(0x20, 0x00, tlv(0x01, []byte("h2")), tlv(0x02, []byte("example.com"))),
		want: Header{Version: 2, Local: true, ALPN: "h2", Authority: "example.com"}},
	{name: "v2 LOCAL ignores addresses", in: v2(0x20, 0x11, v2TCP4Body), want: v2Local},
	{name: "v2 LOCAL ignores family", in: v2(0x20, 0x11), want: v2Local},
	{name: "v2 LOCAL ignores undefined family", in: v2(0x20, 0x99, []byte{1, 2, 3}), want: v2Local},
	{name: "v2 PROXY TCP4", in: v2(0x21, 0x11, v2TCP4Body), want: v2TCP4},
	{name: "v2 PROXY TCP4 with payload", in: append(v2(0x21, 0x11, v2TCP4Body), "\x16\x03\x01"...), want: v2TCP4, n: 28},
	{name: "v2 PROXY TCP6", in: v2(0x21, 0x21, v2TCP6Body), want: v2TCP6},
	{name: "v2 PROXY TCP4 with TLVs", in: v2(0x21, 0x11, v2TCP4Body,
		tlv(0x04, rep(0, 3)), // NOOP
		tlv(0x01, []byte("h2")),
		tlv(0xE0, []byte("custom")), // unknown
		tlv(0x02, []byte("example.com")),
		tlv(0x05, []byte("unique-id")),
		ssl(0x07, tlv(0x22, []byte("client CN")), tlv(0x21, []byte("TLSv1.3")), tlv(0x23, []byte("TLS_AES_128_GCM_SHA256"))),
		tlv(0x04, nil), // empty NOOP
	), want: Header{Version: 2, Source: v2TCP4.Source, Dest: v2TCP4.Dest, ALPN: "h2", Authority: "example.com", TLS: true, TLSVersion: "TLSv1.3"}},
	{name: "v2 PROXY TCP6 with TLVs", in: v2(0x21, 0x21, v2TCP6Body, tlv(0x01, []byte("http/1.1")), ssl(0x01)),
		want: Header{Version: 2, Source: v2TCP6.Source, Dest: v2TCP6.Dest, ALPN: "http/1.1", TLS: true}},
	{name: "v2 SSL without the SSL bit", in: v2(0x21, 0x11, v2TCP4Body, ssl(0x00, tlv(0x21, []byte("TLSv1.2")))), want: v2TCP4},
	{name: "v2 unusual ALPN and version", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x01, []byte("spdy/3")), ssl(0x01, tlv(0x21, []byte("TLSv1.4")))),
		want: Header{Version: 2, Source: v2TCP4.Source, Dest: v2TCP4.Dest, ALPN: "spdy/3", TLS: true, TLSVersion: "TLSv1.4"}},
	{name: "v2 PROXY UNSPEC", in: v2(0x21, 0x00), want: v2Local},
	{name: "v2 PROXY UNSPEC with bytes", in: v2(0x21, 0x00, []byte{0x04, 0, 0}), want: v2Local},
	{name: "v2 PROXY UDP4", in: v2(0x21, 0x12, v2TCP4Body), want: v2Local},
	{name: "v2 PROXY UDP6", in: v2(0x21, 0x22, v2TCP6Body, tlv(0x01, []byte("h3"))), want: Header{Version: 2, Local: true, ALPN: "h3"}},
	{name: "v2 PROXY UNIX", in: v2(0x21, 0x31, rep('/', 216)), want: v2Local},
	{name: "v2 longest", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x04, rep(0, 4096-12-3))), want: v2TCP4},
	{name: "v2 CRC32C", in: withCRC(v2(0x21, 0x11, v2TCP4Body, tlv(0x01, []byte("h2"))), 0),
		want: Header{Version: 2, Source: v2TCP4.Source, Dest: v2TCP4.Dest, ALPN: "h2"}},
	{name: "v2 CRC32C LOCAL", in: withCRC(v2(0x20, 0x00), 0), want: v2Local},

	// Malformed.
	{name: "v2 version 1", in: v2(0x11, 0x11, v2TCP4Body), err: "proxyproto: v2 header: version 1 in byte 13 (0x11) is not 2"},
	{name: "v2 version 3", in: v2(0x31, 0x11, v2TCP4Body), err: "version 3 in byte 13 (0x31) is not 2"},
	{name: "v2 version only", in: []byte("\r\n\r\n\x00\r\nQUIT\n\x01"), err: "version 0 in byte 13 (0x01) is not 2"},
	{name: "v2 command 2", in: v2(0x22, 0x11, v2TCP4Body), err: "command 2 in byte 13 (0x22) is neither LOCAL (0) nor PROXY (1)"},
	{name: "v2 command 15", in: v2(0x2F, 0x11, v2TCP4Body), err: "command 15 in byte 13 (0x2f)"},
	{name: "v2 family 4", in: v2(0x21, 0x41, v2TCP4Body), err: "address family and transport byte 0x41 (byte 14) is undefined"},
	{name: "v2 transport 3", in: v2(0x21, 0x13, v2TCP4Body), err: "address family and transport byte 0x13 (byte 14) is undefined"},
	{name: "v2 AF_INET UNSPEC transport", in: v2(0x21, 0x10, v2TCP4Body), err: "byte 0x10 (byte 14) is undefined"},
	{name: "v2 length above 4096", in: v2len(0x21, 0x11, 4097, v2TCP4Body), err: "length 4097 is above the limit of 4096"},
	{name: "v2 length 65535", in: v2len(0x20, 0x00, 65535), err: "length 65535 is above the limit of 4096"},
	{name: "v2 length too short for TCP4", in: v2(0x21, 0x11, v2TCP4Body[:11]), err: "length 11 is too short for the 12 bytes of AF_INET STREAM addresses"},
	{name: "v2 length too short for TCP6", in: v2(0x21, 0x21, v2TCP4Body), err: "length 12 is too short for the 36 bytes of AF_INET6 STREAM addresses"},
	{name: "v2 length too short for UNIX", in: v2(0x21, 0x32), err: "length 0 is too short for the 216 bytes of AF_UNIX DGRAM addresses"},
	{name: "v2 overrunning TLV", in: v2(0x21, 0x11, v2TCP4Body, []byte{0x01, 0x00, 0x0a, 'h', '2'}),
		err: "TLV of type 0x01 at offset 28 has length 10 but only 2 bytes are left"},
	{name: "v2 overrunning TLV in LOCAL", in: v2(0x20, 0x00, []byte{0x02, 0x00, 0x01}),
		err: "TLV of type 0x02 at offset 16 has length 1 but only 0 bytes are left"},
	{name: "v2 truncated TLV", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x04, nil), []byte{0x01, 0x00}),
		err: "2 bytes at offset 31 are too few for a TLV (3 at least)"},
	{name: "v2 short SSL TLV", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x20, []byte{1, 0, 0, 0})),
		err: "SSL TLV at offset 28 has length 4, less than the 5 of its client and verify fields"},
	{name: "v2 overrunning SSL sub-TLV", in: v2(0x21, 0x11, v2TCP4Body, ssl(0x01, []byte{0x21, 0x00, 0x08, 'T', 'L', 'S'})),
		err: "SSL sub-TLV of type 0x21 at offset 36 has length 8 but only 3 bytes are left"},
	{name: "v2 truncated SSL sub-TLV", in: v2(0x21, 0x11, v2TCP4Body, ssl(0x01, []byte{0x21})),
		err: "1 bytes at offset 36 are too few for a SSL sub-TLV (3 at least)"},
	{name: "v2 SSL sub-TLV overrunning into the next TLV", in: v2(0x21, 0x11, v2TCP4Body,
		tlv(0x20, []byte{1, 0, 0, 0, 0, 0x21, 0x00, 0x07}), tlv(0x04, []byte("TLSv"))),
		err: "SSL sub-TLV of type 0x21 at offset 36 has length 7 but only 0 bytes are left"},
	{name: "v2 bad CRC32C", in: withCRC(v2(0x21, 0x11, v2TCP4Body, tlv(0x01, []byte("h2"))), 1),
		err: "CRC32C mismatch: the header says 0x"},
	{name: "v2 CRC32C of 3 bytes", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x03, []byte{1, 2, 3})),
		err: "CRC32C TLV at offset 28 has length 3, not 4"},
	{name: "v2 two CRC32C", in: withCRC(withCRC(v2(0x21, 0x11, v2TCP4Body), 0), 0),
		err: "second CRC32C TLV at offset 35"},

	// Incomplete.
	{name: "v2 signature prefix", in: sig2[:5], is: ErrIncomplete},
	{name: "v2 signature", in: sig2, is: ErrIncomplete},
	{name: "v2 without its TLVs", in: v2(0x21, 0x11, v2TCP4Body, tlv(0x01, []byte("h2")))[:28], is: ErrIncomplete},

	// Not PROXY.
	{name: "v2 signature with a wrong byte", in: []byte("\r\n\r\n\x00\r\nQUIT\r\x21\x11\x00\x00"), is: ErrNotProxy},
	{name: "v2 signature prefix with a wrong byte", in: []byte("\r\n\r\n\x01"), is: ErrNotProxy},
}

func allCases() []parseCase { return append(append([]parseCase{}, v1Cases...), v2Cases...) }

func TestParse(t *testing.T) {
	for _, c := range allCases() {
		t.Run(c.name, func(t *testing.T) {
			h, n, err := Parse(c.in)
			switch {
			case c.ok():
				if err != nil {
					t.Fatalf("Parse(%q) error: %v", c.in, err)
				}
				wantN := c.n
				if wantN == 0 {
					wantN = len(c.in)
				}
				if h != c.want || n != wantN {
					t.Fatalf("Parse(%q)\n got %+v, %d\nwant %+v, %d", c.in, h, n, c.want, wantN)
				}
				if !HasSignature(c.in) {
					t.Errorf("HasSignature(%q) = false for a valid header", c.in)
				}
			case c.is != nil:
				if err != c.is {
					t.Fatalf("Parse(%q) = %+v, %d, %v; want %v", c.in, h, n, err, c.is)
				}
			default:
				var perr *Error
				if !errors.As(err, &perr) {
					t.Fatalf("Parse(%q) = %+v, %d, %v; want an *Error containing %q", c.in, h, n, err, c.err)
				}
				if !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse(%q) error\n got %q\nwant it to contain %q", c.in, err, c.err)
				}
				if want := "proxyproto: v" + string(rune('0'+perr.Version)) + " header: " + perr.Msg; err.Error() != want {
					t.Errorf("Error() = %q, want %q", err, want)
				}
				if (perr.Version == 1) != (c.in[0] == 'P') {
					t.Errorf("Version = %d for %q", perr.Version, c.in)
				}
			}
			if err != nil && (h != Header{} || n != 0) {
				t.Errorf("Parse(%q) = %+v, %d with error %v; want zero values", c.in, h, n, err)
			}
		})
	}
}

// TestParsePrefixes checks that every strict prefix of every valid header
// is reported as incomplete.
func TestParsePrefixes(t *testing.T) {
	for _, c := range allCases() {
		if !c.ok() {
			continue
		}
		_, n, err := Parse(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i := range n {
			if _, _, err := Parse(c.in[:i]); err != ErrIncomplete {
				t.Errorf("%s: Parse of the first %d of %d bytes (%q): %v, want ErrIncomplete", c.name, i, n, c.in[:i], err)
			}
		}
	}
}

func TestHasSignature(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"PROXY ", true},
		{"PROXY TCP4 1.2.3.4", true},
		{"PROXY garbage", true},
		{"PROXY", false},
		{"PROX", false},
		{"", false},
		{"GET / HTTP/1.1\r\n", false},
		{"\r\n\r\n\x00\r\nQUIT\n", true},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11", true},
		{"\r\n\r\n\x00\r\nQUIT", false},
		{"\r\n\r\n\x00\r\nQUIT\r", false},
		{"\x16\x03\x01", false},
	} {
		if got := HasSignature([]byte(c.in)); got != c.want {
			t.Errorf("HasSignature(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestErrorsAreDistinct(t *testing.T) {
	if ErrIncomplete == ErrNotProxy || ErrIncomplete.Error() == ErrNotProxy.Error() {
		t.Fatal("ErrIncomplete and ErrNotProxy must differ")
	}
	for _, err := range []error{ErrIncomplete, ErrNotProxy} {
		if !strings.HasPrefix(err.Error(), "proxyproto: ") {
			t.Errorf("%q lacks the package prefix", err)
		}
	}
}
