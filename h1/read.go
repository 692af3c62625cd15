package h1

import (
	"bufio"
	"bytes"
	"io"
	"math"
)

// Defaults of Limits.
const (
	// DefaultMaxHeaderBytes is the default of Limits.MaxHeaderBytes.
	DefaultMaxHeaderBytes = 16384
	// DefaultMaxHeaders is the default of Limits.MaxHeaders.
	DefaultMaxHeaders = 100
)

// Limits bound a message head. Zero fields take the defaults.
type Limits struct {
	// MaxHeaderBytes bounds the start line plus header fields, in bytes,
	// line ends and the empty line that ends the head included; default
	// DefaultMaxHeaderBytes. Empty lines before a request line do not
	// count. For a chunked body it bounds the trailer section alike.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header fields (or trailer fields);
	// default DefaultMaxHeaders.
	MaxHeaders int
}

// withDefaults returns l with the defaults in place of zero (or negative)
// fields.
func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// readHead reads a message head into h: the start line, which parse
// parses, then the header fields, noting in f what framing needs.
// tooLong and request are as for readStartLine.
func (h *Head) readHead(br *bufio.Reader, lim Limits, tooLong int, request bool, parse func([]byte) error, f *facts) error {
	lim = lim.withDefaults()
	line, used, err := h.readStartLine(br, lim, tooLong, request)
	if err != nil {
		return err
	}
	if err := parse(line); err != nil {
		return err
	}
	return h.readFields(br, lim, used, f)
}

// maxEmptyLines bounds the empty lines skipped before a start line
// (RFC 9112 2.2).
const maxEmptyLines = 8

// readLine appends the next line from br, line end included, to h.buf and
// returns it without its line end (LF, or CRLF), and the number of bytes
// it took. A line may end with a bare LF; a CR anywhere else stays in the
// line, for the caller to reject. A line longer than budget is
// errTooLong; a line cut by the end of input returns its length so far
// with io.EOF; other errors are br's.
//
// A line that does not fit in h.buf's chunk goes whole into a new one
// (see Head.buf), sized for what br already holds: the arena grows only
// as bytes arrive.
func (h *Head) readLine(br *bufio.Reader, budget int) ([]byte, int, error) {
	start := len(h.buf)
	for {
		frag, err := br.ReadSlice('\n')
		if len(h.buf)-start+len(frag) > budget {
			return nil, 0, errTooLong
		}
		if len(frag) > cap(h.buf)-len(h.buf) {
			h.newChunk(len(h.buf)-start, len(frag), br.Buffered())
			start = 0
		}
		h.buf = append(h.buf, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, len(h.buf) - start, err
		}
	}
	n := len(h.buf) - start
	line := h.buf[start : len(h.buf)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return clip(line), n, nil
}

// readStartLine skips empty lines, then reads the start line into h.buf.
// It returns the line and the bytes it took; tooLong is the status of a
// line over lim.MaxHeaderBytes. For a request line (request true), it
// fails as soon as what has arrived cannot start with a method, rather than
// wait for the end of a line that may never come (a TLS handshake, say).
func (h *Head) readStartLine(br *bufio.Reader, lim Limits, tooLong int, request bool) ([]byte, int, error) {
	for empty := 0; ; empty++ {
		if request {
			if err := checkMethodStart(br); err != nil {
				return nil, 0, err
			}
		}
		line, n, err := h.readLine(br, lim.MaxHeaderBytes)
		switch {
		case err == errTooLong:
			return nil, 0, errorf(tooLong, "start line longer than %d bytes", lim.MaxHeaderBytes)
		case err == io.EOF && n == 0:
			return nil, 0, io.EOF
		case err == io.EOF:
			return nil, 0, io.ErrUnexpectedEOF
		case err != nil:
			return nil, 0, err
		case len(line) > 0:
			return line, n, nil
		case empty == maxEmptyLines:
			return nil, 0, errorf(400, "more than %d empty lines before the start line", maxEmptyLines)
		}
		h.buf = h.buf[:0]
	}
}

// checkMethodStart waits for the first byte of a line, then checks that
// the bytes at hand up to the first SP, CR or LF are a method's.
func checkMethodStart(br *bufio.Reader) error {
	if _, err := br.Peek(1); err != nil {
		return err // io.EOF: no byte of a request has come
	}
	b, _ := br.Peek(br.Buffered())
	for _, c := range b {
		if c == ' ' || c == '\r' || c == '\n' {
			break
		}
		if charClass[c]&classToken == 0 {
			return errorf(400, "invalid character %q in method", c)
		}
	}
	return nil
}

// fieldKind tells the fields ReadRequest and ReadResponse look into.
type fieldKind uint8

const (
	kindOther fieldKind = iota
	kindContentLength
	kindTransferEncoding
	kindHost
	kindConnection
	kindUpgrade
	kindExpect
)

// kindOf returns the kind of a field named name.
func kindOf(name []byte) fieldKind {
	switch len(name) {
	case 4:
		if equalFold(name, "Host") {
			return kindHost
		}
	case 6:
		if equalFold(name, "Expect") {
			return kindExpect
		}
	case 7:
		if equalFold(name, "Upgrade") {
			return kindUpgrade
		}
	case 10:
		if equalFold(name, "Connection") {
			return kindConnection
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return kindContentLength
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return kindTransferEncoding
		}
	}
	return kindOther
}

// facts are what readFields learns of the fields that matter to framing
// and connection management.
type facts struct {
	nCL, nTE, nHost int
	cl, host        int // index of the first Content-Length, Host field
	// Connection options.
	close, keepAlive, upgradeOption bool
	upgrade                         bool // an Upgrade field
	expect100                       bool // Expect: 100-continue
}

// note records field i, named name, of kind k.
func (f *facts) note(i int, k fieldKind, value []byte) {
	switch k {
	case kindContentLength:
		if f.nCL == 0 {
			f.cl = i
		}
		f.nCL++
	case kindTransferEncoding:
		f.nTE++
	case kindHost:
		if f.nHost == 0 {
			f.host = i
		}
		f.nHost++
	case kindConnection:
		for elem, rest, ok := nextElement(value); ok; elem, rest, ok = nextElement(rest) {
			switch {
			case equalFold(elem, "close"):
				f.close = true
			case equalFold(elem, "keep-alive"):
				f.keepAlive = true
			case equalFold(elem, "upgrade"):
				f.upgradeOption = true
			}
		}
	case kindUpgrade:
		f.upgrade = true
	case kindExpect:
		if hasToken(value, "100-continue") {
			f.expect100 = true
		}
	}
}

// readFields reads header (or trailer) field lines up to and including
// the empty line that ends them, appending to h.Fields; used is the bytes
// of the head read before, f (if not nil) learns of the fields. An end of
// input is io.ErrUnexpectedEOF.
func (h *Head) readFields(br *bufio.Reader, lim Limits, used int, f *facts) error {
	for {
		line, n, err := h.readLine(br, lim.MaxHeaderBytes-used)
		switch {
		case err == errTooLong:
			return errorf(431, "head larger than %d bytes", lim.MaxHeaderBytes)
		case err == io.EOF:
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
		used += n
		if len(line) == 0 {
			return nil
		}
		if len(h.Fields) >= lim.MaxHeaders {
			return errorf(431, "more than %d header fields", lim.MaxHeaders)
		}
		name, value, e := parseField(line)
		if e != nil {
			return e
		}
		h.Fields = append(h.Fields, Field{Name: name, Value: value})
		if f != nil {
			f.note(len(h.Fields)-1, kindOf(name), value)
		}
	}
}

// parseField splits a field line into its name and its value, OWS
// trimmed, and checks them.
func parseField(line []byte) (name, value []byte, err *Error) {
	i := 0
	for i < len(line) && charClass[line[i]]&classToken != 0 {
		i++
	}
	switch {
	case i < len(line) && line[i] == ':' && i > 0:
	case isOWS(line[0]):
		return nil, nil, errorf(400, "field line starting with whitespace (obs-fold)")
	case i == len(line):
		return nil, nil, errorf(400, "field line without a colon: %s", quoted(line))
	case isOWS(line[i]):
		return nil, nil, errorf(400, "whitespace between field name and colon: %s", quoted(line[:i]))
	case line[i] == ':':
		return nil, nil, errorf(400, "empty field name")
	default:
		return nil, nil, errorf(400, "invalid character %q in field name", line[i])
	}
	v := line[i+1:]
	if !validValue(v) {
		return nil, nil, errorf(400, "invalid character in value of field %s", quoted(line[:i]))
	}
	return line[:i:i], clip(trimOWS(v)), nil
}

// parseVersion parses "HTTP/1.x" and returns the minor version, 0 or 1
// (1.2 and above are taken as 1.1, RFC 9110 6.2). A major version other
// than 1 is a 505.
func parseVersion(v []byte) (int, *Error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, errorf(400, "malformed HTTP version %s", quoted(v))
	}
	if v[5] != '1' {
		return 0, errorf(505, "HTTP version %s not supported", quoted(v))
	}
	return min(int(v[7]-'0'), 1), nil
}

// isDigit reports whether b is a decimal digit.
func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// parseLength parses a decimal Content-Length: 1*DIGIT, within an int64.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// contentLength parses the single Content-Length field of h, at index i: a
// length, or a list of equal ones (RFC 9110 8.6), which it replaces with
// the single length so that the message goes on unambiguous.
func (h *Head) contentLength(i int) (int64, *Error) {
	var n int64
	var first []byte
	list := h.Fields[i].Value
	for elem, rest, ok := nextElement(list); ok; elem, rest, ok = nextElement(rest) {
		m, valid := parseLength(elem)
		if !valid {
			return 0, errorf(400, "invalid Content-Length %s", quoted(list))
		}
		if first == nil {
			n, first = m, elem
		} else if m != n {
			return 0, errorf(400, "Content-Length list with different values %s", quoted(list))
		}
	}
	h.Fields[i].Value = clip(first)
	return n, nil
}

// checkChunked checks the Transfer-Encoding fields of h, taken as one
// list: the final coding must be chunked, chunked must not appear twice,
// and no other coding is implemented (501).
func (h *Head) checkChunked() *Error {
	codings, chunked, lastChunked := 0, 0, false
	for i := index(h, "Transfer-Encoding", 0); i >= 0; i = index(h, "Transfer-Encoding", i+1) {
		list := h.Fields[i].Value
		for elem, rest, ok := nextElement(list); ok; elem, rest, ok = nextElement(rest) {
			name, hasParams := elem, false
			if j := bytes.IndexByte(elem, ';'); j >= 0 {
				name, hasParams = trimOWS(elem[:j]), true
			}
			if !isToken(name) {
				return errorf(400, "invalid Transfer-Encoding %s", quoted(list))
			}
			codings++
			lastChunked = equalFold(name, "chunked")
			if lastChunked {
				if hasParams {
					return errorf(400, "chunked with parameters %s", quoted(elem))
				}
				chunked++
			}
		}
	}
	switch {
	case chunked > 1:
		return errorf(400, "chunked more than once in Transfer-Encoding")
	case !lastChunked:
		return errorf(400, "Transfer-Encoding whose final coding is not chunked")
	case codings > 1:
		return errorf(501, "Transfer-Encoding other than chunked not implemented")
	}
	return nil
}

// validHost reports whether b is a valid Host value or authority:
// reg-name or IP literal, and port; empty is valid.
func validHost(b []byte) bool {
	for _, c := range b {
		if charClass[c]&classHost == 0 {
			return false
		}
	}
	return true
}
