// Package tlshello reads the server name (SNI) a TLS client asks for from its
// ClientHello, without terminating TLS, so that a TCP-mode proxy can route a
// TLS connection by name and then pass its bytes through untouched (what
// HAProxy calls req.ssl_sni).
//
// [Parse] decodes the ClientHello at the start of a byte slice: one TLS
// handshake message carried by one or more TLS records of type 22. It returns
// [ErrIncomplete] when the bytes are a valid beginning that needs more bytes,
// [ErrNotTLS] when they do not begin with a ClientHello at all, and an
// [*Error] naming what is wrong with a malformed one.
//
// [Peek] waits on a connected non-blocking TCP socket, through its
// syscall.RawConn, until a whole ClientHello has arrived, and returns its
// server name without consuming anything: every byte stays in the socket for
// whoever reads or splices the connection next.
package tlshello

import (
	"errors"
	"fmt"
)

// MaxHello is the longest ClientHello Parse accepts: 16384 bytes of handshake
// message, its 4-byte header included (the largest plaintext a single TLS
// record may carry). Its TLS records may add at most 64 bytes of record
// headers: a hello spread over more records than that is refused too.
const MaxHello = 16384

// maxWire bounds the bytes, record headers included, that a ClientHello may
// occupy on the wire: MaxHello and 64 bytes of record headers (12 headers
// beyond the first at the largest hello, more for shorter ones).
const maxWire = MaxHello + 64

// maxRecord is the largest payload of a TLS plaintext record (2^14).
const maxRecord = 16384

const (
	recordHandshake   = 22
	typeClientHello   = 1
	extServerName     = 0
	nameTypeHost      = 0
	recordHeaderLen   = 5
	handshakeHeadLen  = 4
	maxSessionID      = 32
	maxServerNameLen  = 255
	clientRandomLen   = 32
	clientVersionLen  = 2
	extensionHeadLen  = 4
	serverNameHeadLen = 3
)

var (
	// ErrIncomplete is returned by Parse when b is a valid beginning of a TLS
	// ClientHello but too short to hold all of it.
	ErrIncomplete = errors.New("tlshello: incomplete ClientHello")

	// ErrNotTLS is returned when b does not begin with a TLS handshake record
	// holding a ClientHello.
	ErrNotTLS = errors.New("tlshello: not a TLS ClientHello")
)

// Error is a malformed ClientHello: the bytes began like one.
type Error struct{ Msg string }

func (e *Error) Error() string { return "tlshello: " + e.Msg }

func errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// Parse reads the ClientHello at the start of b and returns the server name
// it asks for: the first host_name entry of its server_name extension,
// lower-cased (ASCII), without the trailing dot of a fully qualified name. It returns "" and no error for
// a well-formed ClientHello without one.
//
// The ClientHello is one handshake message of type client_hello in TLS
// records of type 22 (handshake) whose version has major number 3; the
// message may be fragmented across several records, which Parse reassembles.
// Parse checks the structure of the message (session_id of at most 32 bytes,
// a non-empty even-length cipher_suites list, at least one compression
// method, and extensions that exactly fill the rest of the message when
// present) and the name lightly: 1 to 255 bytes, each in 0x21..0x7e. Bytes
// after the ClientHello are ignored.
//
// It returns ErrIncomplete when b is a strict prefix of a ClientHello (any
// prefix of a valid one is), ErrNotTLS when b does not begin with a handshake
// record or the first handshake message is not a ClientHello, and an *Error
// for a malformed ClientHello, one longer than MaxHello, or one whose records
// take more than MaxHello+64 bytes. Parse reports a malformation as soon as b
// shows it, without waiting for the rest.
//
// Parse allocates only the returned name.
func Parse(b []byte) (sni string, err error) {
	sni, _, err = parse(b)
	return sni, err
}

// parse is Parse that also returns the length of the prefix of b the
// ClientHello occupies, its records' headers included (and no bytes of its
// last record that follow it).
func parse(b []byte) (sni string, n int, err error) {
	r := reader{b: b}
	typ, err := r.u8()
	if err != nil {
		return "", 0, err
	}
	if typ != typeClientHello {
		return "", 0, ErrNotTLS
	}
	length, err := r.u24()
	if err != nil {
		return "", 0, err
	}
	if handshakeHeadLen+length > MaxHello {
		return "", 0, errorf("ClientHello longer than %d bytes: %d", MaxHello, handshakeHeadLen+length)
	}
	end := r.off + length

	// client_version and random.
	if err := r.field(end, clientVersionLen+clientRandomLen, "client_version and random", "ClientHello"); err != nil {
		return "", 0, err
	}
	if err := r.skip(clientVersionLen + clientRandomLen); err != nil {
		return "", 0, err
	}

	// session_id<0..32>
	if err := r.field(end, 1, "session_id length", "ClientHello"); err != nil {
		return "", 0, err
	}
	sid, err := r.u8()
	if err != nil {
		return "", 0, err
	}
	if sid > maxSessionID {
		return "", 0, errorf("session_id of %d bytes, longer than %d", sid, maxSessionID)
	}
	if err := r.vector(end, sid, "session_id", "ClientHello"); err != nil {
		return "", 0, err
	}
	if err := r.skip(sid); err != nil {
		return "", 0, err
	}

	// cipher_suites<2..2^16-2>
	if err := r.field(end, 2, "cipher_suites length", "ClientHello"); err != nil {
		return "", 0, err
	}
	suites, err := r.u16()
	if err != nil {
		return "", 0, err
	}
	if suites < 2 || suites%2 != 0 {
		return "", 0, errorf("cipher_suites of %d bytes: not a positive even length", suites)
	}
	if err := r.vector(end, suites, "cipher_suites", "ClientHello"); err != nil {
		return "", 0, err
	}
	if err := r.skip(suites); err != nil {
		return "", 0, err
	}

	// compression_methods<1..2^8-1>
	if err := r.field(end, 1, "compression_methods length", "ClientHello"); err != nil {
		return "", 0, err
	}
	comps, err := r.u8()
	if err != nil {
		return "", 0, err
	}
	if comps < 1 {
		return "", 0, errorf("no compression_methods")
	}
	if err := r.vector(end, comps, "compression_methods", "ClientHello"); err != nil {
		return "", 0, err
	}
	if err := r.skip(comps); err != nil {
		return "", 0, err
	}

	if r.off == end {
		// No extensions (a hello from SSL 3.0 or an old client).
		return "", r.pos, nil
	}

	// extensions<8..2^16-1>
	if end-r.off < 2 {
		return "", 0, errorf("%d stray byte after compression_methods", end-r.off)
	}
	extLen, err := r.u16()
	if err != nil {
		return "", 0, err
	}
	if r.off+extLen != end {
		return "", 0, errorf("extensions of %d bytes, but %d bytes remain in the ClientHello", extLen, end-r.off)
	}

	var (
		name    [maxServerNameLen]byte
		nameLen int
		seenSNI bool
	)
	for r.off < end {
		if err := r.field(end, extensionHeadLen, "extension header", "extensions"); err != nil {
			return "", 0, err
		}
		typ, err := r.u16()
		if err != nil {
			return "", 0, err
		}
		size, err := r.u16()
		if err != nil {
			return "", 0, err
		}
		if r.off+size > end {
			return "", 0, errorf("extension %d of %d bytes overruns the extensions by %d bytes", typ, size, r.off+size-end)
		}
		if typ != extServerName {
			if err := r.skip(size); err != nil {
				return "", 0, err
			}
			continue
		}
		if seenSNI {
			return "", 0, errorf("two server_name extensions")
		}
		seenSNI = true
		if nameLen, err = r.serverName(r.off+size, &name); err != nil {
			return "", 0, err
		}
	}
	if nameLen == 0 {
		return "", r.pos, nil
	}
	return string(name[:nameLen]), r.pos, nil
}

// serverName reads the body of a server_name extension that ends at logical
// offset end, copying the first host_name into name, lower-cased and without
// a trailing dot, and returning its length (0 when there is no host_name).
func (r *reader) serverName(end int, name *[maxServerNameLen]byte) (int, error) {
	if end == r.off {
		return 0, errorf("empty server_name extension")
	}
	if err := r.field(end, 2, "server_name list length", "server_name extension"); err != nil {
		return 0, err
	}
	listLen, err := r.u16()
	if err != nil {
		return 0, err
	}
	switch {
	case listLen == 0:
		return 0, errorf("empty server_name list")
	case r.off+listLen > end:
		return 0, errorf("server_name list of %d bytes overruns its %d-byte extension", listLen, end-r.off+2)
	case r.off+listLen < end:
		return 0, errorf("%d stray bytes after the server_name list", end-r.off-listLen)
	}
	n := 0
	found := false
	for r.off < end {
		if err := r.field(end, serverNameHeadLen, "server_name entry header", "server_name list"); err != nil {
			return 0, err
		}
		nameType, err := r.u8()
		if err != nil {
			return 0, err
		}
		size, err := r.u16()
		if err != nil {
			return 0, err
		}
		if r.off+size > end {
			return 0, errorf("server_name entry of %d bytes overruns the list by %d bytes", size, r.off+size-end)
		}
		if nameType != nameTypeHost || found {
			if err := r.skip(size); err != nil {
				return 0, err
			}
			continue
		}
		found = true
		if size == 0 || size > maxServerNameLen {
			return 0, errorf("host_name of %d bytes, not 1 to %d", size, maxServerNameLen)
		}
		for n < size {
			c, err := r.chunk(size - n)
			if err != nil {
				return 0, err
			}
			for _, ch := range c {
				switch {
				case ch < 0x21 || ch > 0x7e:
					return 0, errorf("host_name with byte %#02x at offset %d", ch, n)
				case 'A' <= ch && ch <= 'Z':
					ch += 'a' - 'A'
				}
				name[n] = ch
				n++
			}
		}
		if name[n-1] == '.' {
			// A fully qualified name: drop the root's dot, once.
			n--
			switch {
			case n == 0:
				return 0, errorf(`host_name "."`)
			case name[n-1] == '.':
				return 0, errorf(`host_name ending with ".."`)
			}
		}
	}
	return n, nil
}

// reader walks the handshake stream carried by the TLS records at the start
// of b: a logical sequence of bytes made of the records' payloads.
type reader struct {
	b      []byte
	pos    int // offset in b of the next byte of the handshake stream
	recEnd int // offset in b where the current record's payload ends (may exceed len(b))
	off    int // logical offset of the next byte in the handshake stream
}

// field returns an *Error when fewer than n bytes, a fixed-size field, remain
// before the logical offset end, which bounds the structure holding it.
func (r *reader) field(end, n int, what, in string) error {
	if r.off+n > end {
		return errorf("%s too short for its %s: %d of %d bytes", in, what, end-r.off, n)
	}
	return nil
}

// vector returns an *Error when fewer than n bytes, the length a vector
// declares, remain before the logical offset end, which bounds the structure
// holding it.
func (r *reader) vector(end, n int, what, in string) error {
	if r.off+n > end {
		return errorf("%s of %d bytes overruns the %s by %d bytes", what, n, in, r.off+n-end)
	}
	return nil
}

// nextRecord starts the record whose header is at r.pos.
func (r *reader) nextRecord() error {
	p := r.pos
	b := r.b
	first := p == 0
	if p+recordHeaderLen >= maxWire {
		return errorf("ClientHello spread over too many records: more than %d bytes with its record headers", maxWire)
	}
	if p >= len(b) {
		return ErrIncomplete
	}
	if b[p] != recordHandshake {
		if first {
			return ErrNotTLS
		}
		return errorf("record of type %d inside the ClientHello", b[p])
	}
	if p+1 >= len(b) {
		return ErrIncomplete
	}
	if b[p+1] != 3 {
		if first {
			return ErrNotTLS
		}
		return errorf("record version %d.x inside the ClientHello", b[p+1])
	}
	if p+recordHeaderLen > len(b) {
		return ErrIncomplete
	}
	n := int(b[p+3])<<8 | int(b[p+4])
	switch {
	case n == 0:
		return errorf("empty handshake record")
	case n > maxRecord:
		return errorf("record of %d bytes, longer than %d", n, maxRecord)
	}
	r.pos = p + recordHeaderLen
	r.recEnd = r.pos + n
	return nil
}

// chunk returns the next contiguous run of at most n (> 0) bytes of the
// handshake stream and advances past it.
func (r *reader) chunk(n int) ([]byte, error) {
	if r.pos == r.recEnd {
		if err := r.nextRecord(); err != nil {
			return nil, err
		}
	}
	if r.pos >= maxWire {
		return nil, errorf("ClientHello spread over too many records: more than %d bytes with its record headers", maxWire)
	}
	if r.pos >= len(r.b) {
		return nil, ErrIncomplete
	}
	end := min(maxWire, r.recEnd, len(r.b), r.pos+n)
	c := r.b[r.pos:end]
	r.off += end - r.pos
	r.pos = end
	return c, nil
}

func (r *reader) skip(n int) error {
	for n > 0 {
		c, err := r.chunk(n)
		if err != nil {
			return err
		}
		n -= len(c)
	}
	return nil
}

func (r *reader) u8() (int, error) {
	c, err := r.chunk(1)
	if err != nil {
		return 0, err
	}
	return int(c[0]), nil
}

func (r *reader) u16() (int, error) {
	hi, err := r.u8()
	if err != nil {
		return 0, err
	}
	lo, err := r.u8()
	if err != nil {
		return 0, err
	}
	return hi<<8 | lo, nil
}

func (r *reader) u24() (int, error) {
	hi, err := r.u8()
	if err != nil {
		return 0, err
	}
	lo, err := r.u16()
	if err != nil {
		return 0, err
	}
	return hi<<16 | lo, nil
}
