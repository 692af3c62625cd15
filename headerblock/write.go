// Package headerblock writes and reads the HTTP/2 header blocks of lb's
// HTTP/2 server (package h2) and client (package h2pool).
//
// lb writes them, to clients (responses, trailers) and to servers
// (requests, trailers), without a dynamic table, as HAProxy does: each field is a literal without indexing
// (RFC 7541 6.2.2), its name by its index in the static table when the
// table has it, its value as it is (no Huffman coding); a field the static
// table holds whole (":status: 200", ":method: GET") is one indexed byte.
// There is no table to search nor keep, and a field is appended from its
// bytes as they are, without allocating.
//
// A peer that lowers SETTINGS_HEADER_TABLE_SIZE below the size lb's
// encoder last said it uses (4096 until it says otherwise) is owed a
// dynamic table size update (RFC 7541 4.2), which some decoders require
// (nghttp2's). So lb starts each connection's first block with one, to 0
// (AppendTableSizeUpdate): no setting can then be below it.
package headerblock

import (
	"strconv"

	"golang.org/x/net/http2"
)

// A Writer writes the header blocks of one connection; its zero value is
// ready, and the first block it starts begins with the table size update
// (above). Use it under the lock that orders the connection's frames.
type Writer struct {
	buf  []byte
	said bool // the table size update went out
}

// Start returns the storage of the next block, emptied: append its
// fields, then Write it.
func (w *Writer) Start() []byte {
	b := w.buf[:0]
	if !w.said {
		w.said = true
		b = AppendTableSizeUpdate(b)
	}
	return b
}

// Write writes block, which Start began, on stream id as a HEADERS frame
// and as many CONTINUATION frames as the peer's maxFrame needs, end ending
// the stream, and keeps block's storage for the next.
func (w *Writer) Write(fr *http2.Framer, id uint32, block []byte, end bool, maxFrame int) error {
	w.buf = block[:0]
	n := min(len(block), maxFrame)
	err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:n], EndStream: end, EndHeaders: n == len(block)})
	for block = block[n:]; err == nil && len(block) > 0; block = block[n:] {
		n = min(len(block), maxFrame)
		err = fr.WriteContinuation(id, n == len(block), block[:n])
	}
	return err
}

// staticStatuses are the :status values of the static table, at indexes
// 8 to 14 (RFC 7541 Appendix A).
var staticStatuses = [...]int{200, 204, 206, 304, 400, 404, 500}

// AppendStatus appends :status.
func AppendStatus(dst []byte, status int) []byte {
	for i, s := range staticStatuses {
		if s == status {
			return append(dst, 0x80|byte(8+i))
		}
	}
	dst = appendInt(dst, 0x00, 4, 8) // the name of :status
	if status >= 100 && status <= 999 {
		return append(append(dst, 3), byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10))
	}
	return appendString(dst, strconv.Itoa(status))
}

// AppendField appends a field whose name is in lower case: a regular one,
// or a request's pseudo-header (":method", ":scheme", ":authority",
// ":path").
func AppendField[N, V string | []byte](dst []byte, name N, value V) []byte {
	if len(name) > 0 && name[0] == ':' {
		if i := staticPair(string(name), string(value)); i > 0 {
			return append(dst, 0x80|byte(i))
		}
	}
	if i := staticName(string(name)); i > 0 {
		dst = appendInt(dst, 0x00, 4, uint64(i))
	} else {
		dst = append(dst, 0x00)
		dst = appendString(dst, name)
	}
	return appendString(dst, value)
}

// AppendTableSizeUpdate appends a dynamic table size update to 0.
func AppendTableSizeUpdate(dst []byte) []byte { return appendInt(dst, 0x20, 5, 0) }

// staticPair returns the index of the static table's entry of a
// pseudo-header with its value, or 0.
func staticPair(name, value string) int {
	switch name {
	case ":method":
		switch value {
		case "GET":
			return 2
		case "POST":
			return 3
		}
	case ":path":
		switch value {
		case "/":
			return 4
		case "/index.html":
			return 5
		}
	case ":scheme":
		switch value {
		case "http":
			return 6
		case "https":
			return 7
		}
	}
	return 0
}

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
// (RFC 7541 Appendix A) named name, or 0.
func staticName(name string) int {
	switch name {
	case ":authority":
		return 1
	case ":method":
		return 2
	case ":path":
		return 4
	case ":scheme":
		return 6
	case ":status":
		return 8
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
