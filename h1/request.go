package h1

import (
	"bufio"
	"bytes"
	"strconv"
)

// BodyKind is how a message's body is delimited (RFC 9112 6.3).
type BodyKind uint8

// The kinds of body.
const (
	BodyNone       BodyKind = iota // no body
	BodyLength                     // Body.Length bytes
	BodyChunked                    // chunked transfer coding
	BodyUntilClose                 // responses only: until the server closes
)

// String returns the name of k: "none", "length", "chunked", "until-close".
func (k BodyKind) String() string {
	switch k {
	case BodyNone:
		return "none"
	case BodyLength:
		return "length"
	case BodyChunked:
		return "chunked"
	case BodyUntilClose:
		return "until-close"
	}
	return "BodyKind(" + strconv.Itoa(int(k)) + ")"
}

// Body is the framing of a message's body.
type Body struct {
	// Kind is how the body is delimited.
	Kind BodyKind
	// Length is the body's length in bytes when Kind is BodyLength (then it
	// is more than 0), else 0.
	Length int64
}

// Request is a request head. The byte slices alias storage owned by the
// Request (its Head); they stay valid until the Request is reset or
// re-read.
type Request struct {
	// Method is the request method, a token: "GET".
	Method []byte
	// Target is the request target as received: origin-form "/p?q",
	// absolute-form "http://h/p", authority-form "h:443" (CONNECT) or "*"
	// (OPTIONS).
	Target []byte
	// Minor is the minor version of HTTP/1.Minor: 0 or 1.
	Minor int
	// Head holds the header fields.
	Head
	// Body is the framing of the body that follows the head.
	Body Body

	// Derived by ReadRequest:

	// KeepAlive says the client lets the connection be reused: HTTP/1.1
	// without "Connection: close", or HTTP/1.0 with "Connection:
	// keep-alive" (and without close).
	KeepAlive bool
	// Upgrade says the client asks to switch protocols: an HTTP/1.1 request
	// whose Connection lists "upgrade" and that has an Upgrade field.
	Upgrade bool
	// Expect100 says an HTTP/1.1 request has "Expect: 100-continue".
	Expect100 bool
}

// Reset empties r, keeping its storage for reuse.
func (r *Request) Reset() {
	r.Head.Reset()
	r.Method, r.Target, r.Minor = nil, nil, 0
	r.Body = Body{}
	r.KeepAlive, r.Upgrade, r.Expect100 = false, false, false
}

// slash is the path of an absolute-form target with an empty path.
var slash = []byte("/")

// Path returns the path of the target without query (or fragment): for
// origin-form "/p?q" it is "/p"; for absolute-form, the path part, "/"
// when empty; for "*" and authority-form, the target itself. It aliases
// r's storage (or, for "/", a shared slice): do not modify it.
func (r *Request) Path() []byte {
	t := r.Target
	if len(t) > 0 && t[0] != '/' {
		_, rest, ok := splitAbsolute(t)
		if !ok {
			return t
		}
		if len(rest) == 0 || rest[0] != '/' {
			return slash
		}
		t = rest
	}
	if i := bytes.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	return clip(t)
}

// Host returns the authority of an absolute-form target, which wins over
// the Host field (RFC 9112 3.2.2), else the value of the Host field; nil
// when there is neither. It aliases r's storage: do not modify it.
func (r *Request) Host() []byte {
	if authority, _, ok := splitAbsolute(r.Target); ok {
		return authority
	}
	v, _ := r.Get("Host")
	return v
}

// splitAbsolute splits an absolute-form target "scheme://authority/p?q"
// into its authority and the rest, "/p?q". ok is false when t is not
// absolute-form.
func splitAbsolute(t []byte) (authority, rest []byte, ok bool) {
	i := 0
	for i < len(t) && isSchemeChar(t[i], i == 0) {
		i++
	}
	if i == 0 || len(t)-i < 3 || string(t[i:i+3]) != "://" {
		return nil, nil, false
	}
	a := t[i+3:]
	j := bytes.IndexAny(a, "/?#")
	if j < 0 {
		j = len(a)
	}
	return clip(a[:j]), clip(a[j:]), true
}

// isSchemeChar reports whether b may appear in a URI scheme, first being
// whether it is the first byte: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isSchemeChar(b byte, first bool) bool {
	if 'a' <= lower(b) && lower(b) <= 'z' {
		return true
	}
	return !first && (isDigit(b) || b == '+' || b == '-' || b == '.')
}

// ReadRequest reads a request head from br into r, which it resets first;
// the body, if any, is left in br, framed as r.Body says. r keeps the head
// in storage of its own, reused from one request to the next, so br can be
// read on at once.
//
// It returns io.EOF when br ends before the first byte of a request (empty
// lines do not count), io.ErrUnexpectedEOF when br ends mid-head, an error
// of br (a deadline, say) as it is, and an *Error for a malformed or
// oversized head. On error, r's contents are unspecified.
//
// It is strict where leniency would let a request be framed two ways
// (request smuggling): see the package documentation.
func ReadRequest(br *bufio.Reader, r *Request, lim Limits) error {
	r.Reset()
	var f facts
	if err := r.readHead(br, lim, 414, true, r.parseRequestLine, &f); err != nil {
		return err
	}
	return r.frame(&f)
}

// parseRequestLine parses "METHOD SP TARGET SP HTTP/1.x".
func (r *Request) parseRequestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return errorf(400, "malformed request line %s", quoted(line))
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 < 0 {
		return errorf(400, "malformed request line %s", quoted(line))
	}
	sp2 += sp1 + 1
	method, target := line[:sp1:sp1], line[sp1+1:sp2:sp2]
	minor, e := parseVersion(line[sp2+1:])
	if e != nil {
		return e
	}
	if !isToken(method) {
		return errorf(400, "invalid method %s", quoted(method))
	}
	if len(target) == 0 {
		return errorf(400, "empty request target")
	}
	if e := checkTarget(target); e != nil {
		return e
	}
	switch {
	case string(method) == "CONNECT":
		if !validAuthorityForm(target) {
			return errorf(400, "CONNECT target not host:port: %s", quoted(target))
		}
	case target[0] == '/':
	case len(target) == 1 && target[0] == '*':
		if string(method) != "OPTIONS" {
			return errorf(400, "target * with method %s", quoted(method))
		}
	default:
		authority, _, ok := splitAbsolute(target)
		if !ok {
			return errorf(400, "invalid request target %s", quoted(target))
		}
		if len(authority) == 0 || !validHost(authority) {
			return errorf(400, "invalid authority in request target %s", quoted(target))
		}
	}
	r.Method, r.Target, r.Minor = method, target, minor
	return nil
}

// checkTarget checks the bytes of a request target (see ValidTarget).
func checkTarget(target []byte) *Error {
	for _, c := range target {
		if charClass[c]&classTarget == 0 {
			if c == '#' {
				return errorf(400, "fragment (#) in request target %s: a fragment is not sent", quoted(target))
			}
			return errorf(400, "invalid character %q in request target", c)
		}
	}
	return nil
}

// validAuthorityForm reports whether t is "host:port".
func validAuthorityForm(t []byte) bool {
	i := bytes.LastIndexByte(t, ':')
	if i <= 0 || i == len(t)-1 || !validHost(t[:i]) {
		return false
	}
	for _, c := range t[i+1:] {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// frame checks the fields of a request that decide its framing and
// routing, and sets Body, KeepAlive, Upgrade and Expect100.
func (r *Request) frame(f *facts) error {
	switch {
	case f.nTE > 0:
		if f.nCL > 0 {
			return errorf(400, "both Content-Length and Transfer-Encoding")
		}
		if r.Minor == 0 {
			return errorf(400, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if e := r.checkChunked(); e != nil {
			return e
		}
		r.Body.Kind = BodyChunked
	case f.nCL > 1:
		return errorf(400, "several Content-Length fields")
	case f.nCL == 1:
		n, e := r.contentLength(f.cl)
		if e != nil {
			return e
		}
		if n > 0 {
			r.Body = Body{Kind: BodyLength, Length: n}
		}
	}
	switch {
	case f.nHost > 1:
		return errorf(400, "several Host fields")
	case f.nHost == 1:
		if v := r.Fields[f.host].Value; !validHost(v) {
			return errorf(400, "invalid Host %s", quoted(v))
		}
	case r.Minor == 1:
		return errorf(400, "HTTP/1.1 request without Host")
	}
	if r.Minor == 0 {
		// RFC 9110 7.8 and 10.1.1: an HTTP/1.0 request cannot upgrade
		// nor expect 100-continue.
		r.KeepAlive = f.keepAlive && !f.close
		return nil
	}
	r.KeepAlive = !f.close
	r.Upgrade = f.upgradeOption && f.upgrade
	r.Expect100 = f.expect100
	return nil
}
