package proxyproto

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

const (
	// v2FixedLen is the signature, the version and command byte, the
	// family byte and the length field.
	v2FixedLen = 16
	// v2MaxLen is the largest length field Parse accepts.
	v2MaxLen = 4096

	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec    = 0x00
	famTCP4      = 0x11
	famUDP4      = 0x12
	famTCP6      = 0x21
	famUDP6      = 0x22
	famUnixStrm  = 0x31
	famUnixDgram = 0x32

	typeALPN      = 0x01
	typeAuthority = 0x02
	typeCRC32C    = 0x03
	typeNoop      = 0x04
	typeSSL       = 0x20
	subSSLVersion = 0x21

	clientSSL = 0x01
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// v2Errorf returns an *Error for version 2.
func v2Errorf(format string, args ...any) error {
	return &Error{Version: 2, Msg: fmt.Sprintf(format, args...)}
}

// addrLen returns the size of the address block of a family and transport
// byte, and false for a byte the specification does not define.
func addrLen(fam byte) (int, bool) {
	switch fam {
	case famUnspec:
		return 0, true
	case famTCP4, famUDP4:
		return 12, true
	case famTCP6, famUDP6:
		return 36, true
	case famUnixStrm, famUnixDgram:
		return 216, true
	}
	return 0, false
}

// famName names a family and transport byte for messages.
func famName(fam byte) string {
	switch fam {
	case famTCP4:
		return "AF_INET STREAM"
	case famUDP4:
		return "AF_INET DGRAM"
	case famTCP6:
		return "AF_INET6 STREAM"
	case famUDP6:
		return "AF_INET6 DGRAM"
	case famUnixStrm:
		return "AF_UNIX STREAM"
	case famUnixDgram:
		return "AF_UNIX DGRAM"
	}
	return "AF_UNSPEC"
}

// parseV2 parses a v2 header; b begins with the v2 signature.
func parseV2(b []byte) (Header, int, error) {
	if len(b) <= 12 {
		return Header{}, 0, ErrIncomplete
	}
	vc := b[12]
	if vc>>4 != 2 {
		return Header{}, 0, v2Errorf("version %d in byte 13 (0x%02x) is not 2", vc>>4, vc)
	}
	cmd := vc & 0x0f
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, 0, v2Errorf("command %d in byte 13 (0x%02x) is neither LOCAL (0) nor PROXY (1)", cmd, vc)
	}
	if len(b) <= 13 {
		return Header{}, 0, ErrIncomplete
	}
	fam := b[13]
	alen, famOK := addrLen(fam)
	if cmd == cmdProxy && !famOK {
		return Header{}, 0, v2Errorf("address family and transport byte 0x%02x (byte 14) is undefined", fam)
	}
	if len(b) < v2FixedLen {
		return Header{}, 0, ErrIncomplete
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > v2MaxLen {
		return Header{}, 0, v2Errorf("length %d is above the limit of %d", length, v2MaxLen)
	}
	if cmd == cmdProxy && length < alen {
		return Header{}, 0, v2Errorf("length %d is too short for the %d bytes of %s addresses", length, alen, famName(fam))
	}
	total := v2FixedLen + length
	if len(b) < total {
		return Header{}, 0, ErrIncomplete
	}

	h := Header{Version: 2}
	tlvs := v2FixedLen + alen
	if cmd == cmdLocal {
		// The receiver ignores the family and the addresses of a LOCAL
		// header. TLVs follow the addresses; when the length cannot hold
		// them, there is nothing to find them after.
		h.Local = true
		if !famOK || length < alen {
			tlvs = total
		}
	} else {
		a := b[v2FixedLen:]
		switch fam {
		case famTCP4:
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
		case famTCP6:
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
			h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
		default:
			// AF_UNSPEC, AF_UNIX or DGRAM: not what a TCP connection
			// carries; the connection's own endpoints stand.
			h.Local = true
		}
	}
	if err := parseTLVs(&h, b[:total], tlvs); err != nil {
		return Header{}, 0, err
	}
	return h, total, nil
}

// nextTLV splits the TLV at b[off:]; what names the kind of TLV in messages.
func nextTLV(b []byte, off int, what string) (typ byte, val []byte, next int, err error) {
	if left := len(b) - off; left < 3 {
		return 0, nil, 0, v2Errorf("%d bytes at offset %d are too few for a %s (3 at least)", left, off, what)
	}
	typ = b[off]
	n := int(binary.BigEndian.Uint16(b[off+1 : off+3]))
	v := off + 3
	if left := len(b) - v; n > left {
		return 0, nil, 0, v2Errorf("%s of type 0x%02x at offset %d has length %d but only %d bytes are left", what, typ, off, n, left)
	}
	return typ, b[v : v+n], v + n, nil
}

// parseTLVs parses the TLVs in b[off:] into h; b is the whole header.
func parseTLVs(h *Header, b []byte, off int) error {
	crcAt := -1
	for off < len(b) {
		start := off
		typ, val, next, err := nextTLV(b, off, "TLV")
		if err != nil {
			return err
		}
		off = next
		switch typ {
		case typeALPN:
			h.ALPN = alpnString(val)
		case typeAuthority:
			h.Authority = string(val)
		case typeCRC32C:
			if len(val) != 4 {
				return v2Errorf("CRC32C TLV at offset %d has length %d, not 4", start, len(val))
			}
			if crcAt >= 0 {
				return v2Errorf("second CRC32C TLV at offset %d", start)
			}
			crcAt = start + 3
		case typeNoop:
			// Padding: nothing to do.
		case typeSSL:
			if err := parseSSL(h, b[:next], start); err != nil {
				return err
			}
		}
	}
	if crcAt >= 0 {
		var zero [4]byte
		sum := crc32.Update(0, castagnoli, b[:crcAt])
		sum = crc32.Update(sum, castagnoli, zero[:])
		sum = crc32.Update(sum, castagnoli, b[crcAt+4:])
		if want := binary.BigEndian.Uint32(b[crcAt:]); sum != want {
			return v2Errorf("CRC32C mismatch: the header says 0x%08x but its bytes sum to 0x%08x", want, sum)
		}
	}
	return nil
}

// parseSSL parses the PP2_TYPE_SSL TLV at b[start:], which ends at len(b).
func parseSSL(h *Header, b []byte, start int) error {
	if n := len(b) - start - 3; n < 5 {
		return v2Errorf("SSL TLV at offset %d has length %d, less than the 5 of its client and verify fields", start, n)
	}
	client := b[start+3]
	version := ""
	for off := start + 8; off < len(b); {
		typ, val, next, err := nextTLV(b, off, "SSL sub-TLV")
		if err != nil {
			return err
		}
		if typ == subSSLVersion {
			version = tlsVersionString(val)
		}
		off = next
	}
	h.TLS = client&clientSSL != 0
	h.TLSVersion = ""
	if h.TLS {
		h.TLSVersion = version
	}
	return nil
}

// alpnString returns string(b) without allocating for common protocols.
func alpnString(b []byte) string {
	switch string(b) {
	case "h2":
		return "h2"
	case "http/1.1":
		return "http/1.1"
	case "http/1.0":
		return "http/1.0"
	}
	return string(b)
}

// tlsVersionString returns string(b) without allocating for the names
// OpenSSL gives TLS versions.
func tlsVersionString(b []byte) string {
	switch string(b) {
	case "TLSv1.3":
		return "TLSv1.3"
	case "TLSv1.2":
		return "TLSv1.2"
	case "TLSv1.1":
		return "TLSv1.1"
	case "TLSv1":
		return "TLSv1"
	}
	return string(b)
}

// AppendV2 appends a v2 header for h to dst and returns the extended slice.
//
// It writes the PROXY command with AF_INET or AF_INET6 over STREAM, choosing
// the family as AppendV1 does; the LOCAL command with AF_UNSPEC when h.Local
// is set; and the PROXY command with AF_UNSPEC when either address is
// invalid. It then writes a PP2_TYPE_ALPN TLV when h.ALPN is not empty, a
// PP2_TYPE_AUTHORITY TLV when h.Authority is not empty, and, when h.TLS is
// set, a PP2_TYPE_SSL TLV with the PP2_CLIENT_SSL client bit, a verify field
// of 0 and, when h.TLSVersion is not empty, a PP2_SUBTYPE_SSL_VERSION
// sub-TLV. It writes no CRC32C TLV. A TLV that would take the length field
// above 4096, the most Parse accepts, is left out.
func AppendV2(dst []byte, h Header) []byte {
	start := len(dst)
	dst = append(dst, v2Sig...)
	src, dest, ok := wireAddrs(h)
	switch {
	case h.Local:
		dst = append(dst, 0x20|cmdLocal, famUnspec, 0, 0)
	case !ok:
		dst = append(dst, 0x20|cmdProxy, famUnspec, 0, 0)
	case src.Addr().Is4():
		dst = append(dst, 0x20|cmdProxy, famTCP4, 0, 0)
		s, d := src.Addr().As4(), dest.Addr().As4()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
		dst = binary.BigEndian.AppendUint16(dst, src.Port())
		dst = binary.BigEndian.AppendUint16(dst, dest.Port())
	default:
		dst = append(dst, 0x20|cmdProxy, famTCP6, 0, 0)
		s, d := src.Addr().As16(), dest.Addr().As16()
		dst = append(dst, s[:]...)
		dst = append(dst, d[:]...)
		dst = binary.BigEndian.AppendUint16(dst, src.Port())
		dst = binary.BigEndian.AppendUint16(dst, dest.Port())
	}
	// fits reports whether n more bytes keep the length within v2MaxLen.
	fits := func(n int) bool { return len(dst)-start-v2FixedLen+n <= v2MaxLen }
	if h.ALPN != "" && fits(3+len(h.ALPN)) {
		dst = appendTLV(dst, typeALPN, h.ALPN)
	}
	if h.Authority != "" && fits(3+len(h.Authority)) {
		dst = appendTLV(dst, typeAuthority, h.Authority)
	}
	if h.TLS {
		n := 5
		if h.TLSVersion != "" {
			n += 3 + len(h.TLSVersion)
		}
		if !fits(3 + n) {
			n = 5
		}
		if fits(3 + n) {
			dst = append(dst, typeSSL, byte(n>>8), byte(n), clientSSL, 0, 0, 0, 0)
			if n > 5 {
				dst = appendTLV(dst, subSSLVersion, h.TLSVersion)
			}
		}
	}
	binary.BigEndian.PutUint16(dst[start+14:], uint16(len(dst)-start-v2FixedLen))
	return dst
}

// appendTLV appends a TLV whose value is v; len(v) fits in 16 bits.
func appendTLV(dst []byte, typ byte, v string) []byte {
	dst = append(dst, typ, byte(len(v)>>8), byte(len(v)))
	return append(dst, v...)
}
