package h1

import (
	"bytes"
	"unsafe"
)

// Field is one header field. Name and Value alias storage owned by the
// Head; they stay valid until the Head is reset or re-read. Their capacity
// is capped at their length, so appending to them copies rather than
// writing over the Head's storage.
type Field struct{ Name, Value []byte }

// Head is a message's header fields in the order received (names keep
// their case). Set and Add copy what they are given into storage the Head
// owns and reuses, so that, once grown, they do not allocate. The zero
// value is an empty Head ready to use.
type Head struct {
	// Fields are the header fields, in order.
	Fields []Field

	// buf is the arena: the raw head lines of the message read into the
	// Head, then the names and values of Set and Add. It is written in
	// chunks: a line or a field that does not fit in the chunk buf is in
	// goes into a new one (newChunk), and the old chunk stays, unchanged,
	// as long as slices into it do. Reading never copies what it read
	// before to a bigger array, so a head's bytes are held once; and no
	// chunk is written over until Reset, so slices into the arena stay
	// valid.
	buf []byte
	// used is the bytes written to the chunks before buf's since Reset;
	// want is the size of the arena of the last message that took
	// several chunks, which the second chunk of the next one is made
	// large enough to hold: from then on, a message like it fits in the
	// chunk kept for the next.
	used, want int
	// conn is scratch for RemoveHopByHop: the values of Connection.
	conn [][]byte
}

// Reset empties h, keeping its storage for reuse. Slices from h (Fields,
// names, values) must not be used afterwards.
func (h *Head) Reset() {
	clear(h.Fields) // drop references to storage no longer used
	h.Fields = h.Fields[:0]
	if h.used > 0 { // the message took several chunks
		h.want, h.used = h.used+len(h.buf), 0
	}
	h.buf = h.buf[:0]
}

// Trim is Reset, and also lets go of h's storage where it grew beyond max
// bytes (the arena's last chunk, the fields), so that a Head kept for
// reuse does not hold on to the memory of the largest message it read.
func (h *Head) Trim(max int) {
	h.Reset()
	if cap(h.buf) > max || h.want > max {
		h.buf, h.want = nil, 0
	}
	if cap(h.Fields)*int(unsafe.Sizeof(Field{})) > max {
		h.Fields = nil
	}
	if cap(h.conn)*int(unsafe.Sizeof([]byte(nil))) > max {
		h.conn = nil
	}
}

// Sizes of the arena's chunks (see Head.buf).
const (
	// minChunk is the smallest chunk.
	minChunk = 512
	// chunkAhead bounds the room a new chunk makes for the bytes that
	// have arrived behind the line being read: they may be more of the
	// head, or a body.
	chunkAhead = 4096
	// chunkDouble: while the arena holds less than this, a new chunk is
	// at least twice the last, up to this size, so that the chunk kept
	// for the next message (the last) holds a small message whole: a
	// connection whose heads are small reads them without allocating.
	// Larger messages count on want.
	chunkDouble = 4096
)

// newChunk moves h.buf to a new chunk with room for n bytes after its last
// keep bytes (the start of a line being read), which it copies there. The
// size fits what has arrived: n, plus ahead bytes already buffered behind
// them, up to chunkAhead; it doubles a line that is still growing, so that
// a long line is copied a bounded number of times. The second chunk of a
// message is at least as large as the last message that took several
// chunks (want).
func (h *Head) newChunk(keep, n, ahead int) {
	size := max(minChunk, keep+n+min(ahead, chunkAhead), 2*keep)
	if h.used+len(h.buf) < chunkDouble {
		size = max(size, min(2*cap(h.buf), chunkDouble))
	}
	if h.used == 0 && len(h.buf) > keep {
		size = max(size, h.want)
	}
	h.used += len(h.buf) - keep
	b := make([]byte, keep, size)
	copy(b, h.buf[len(h.buf)-keep:])
	h.buf = b
}

// Get returns the value of the first field named name, compared ASCII
// case-insensitively, and whether there is one.
func (h *Head) Get(name string) ([]byte, bool) {
	if i := index(h, name, 0); i >= 0 {
		return h.Fields[i].Value, true
	}
	return nil, false
}

// Has reports whether some field is named name (case-insensitively).
func (h *Head) Has(name string) bool { return index(h, name, 0) >= 0 }

// Index returns the index in Fields of the first field named name
// (case-insensitively) at or after from, or -1 if there is none. Loop over
// the fields of one name with
//
//	for i := h.Index(name, 0); i >= 0; i = h.Index(name, i+1) { ... }
func (h *Head) Index(name string, from int) int { return index(h, name, from) }

// index is Index for a name of either type.
func index[S string | []byte](h *Head, name S, from int) int {
	for i := max(from, 0); i < len(h.Fields); i++ {
		if equalFold(h.Fields[i].Name, name) {
			return i
		}
	}
	return -1
}

// Set deletes every field named name, then adds one with that name and
// value at the end. It copies name and value: value may alias the Head's
// own storage (the value of another field, say).
func (h *Head) Set(name string, value []byte) {
	h.Del(name)
	h.Add(name, value)
}

// Add appends a field named name with value. It copies name and value:
// value may alias the Head's own storage.
func (h *Head) Add(name string, value []byte) { add(h, name, value) }

// add is Add for a name and a value of either type.
func add[N, V string | []byte](h *Head, name N, value V) {
	// A chunk is never written over, so a value that aliases buf is
	// still intact while it is copied, even into a new chunk.
	if n := len(name) + len(value); n > cap(h.buf)-len(h.buf) {
		h.newChunk(0, n, 0)
	}
	start := len(h.buf)
	h.buf = append(h.buf, name...)
	mid := len(h.buf)
	h.buf = append(h.buf, value...)
	h.Fields = append(h.Fields, Field{
		Name:  h.buf[start:mid:mid],
		Value: clip(h.buf[mid:]),
	})
}

// Del deletes every field named name (case-insensitively), keeping the
// order of the others.
func (h *Head) Del(name string) { del(h, name) }

// del is Del for a name of either type.
func del[S string | []byte](h *Head, name S) {
	i := index(h, name, 0)
	if i < 0 {
		return
	}
	j := i
	for ; i < len(h.Fields); i++ {
		if !equalFold(h.Fields[i].Name, name) {
			h.Fields[j] = h.Fields[i]
			j++
		}
	}
	clear(h.Fields[j:])
	h.Fields = h.Fields[:j]
}

// HasToken reports whether some field named name holds token in its
// comma-separated list, both compared case-insensitively, with OWS around
// the elements ignored: for "Connection: keep-alive, Upgrade",
// HasToken("connection", "upgrade") is true.
func (h *Head) HasToken(name, token string) bool {
	for i := index(h, name, 0); i >= 0; i = index(h, name, i+1) {
		if hasToken(h.Fields[i].Value, token) {
			return true
		}
	}
	return false
}

// hopByHop are the fields that concern one connection only, which
// RemoveHopByHop removes (RFC 9110 7.6.1, RFC 9112 7.1 and 9.6). Trailer
// is not one of them: it announces end-to-end trailer fields (RFC 9110
// 6.6.2), and goes on with them.
var hopByHop = [...]string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"TE",
	"Transfer-Encoding",
	"Upgrade",
}

// RemoveHopByHop removes the fields a proxy must not forward (RFC 9110
// 7.6.1): Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding and Upgrade. It keeps
// Proxy-Authorization and Trailer. As a guard against request smuggling and
// misrouting, it keeps Content-Length and Host even when Connection names
// them: they are end-to-end, and without them the next hop would frame or
// route the message differently.
func (h *Head) RemoveHopByHop() {
	h.conn = h.conn[:0]
	for i := index(h, "Connection", 0); i >= 0; i = index(h, "Connection", i+1) {
		h.conn = append(h.conn, h.Fields[i].Value)
	}
	j := 0
	for _, f := range h.Fields {
		if !h.isHopByHop(f.Name) {
			h.Fields[j] = f
			j++
		}
	}
	clear(h.Fields[j:])
	h.Fields = h.Fields[:j]
	clear(h.conn)
	h.conn = h.conn[:0]
}

// isHopByHop reports whether RemoveHopByHop removes the field named name,
// h.conn holding the values of Connection.
func (h *Head) isHopByHop(name []byte) bool {
	for _, s := range hopByHop {
		if equalFold(name, s) {
			return true
		}
	}
	if equalFold(name, "Content-Length") || equalFold(name, "Host") {
		return false
	}
	for _, list := range h.conn {
		for elem, rest, ok := nextElement(list); ok; elem, rest, ok = nextElement(rest) {
			if equalFold(elem, name) {
				return true
			}
		}
	}
	return false
}

// notTrailers are the fields a proxy does not forward in a trailer
// section, though they came in one: RFC 9110 6.5.1 forbids fields that
// frame the message (Content-Length, Transfer-Encoding, Trailer), route
// it (Host), manage the connection (Connection, Keep-Alive,
// Proxy-Connection, TE, Upgrade), modify the request or control the
// response (Cache-Control, Expires, Content-Type, Content-Encoding,
// Content-Range), authenticate (Authorization, Proxy-Authorization) or
// carry state (Cookie, Set-Cookie) as trailers: a recipient that merged
// them into the head would act on fields the sender could not make it act
// on in the head.
var notTrailers = [...]string{
	"Content-Length",
	"Transfer-Encoding",
	"Trailer",
	"Host",
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"TE",
	"Upgrade",
	"Content-Type",
	"Content-Encoding",
	"Content-Range",
	"Cache-Control",
	"Expires",
	"Authorization",
	"Proxy-Authorization",
	"Set-Cookie",
	"Cookie",
}

// TrailerAllowed reports whether a field named name may be forwarded as
// a trailer field: whether it is not one of notTrailers (compared
// case-insensitively), nor empty.
func TrailerAllowed[S string | []byte](name S) bool {
	if len(name) == 0 {
		return false
	}
	for _, s := range notTrailers {
		if equalFold(name, s) {
			return false
		}
	}
	return true
}

// RemoveDisallowedTrailers removes from h, a trailer section, the fields
// that TrailerAllowed refuses, and those that ChunkedWriter.CloseTrailer
// would refuse (a name that is not a token, a control character in a
// value), keeping the order of the others.
func (h *Head) RemoveDisallowedTrailers() {
	j := 0
	for _, f := range h.Fields {
		if TrailerAllowed(f.Name) && isToken(f.Name) && validValue(f.Value) {
			h.Fields[j] = f
			j++
		}
	}
	clear(h.Fields[j:])
	h.Fields = h.Fields[:j]
}

// CleanTrailerHeader removes from the Trailer fields of h, which announce
// the trailer fields to come, the names that TrailerAllowed refuses (and
// empty elements). When it changes anything, the names left go in one
// Trailer field at the end of h, or none when no name is left. A head
// without Trailer, or whose Trailer fields name only allowed fields, is
// left as it is.
func (h *Head) CleanTrailerHeader() {
	first := index(h, "Trailer", 0)
	if first < 0 {
		return
	}
	clean := true
	for i := first; i >= 0 && clean; i = index(h, "Trailer", i+1) {
		for elem, rest, ok := nextElement(h.Fields[i].Value); ok; elem, rest, ok = nextElement(rest) {
			if !TrailerAllowed(elem) {
				clean = false
				break
			}
		}
	}
	if clean {
		return
	}
	// The list is built at the end of buf: appending never writes over
	// the values it reads (see Add).
	start := len(h.buf)
	for i := first; i >= 0; i = index(h, "Trailer", i+1) {
		for elem, rest, ok := nextElement(h.Fields[i].Value); ok; elem, rest, ok = nextElement(rest) {
			if TrailerAllowed(elem) {
				if len(h.buf) > start {
					h.buf = append(h.buf, ", "...)
				}
				h.buf = append(h.buf, elem...)
			}
		}
	}
	list := clip(h.buf[start:])
	h.Del("Trailer")
	if len(list) > 0 {
		h.Add("Trailer", list)
	}
}

// Cookie returns the value of the first cookie called name in the Cookie
// fields (quotes around it removed), and whether there is one.
func (h *Head) Cookie(name string) ([]byte, bool) {
	for i := h.Index("Cookie", 0); i >= 0; i = h.Index("Cookie", i+1) {
		if val, ok := CookieIn(h.Fields[i].Value, name); ok {
			return val, true
		}
	}
	return nil, false
}

// CookieIn returns the value of the first cookie called name in v, the
// value of one Cookie field (quotes around it removed), and whether there
// is one.
func CookieIn(v []byte, name string) ([]byte, bool) {
	for len(v) > 0 {
		var pair []byte
		if j := bytes.IndexByte(v, ';'); j >= 0 {
			pair, v = v[:j], v[j+1:]
		} else {
			pair, v = v, nil
		}
		pair = bytes.TrimSpace(pair)
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			val := pair[len(name)+1:]
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val, true
		}
	}
	return nil, false
}
