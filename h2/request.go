package h2

import (
	"lb/h1"

	"golang.org/x/net/http2/hpack"
)

// A MalformedError is a request (or a trailer section) that lb will not
// forward because it could not be forwarded unambiguously: RFC 9113 8.1.1
// makes it a stream error of type PROTOCOL_ERROR, so the stream is reset
// and nothing reaches a server.
type MalformedError struct {
	// Reason says what is wrong, for the log.
	Reason string
}

func (e *MalformedError) Error() string { return "malformed HTTP/2 request: " + e.Reason }

func malformed(reason string) *MalformedError { return &MalformedError{Reason: reason} }

// ReadRequest translates the header fields of a request that opens a
// stream into req, an HTTP/1.1 request head that lb's strict HTTP/1 parser
// (h1.ReadRequest) would read back the same: same method, target, Host,
// framing and fields. end says the HEADERS frame ended the stream (no
// body). It returns the declared content length, -1 when there is none.
//
// The request is malformed (a *MalformedError) when the translation could
// be read two ways or would be refused by h1.ReadRequest: a missing,
// repeated, empty or invalid pseudo-header, a path or an authority with
// characters a target or a Host cannot hold, a Host field that differs from
// :authority, connection-specific fields (Connection, Keep-Alive,
// Proxy-Connection, Transfer-Encoding, Upgrade), TE other than
// "trailers", a Content-Length that is not one decimal number, a value
// with leading or trailing whitespace. A head over lim is an *h1.Error of
// status 431, which lb answers.
//
// Cookie fields, which HTTP/2 splits, are joined into one with "; " (RFC
// 9113 8.2.3). Field names are written in their canonical case
// ("content-type" becomes "Content-Type"); Host comes first.
func ReadRequest(req *h1.Request, fields []hpack.HeaderField, end bool, lim h1.Limits) (int64, error) {
	req.Reset()
	lim = withDefaults(lim)
	var method, scheme, path, authority string
	var hasMethod, hasScheme, hasPath, hasAuthority bool
	i := 0
	for ; i < len(fields) && len(fields[i].Name) > 0 && fields[i].Name[0] == ':'; i++ {
		f := fields[i]
		var dup bool
		switch f.Name {
		case ":method":
			dup, method, hasMethod = hasMethod, f.Value, true
		case ":scheme":
			dup, scheme, hasScheme = hasScheme, f.Value, true
		case ":path":
			dup, path, hasPath = hasPath, f.Value, true
		case ":authority":
			dup, authority, hasAuthority = hasAuthority, f.Value, true
		default: // :protocol: lb does not offer extended CONNECT
			return -1, malformed("pseudo-header " + f.Name + " not supported")
		}
		if dup {
			return -1, malformed("several " + f.Name + " pseudo-headers")
		}
	}
	regular := fields[i:]
	for _, f := range regular {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			return -1, malformed("pseudo-header " + f.Name + " after a regular field")
		}
	}
	// What came goes in the request line at once, for the log of a
	// request that turns out malformed.
	if method == "CONNECT" && !hasPath {
		req.SetRequestLine(method, authority, 1)
	} else {
		req.SetRequestLine(method, path, 1)
	}
	switch {
	case !hasMethod:
		return -1, malformed("no :method")
	case !h1.ValidToken(method):
		return -1, malformed("invalid :method " + quote(method))
	case method == "CONNECT":
		// RFC 9113 8.5: only :method and :authority. lb refuses CONNECT
		// (405) once the request is read.
		if hasScheme || hasPath {
			return -1, malformed("CONNECT with :scheme or :path")
		}
		if authority == "" || !h1.ValidHost(authority) {
			return -1, malformed("CONNECT without a valid :authority")
		}
		path = authority
	case !hasScheme || !hasPath:
		return -1, malformed("no :scheme or no :path")
	case scheme != "http" && scheme != "https":
		return -1, malformed(":scheme " + quote(scheme) + " is not http or https")
	case path == "":
		return -1, malformed("empty :path")
	case path == "*" && method != "OPTIONS":
		return -1, malformed(":path * with method " + method)
	case path[0] != '/' && path != "*":
		return -1, malformed(":path " + quote(path) + " is not an absolute path")
	case !h1.ValidTarget(path):
		return -1, malformed(":path " + quote(path) + " holds a character a request target cannot (whitespace, control, #, or over 0x7e)")
	}
	if hasAuthority && (authority == "" || !h1.ValidHost(authority)) {
		return -1, malformed("invalid :authority " + quote(authority))
	}

	// The regular fields: find what decides framing and routing first.
	cl := int64(-1)
	nHost, nCookie := 0, 0
	host := authority
	size := len(method) + len(path) + len(" HTTP/1.1\r\n") + 1 + len("\r\n")
	for _, f := range regular {
		if e := checkField(f); e != nil {
			return -1, e
		}
		switch f.Name {
		case "host":
			nHost++
			switch {
			case nHost > 1:
				return -1, malformed("several host fields")
			case hasAuthority && !equalFold(f.Value, authority):
				return -1, malformed("host " + quote(f.Value) + " differs from :authority " + quote(authority))
			case !h1.ValidHost(f.Value) || f.Value == "":
				return -1, malformed("invalid host " + quote(f.Value))
			}
			if !hasAuthority {
				host = f.Value
			}
		case "content-length":
			if cl >= 0 {
				return -1, malformed("several content-length fields")
			}
			n, ok := parseLength(f.Value)
			if !ok {
				return -1, malformed("invalid content-length " + quote(f.Value))
			}
			cl = n
		case "cookie":
			nCookie++
		}
	}
	if host == "" {
		return -1, malformed("no :authority and no host")
	}
	if end && cl > 0 {
		return -1, malformed("content-length on a request without a body")
	}

	req.AddString("Host", host)
	size += len("Host: \r\n") + len(host)
	cookies := 0
	for _, f := range regular {
		switch f.Name {
		case "host":
			continue
		case "cookie":
			// The crumbs go in one field, where the first one was.
			cookies++
			if cookies > 1 {
				continue
			}
		}
		if len(req.Fields) >= lim.MaxHeaders {
			return -1, &h1.Error{Status: 431, Reason: "more header fields than max_headers"}
		}
		if f.Name == "cookie" && nCookie > 1 {
			joinCookies(req, regular)
		} else {
			req.AddString(f.Name, f.Value)
			canonicalize(req.Fields[len(req.Fields)-1].Name)
		}
		size += len(f.Name) + len(req.Fields[len(req.Fields)-1].Value) + len(": \r\n")
	}
	if size > lim.MaxHeaderBytes {
		return -1, &h1.Error{Status: 431, Reason: "head larger than max_header_bytes"}
	}
	switch {
	case end || cl == 0:
		req.Body = h1.Body{}
	case cl > 0:
		req.Body = h1.Body{Kind: h1.BodyLength, Length: cl}
	default:
		req.Body = h1.Body{Kind: h1.BodyChunked}
	}
	req.KeepAlive = true
	req.Expect100 = !end && req.HasToken("Expect", "100-continue")
	return cl, nil
}

// joinCookies adds one Cookie field holding the values of every cookie
// field of regular, joined with "; ", empty ones left out.
func joinCookies(req *h1.Request, regular []hpack.HeaderField) {
	req.AddString("Cookie", "")
	for _, g := range regular {
		if g.Name != "cookie" || g.Value == "" {
			continue
		}
		sep := "; "
		if len(req.Fields[len(req.Fields)-1].Value) == 0 {
			sep = ""
		}
		req.AppendToLast(sep, g.Value)
	}
}

// ReadTrailer translates the fields of a trailer section into tr. Trailer
// fields follow the rules of header fields; pseudo-headers are malformed.
func ReadTrailer(tr *h1.Head, fields []hpack.HeaderField, lim h1.Limits) error {
	tr.Reset()
	lim = withDefaults(lim)
	size := 0
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			return malformed("pseudo-header " + f.Name + " in a trailer section")
		}
		if e := checkField(f); e != nil {
			return e
		}
		if len(tr.Fields) >= lim.MaxHeaders {
			return &h1.Error{Status: 431, Reason: "more trailer fields than max_headers"}
		}
		size += len(f.Name) + len(f.Value) + len(": \r\n")
		if size > lim.MaxHeaderBytes {
			return &h1.Error{Status: 431, Reason: "trailer section larger than max_header_bytes"}
		}
		tr.AddString(f.Name, f.Value)
		canonicalize(tr.Fields[len(tr.Fields)-1].Name)
	}
	return nil
}

// checkField checks a regular field of a request: HTTP/2 forbids the
// fields that manage an HTTP/1 connection (RFC 9113 8.2.2), and the value
// must be one an HTTP/1 field line can carry as it is (RFC 9113 8.2.1:
// no leading or trailing whitespace). The framer already refused names
// that are not lower-case tokens and values with CR, LF or NUL.
func checkField(f hpack.HeaderField) *MalformedError {
	switch f.Name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return malformed("connection-specific field " + f.Name)
	case "te":
		if f.Value != "trailers" {
			return malformed("te " + quote(f.Value) + " is not \"trailers\"")
		}
	}
	if !h1.ValidToken(f.Name) {
		return malformed("invalid field name " + quote(f.Name))
	}
	for i := 0; i < len(f.Name); i++ {
		if c := f.Name[i]; 'A' <= c && c <= 'Z' {
			// RFC 9113 8.2.1: HTTP/2 field names are lower case; an
			// upper-case one would escape lb's checks by name.
			return malformed("upper-case field name " + quote(f.Name))
		}
	}
	v := f.Value
	if !h1.ValidValue(v) {
		return malformed("invalid character in the value of " + f.Name)
	}
	if len(v) > 0 && (isOWS(v[0]) || isOWS(v[len(v)-1])) {
		return malformed("whitespace around the value of " + f.Name)
	}
	return nil
}

func isOWS(b byte) bool { return b == ' ' || b == '\t' }

// canonicalize puts a lower-case field name in its canonical case in
// place: the first letter and every letter after "-" upper case.
func canonicalize(name []byte) {
	up := true
	for i, c := range name {
		if up && 'a' <= c && c <= 'z' {
			name[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
}

// parseLength parses a Content-Length value: 1*DIGIT within an int64.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// quote quotes s for an error message, shortened when long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < ' ' || c >= 0x7f:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// withDefaults fills the zero fields of lim as h1 does.
func withDefaults(lim h1.Limits) h1.Limits {
	if lim.MaxHeaderBytes <= 0 {
		lim.MaxHeaderBytes = h1.DefaultMaxHeaderBytes
	}
	if lim.MaxHeaders <= 0 {
		lim.MaxHeaders = h1.DefaultMaxHeaders
	}
	return lim
}
