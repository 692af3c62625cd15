package proxyproto

import (
	"bytes"
	"fmt"
	"lb/ipbytes"
	"net/netip"
	"strconv"
)

// v1MaxLen is the longest v1 header, CRLF included.
const v1MaxLen = 107

// v1Errorf returns an *Error for version 1.
func v1Errorf(format string, args ...any) error {
	return &Error{Version: 1, Msg: fmt.Sprintf(format, args...)}
}

// parseV1 parses a v1 header; b begins with "PROXY ".
func parseV1(b []byte) (Header, int, error) {
	lf := bytes.IndexByte(b[:min(len(b), v1MaxLen)], '\n')
	if lf < 0 {
		if len(b) >= v1MaxLen {
			return Header{}, 0, v1Errorf("no CRLF within the first %d bytes", v1MaxLen)
		}
		// Check what has arrived so far, so that a malformed header is
		// reported now rather than after the sender's timeout. A trailing
		// CR ends the line: what precedes it must be a whole line.
		line, final := b, false
		if line[len(line)-1] == '\r' {
			line, final = line[:len(line)-1], true
		}
		if _, err := parseV1Line(line, final); err != nil {
			return Header{}, 0, err
		}
		return Header{}, 0, ErrIncomplete
	}
	if b[lf-1] != '\r' { // lf >= len(v1Sig): the signature holds no LF
		return Header{}, 0, v1Errorf("line ends with a LF without a CR before it (byte %d)", lf)
	}
	h, err := parseV1Line(b[:lf-1], true)
	if err != nil {
		return Header{}, 0, err
	}
	return h, lf + 1, nil
}

// v1Fields names the fields after the protocol, in order.
var v1Fields = [4]string{"source address", "destination address", "source port", "destination port"}

// parseV1Line parses line, a v1 header without its CRLF. When final is
// false, line is what has arrived of a header so far: it returns
// ErrIncomplete if line is a valid beginning and an *Error if not.
func parseV1Line(line []byte, final bool) (Header, error) {
	if i := bytes.IndexByte(line, '\r'); i >= 0 {
		return Header{}, v1Errorf("CR not followed by LF at byte %d", i)
	}
	proto, rest, more := cutSpace(line[len(v1Sig):])
	if !more && !final {
		if hasPrefix(proto, "TCP4") || hasPrefix(proto, "TCP6") || hasPrefix(proto, "UNKNOWN") {
			return Header{}, ErrIncomplete
		}
		return Header{}, v1Errorf("unknown protocol %q (want TCP4, TCP6 or UNKNOWN)", proto)
	}
	var is6 bool
	switch string(proto) {
	case "UNKNOWN":
		// The receiver must ignore the rest of the line.
		if !final {
			return Header{}, ErrIncomplete
		}
		return Header{Version: 1, Local: true}, nil
	case "TCP4":
	case "TCP6":
		is6 = true
	case "":
		if more {
			return Header{}, v1Errorf("extra space after PROXY")
		}
		return Header{}, v1Errorf("missing protocol after PROXY")
	default:
		return Header{}, v1Errorf("unknown protocol %q (want TCP4, TCP6 or UNKNOWN)", proto)
	}
	if !more {
		return Header{}, v1Errorf("missing source address after %s", proto)
	}

	h := Header{Version: 1}
	var addrs [2]netip.Addr
	var ports [2]uint16
	for i, name := range v1Fields {
		var tok []byte
		tok, rest, more = cutSpace(rest)
		if !more && !final {
			if err := checkV1Partial(i, tok, proto, is6); err != nil {
				return Header{}, err
			}
			return Header{}, ErrIncomplete
		}
		if len(tok) == 0 {
			if more {
				return Header{}, v1Errorf("extra space before the %s", name)
			}
			return Header{}, v1Errorf("missing %s", name)
		}
		if i < 2 {
			a, ok := parseV1Addr(tok, is6)
			if !ok {
				return Header{}, v1Errorf("%s %q is not a valid %s address (%s)", name, tok, ipName(is6), proto)
			}
			addrs[i] = a
		} else {
			p, err := parseV1Port(name, tok)
			if err != nil {
				return Header{}, err
			}
			ports[i-2] = p
		}
		switch {
		case i == len(v1Fields)-1 && more:
			if len(rest) == 0 {
				return Header{}, v1Errorf("trailing space after the destination port")
			}
			return Header{}, v1Errorf("unexpected %q after the destination port", rest)
		case i < len(v1Fields)-1 && !more:
			return Header{}, v1Errorf("missing %s", v1Fields[i+1])
		}
	}
	if !final {
		return Header{}, ErrIncomplete
	}
	h.Source = netip.AddrPortFrom(addrs[0], ports[0])
	h.Dest = netip.AddrPortFrom(addrs[1], ports[1])
	return h, nil
}

// cutSpace splits b at its first space: it returns what precedes it, what
// follows it, and whether there was a space.
func cutSpace(b []byte) (tok, rest []byte, more bool) {
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

func ipName(is6 bool) string {
	if is6 {
		return "IPv6"
	}
	return "IPv4"
}

// checkV1Partial checks tok, the beginning of field i of a v1 line that has
// not fully arrived.
func checkV1Partial(i int, tok []byte, proto []byte, is6 bool) error {
	name := v1Fields[i]
	if i >= 2 {
		if len(tok) == 0 {
			return nil
		}
		if len(tok) < 5 && isDigits(tok) && (tok[0] != '0' || len(tok) == 1) {
			return nil // a prefix of some valid port
		}
		_, err := parseV1Port(name, tok)
		return err
	}
	if is6 {
		// Any run of IPv6 characters not longer than the longest address
		// ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
		if len(tok) <= 45 && isIPv6Text(tok) {
			return nil
		}
	} else if ipv4Prefix(tok) {
		return nil
	}
	return v1Errorf("%s %q is not a valid %s address (%s)", name, tok, ipName(is6), proto)
}

// ipv4Prefix reports whether b can be extended into a valid IPv4 address.
func ipv4Prefix(b []byte) bool {
	parts := 0
	for {
		i := bytes.IndexByte(b, '.')
		last := i < 0
		if last {
			i = len(b)
		}
		parts++
		if parts > 4 {
			return false
		}
		f := b[:i]
		if len(f) == 0 {
			if !last {
				return false
			}
		} else if _, ok := parseOctet(f); !ok {
			return false
		}
		if last {
			return true
		}
		b = b[i+1:]
	}
}

// isIPv6Text reports whether b holds only characters of IPv6 text forms.
func isIPv6Text(b []byte) bool {
	for _, c := range b {
		if ipbytes.Unhex(c) < 0 && c != ':' && c != '.' {
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseV1Port parses a v1 port: decimal, 0-65535, no heading zero.
func parseV1Port(name string, b []byte) (uint16, error) {
	if !isDigits(b) {
		return 0, v1Errorf("%s %q is not a decimal number", name, b)
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, v1Errorf("%s %q has a heading zero", name, b)
	}
	if len(b) > 5 {
		return 0, v1Errorf("%s %q is out of range", name, b)
	}
	v := 0
	for _, c := range b {
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, v1Errorf("%s %q is out of range", name, b)
	}
	return uint16(v), nil
}

// parseV1Addr parses an address of a v1 line: dotted decimal without heading
// zeroes when is6 is false, IPv6 text without a zone when it is true.
func parseV1Addr(b []byte, is6 bool) (netip.Addr, bool) {
	if is6 {
		a, ok := ipbytes.ParseIPv6(b)
		return netip.AddrFrom16(a), ok
	}
	a, ok := ipbytes.ParseIPv4(b)
	return netip.AddrFrom4(a), ok
}

// parseOctet parses 1 to 3 decimal digits without a heading zero, at most 255.
func parseOctet(b []byte) (byte, bool) {
	if len(b) == 0 || len(b) > 3 || !isDigits(b) || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range b {
		v = v*10 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

// AppendV1 appends a v1 header for h.Source and h.Dest to dst and returns
// the extended slice.
//
// IPv4-mapped IPv6 addresses are written as IPv4 and zones are dropped; if
// the source and destination are then of different families, both are
// written as IPv6 (the IPv4 one mapped). When h.Local is set or either
// address is invalid, it appends "PROXY UNKNOWN\r\n". The other fields of h
// have no v1 form and are ignored.
func AppendV1(dst []byte, h Header) []byte {
	src, dest, ok := wireAddrs(h)
	if !ok {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	if src.Addr().Is4() {
		dst = append(dst, "PROXY TCP4 "...)
	} else {
		dst = append(dst, "PROXY TCP6 "...)
	}
	dst = src.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = dest.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(dest.Port()), 10)
	return append(dst, '\r', '\n')
}
