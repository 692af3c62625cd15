package proxyproto

import (
	"errors"
	"net/netip"
	"strconv"
)

// Header is what a PROXY protocol header says.
//
// Header is comparable with ==.
type Header struct {
	// Version is the protocol version of a parsed header, 1 or 2. AppendV1
	// and AppendV2 ignore it.
	Version int

	// Local is set for a v2 LOCAL command (a connection the proxy made on
	// its own, such as a health check), for a v1 "UNKNOWN" line, and for a
	// v2 PROXY command whose family or transport this package does not
	// carry (AF_UNSPEC, AF_UNIX, DGRAM). Source and Dest are then zero and
	// the connection's own addresses stand.
	Local bool

	// Source is the client, as the sender saw it.
	Source netip.AddrPort

	// Dest is the address the client connected to.
	Dest netip.AddrPort

	// ALPN is the value of the v2 PP2_TYPE_ALPN TLV (0x01): the application
	// protocol negotiated with the client, such as "h2". Empty for v1.
	ALPN string

	// Authority is the value of the v2 PP2_TYPE_AUTHORITY TLV (0x02): the
	// host name the client asked for, typically the TLS SNI. Empty for v1.
	Authority string

	// TLS reports that a v2 PP2_TYPE_SSL TLV (0x20) is present with the
	// PP2_CLIENT_SSL bit set: the client connected over TLS.
	TLS bool

	// TLSVersion is the PP2_SUBTYPE_SSL_VERSION sub-TLV (0x21) of the
	// PP2_TYPE_SSL TLV, such as "TLSv1.3". Parse sets it only along with
	// TLS; AppendV2 writes it only when TLS is set.
	TLSVersion string
}

// ErrIncomplete is returned by Parse when its input is a valid beginning of
// a header but too short to hold all of it: read more bytes and call again.
var ErrIncomplete = errors.New("proxyproto: incomplete header")

// ErrNotProxy is returned by Parse when its input does not begin with the
// signature of either protocol version: the peer did not send a PROXY
// protocol header.
var ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")

// Error is a malformed header: one that begins with a PROXY protocol
// signature but breaks the specification.
type Error struct {
	// Version is the protocol version the header's signature announced,
	// 1 or 2.
	Version int
	// Msg says what is wrong, without any prefix.
	Msg string
}

// Error returns "proxyproto: v1 header: " (or v2) followed by e.Msg.
func (e *Error) Error() string {
	return "proxyproto: v" + strconv.Itoa(e.Version) + " header: " + e.Msg
}

const (
	// v1Sig begins every v1 header.
	v1Sig = "PROXY "
	// v2Sig begins every v2 header.
	v2Sig = "\r\n\r\n\x00\r\nQUIT\n"
)

// HasSignature reports whether b starts with a v1 signature ("PROXY ") or
// the 12-byte v2 signature. A b shorter than a signature never has it.
//
// A server that accepts PROXY headers only from trusted peers uses it to
// refuse connections from other peers that try to send one.
func HasSignature(b []byte) bool {
	return len(b) >= len(v1Sig) && string(b[:len(v1Sig)]) == v1Sig ||
		len(b) >= len(v2Sig) && string(b[:len(v2Sig)]) == v2Sig
}

// Parse parses the PROXY protocol header, version 1 or 2, at the start of b.
//
// It returns the header and its length in bytes, which is what the caller
// consumes; the bytes after it are the proxied connection's payload. It
// returns ErrIncomplete when b is a valid beginning of a header but too short
// (including when b is shorter than a signature and a prefix of one),
// ErrNotProxy when b begins with neither signature, and an *Error describing
// the problem when the header is malformed.
//
// The returned Header never refers to b's memory.
func Parse(b []byte) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, ErrIncomplete
	}
	switch b[0] {
	case v1Sig[0]:
		if !hasPrefix(b, v1Sig) {
			return Header{}, 0, ErrNotProxy
		}
		if len(b) < len(v1Sig) {
			return Header{}, 0, ErrIncomplete
		}
		return parseV1(b)
	case v2Sig[0]:
		if !hasPrefix(b, v2Sig) {
			return Header{}, 0, ErrNotProxy
		}
		if len(b) < len(v2Sig) {
			return Header{}, 0, ErrIncomplete
		}
		return parseV2(b)
	}
	return Header{}, 0, ErrNotProxy
}

// hasPrefix reports whether b and sig agree on their common length.
func hasPrefix(b []byte, sig string) bool {
	n := min(len(b), len(sig))
	return string(b[:n]) == sig[:n]
}

// wireAddrs returns the addresses AppendV1 and AppendV2 write for h, and
// false when they must write none (Local, or an invalid address). IPv4-mapped
// IPv6 addresses are unmapped and zones dropped; if the two addresses are
// then of different families, the IPv4 one is mapped into IPv6.
func wireAddrs(h Header) (src, dst netip.AddrPort, ok bool) {
	s, d := h.Source.Addr(), h.Dest.Addr()
	if h.Local || !s.IsValid() || !d.IsValid() {
		return netip.AddrPort{}, netip.AddrPort{}, false
	}
	s, d = s.Unmap().WithZone(""), d.Unmap().WithZone("")
	if s.Is4() != d.Is4() {
		if s.Is4() {
			s = netip.AddrFrom16(s.As16())
		} else {
			d = netip.AddrFrom16(d.As16())
		}
	}
	return netip.AddrPortFrom(s, h.Source.Port()), netip.AddrPortFrom(d, h.Dest.Port()), true
}
