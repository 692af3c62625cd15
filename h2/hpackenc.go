package h2

// The header blocks lb writes (response heads, interim responses,
// trailers) use no dynamic table, as HAProxy's do: each field is a literal
// without indexing (RFC 7541 6.2.2), its name by its index in the static
// table when the table has it, its value as it is (no Huffman coding); a
// :status of the static table is one indexed byte. There is no table to
// search nor keep, and a field is appended from its bytes as they are. A
// client that lowers SETTINGS_HEADER_TABLE_SIZE gets the dynamic table
// size update RFC 7541 4.2 asks for, to 0, at the start of the next block.

// appendStatus appends :status.
func appendStatus(dst []byte, status int) []byte {
	switch status {
	case 200:
		return append(dst, 0x80|8)
	case 204:
		return append(dst, 0x80|9)
	case 206:
		return append(dst, 0x80|10)
	case 304:
		return append(dst, 0x80|11)
	case 400:
		return append(dst, 0x80|12)
	case 404:
		return append(dst, 0x80|13)
	case 500:
		return append(dst, 0x80|14)
	}
	dst = appendInt(dst, 0x00, 4, 8) // the name of :status
	return appendString(dst, statusString(status))
}

// appendField appends a field whose name is in lower case.
func appendField(dst, name, value []byte) []byte {
	if i := staticName(name); i > 0 {
		dst = appendInt(dst, 0x00, 4, uint64(i))
	} else {
		dst = append(dst, 0x00)
		dst = appendString(dst, name)
	}
	return appendString(dst, value)
}

// appendTableSizeUpdate appends a dynamic table size update to 0.
func appendTableSizeUpdate(dst []byte) []byte { return appendInt(dst, 0x20, 5, 0) }

// appendString appends a string literal, not Huffman-coded.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = appendInt(dst, 0x00, 7, uint64(len(s)))
	return append(dst, s...)
}

// appendInt appends i as an integer with an n-bit prefix (RFC 7541 5.1),
// the prefix's byte starting with first's high bits.
func appendInt(dst []byte, first byte, n uint, i uint64) []byte {
	k := uint64(1)<<n - 1
	if i < k {
		return append(dst, first|byte(i))
	}
	dst = append(dst, first|byte(k))
	for i -= k; i >= 0x80; i >>= 7 {
		dst = append(dst, byte(i&0x7f|0x80))
	}
	return append(dst, byte(i))
}

// staticName returns the index of the first entry of the static table
// (RFC 7541 Appendix A) named name, or 0; pseudo-headers aside.
func staticName(name []byte) int {
	switch string(name) {
	case "accept-charset":
		return 15
	case "accept-encoding":
		return 16
	case "accept-language":
		return 17
	case "accept-ranges":
		return 18
	case "accept":
		return 19
	case "access-control-allow-origin":
		return 20
	case "age":
		return 21
	case "allow":
		return 22
	case "authorization":
		return 23
	case "cache-control":
		return 24
	case "content-disposition":
		return 25
	case "content-encoding":
		return 26
	case "content-language":
		return 27
	case "content-length":
		return 28
	case "content-location":
		return 29
	case "content-range":
		return 30
	case "content-type":
		return 31
	case "cookie":
		return 32
	case "date":
		return 33
	case "etag":
		return 34
	case "expect":
		return 35
	case "expires":
		return 36
	case "from":
		return 37
	case "host":
		return 38
	case "if-match":
		return 39
	case "if-modified-since":
		return 40
	case "if-none-match":
		return 41
	case "if-range":
		return 42
	case "if-unmodified-since":
		return 43
	case "last-modified":
		return 44
	case "link":
		return 45
	case "location":
		return 46
	case "max-forwards":
		return 47
	case "proxy-authenticate":
		return 48
	case "proxy-authorization":
		return 49
	case "range":
		return 50
	case "referer":
		return 51
	case "refresh":
		return 52
	case "retry-after":
		return 53
	case "server":
		return 54
	case "set-cookie":
		return 55
	case "strict-transport-security":
		return 56
	case "transfer-encoding":
		return 57
	case "user-agent":
		return 58
	case "vary":
		return 59
	case "via":
		return 60
	case "www-authenticate":
		return 61
	}
	return 0
}
