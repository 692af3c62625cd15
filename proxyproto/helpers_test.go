package proxyproto

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// sig2 is the v2 signature, spelled out byte by byte as in the specification.
var sig2 = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// v2 builds a v2 header: signature, verCmd, fam, the length of body, body.
func v2(verCmd, fam byte, body ...[]byte) []byte {
	var rest []byte
	for _, p := range body {
		rest = append(rest, p...)
	}
	b := append([]byte{}, sig2...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rest)))
	return append(b, rest...)
}

// v2len builds a v2 header like v2 but with the given length field.
func v2len(verCmd, fam byte, length uint16, body ...[]byte) []byte {
	b := v2(verCmd, fam, body...)
	binary.BigEndian.PutUint16(b[14:], length)
	return b
}

// tlv builds a TLV.
func tlv(typ byte, val ...[]byte) []byte {
	var v []byte
	for _, p := range val {
		v = append(v, p...)
	}
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// ssl builds a PP2_TYPE_SSL TLV.
func ssl(client byte, subs ...[]byte) []byte {
	return tlv(0x20, append([]byte{client, 0, 0, 0, 0}, concat(subs...)...))
}

func concat(ps ...[]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return b
}

// withCRC appends a CRC32C TLV to header h (no payload after it), fixing the
// length field, and fills in the right checksum, xor'ed with flip.
func withCRC(h []byte, flip uint32) []byte {
	b := append(append([]byte{}, h...), 0x03, 0, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(b)-16))
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], sum^flip)
	return b
}

func ip4(a, b, c, d byte) []byte { return []byte{a, b, c, d} }

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func addr16(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func rep(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
