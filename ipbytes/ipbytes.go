// Package ipbytes parses IP addresses from bytes, as net/netip does from
// strings, without allocating: for parsers that read addresses out of a
// request's host or a PROXY protocol line on every connection.
package ipbytes

// ParseIPv6 parses an IPv6 address without a zone, as netip.ParseAddr does
// but from bytes, without allocating. An embedded IPv4 address may end it.
func ParseIPv6(s []byte) (ip [16]byte, ok bool) {
	ellipsis := -1 // where "::" is, in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
	}
	i := 0
	for i < 16 && len(s) > 0 {
		// A group: 1 to 4 hex digits.
		n, c := 0, 0
		for ; c < len(s) && c < 4; c++ {
			d := Unhex(s[c])
			if d < 0 {
				break
			}
			n = n<<4 | d
		}
		if c == 0 {
			return ip, false
		}
		if c < len(s) && s[c] == '.' {
			// The embedded IPv4 address, which must end the address.
			if ellipsis < 0 && i != 12 || i > 12 {
				return ip, false
			}
			v4, ok := ParseIPv4(s)
			if !ok {
				return ip, false
			}
			copy(ip[i:], v4[:])
			i += 4
			s = nil
			break
		}
		ip[i], ip[i+1] = byte(n>>8), byte(n)
		i += 2
		s = s[c:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return ip, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return ip, false
			}
			ellipsis = i
			s = s[1:]
		}
	}
	if len(s) != 0 {
		return ip, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return ip, false
		}
		// Move what follows "::" to the end, zeros in between.
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		for j := ellipsis; j < ellipsis+n; j++ {
			ip[j] = 0
		}
	} else if ellipsis >= 0 {
		// "::" stands for at least one group of zeros.
		return ip, false
	}
	return ip, true
}

// ParseIPv4 parses a dotted-decimal IPv4 address, refusing leading zeros as
// netip.ParseAddr does.
func ParseIPv4(s []byte) (ip [4]byte, ok bool) {
	for k := 0; k < 4; k++ {
		if k > 0 {
			if len(s) == 0 || s[0] != '.' {
				return ip, false
			}
			s = s[1:]
		}
		n, c := 0, 0
		for ; c < len(s) && '0' <= s[c] && s[c] <= '9'; c++ {
			n = n*10 + int(s[c]-'0')
			if n > 255 || c > 0 && s[0] == '0' {
				return ip, false
			}
		}
		if c == 0 {
			return ip, false
		}
		ip[k] = byte(n)
		s = s[c:]
	}
	return ip, len(s) == 0
}

// Unhex returns the value of a hex digit, or -1.
func Unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
