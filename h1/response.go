package h1

import "bufio"

// Response is a response head. The byte slices alias storage owned by the
// Response (its Head); they stay valid until the Response is reset or
// re-read.
type Response struct {
	// Minor is the minor version of HTTP/1.Minor: 0 or 1.
	Minor int
	// Status is the status code, 100 to 999.
	Status int
	// Reason is the reason phrase, maybe empty.
	Reason []byte
	// Head holds the header fields.
	Head
	// Body is the framing of the body that follows the head.
	Body Body
	// KeepAlive says the server lets the connection be reused: HTTP/1.1
	// without "Connection: close", or HTTP/1.0 with "Connection:
	// keep-alive". It is false when the body lasts until the server
	// closes, and after a 101 or a 2xx to CONNECT, which turn the
	// connection into a tunnel.
	KeepAlive bool
}

// Reset empties r, keeping its storage for reuse.
func (r *Response) Reset() {
	r.Head.Reset()
	r.Minor, r.Status, r.Reason = 0, 0, nil
	r.Body = Body{}
	r.KeepAlive = false
}

// ReadResponse reads a response head from br into r, which it resets
// first; reqMethod is the method of the request it answers, which bears on
// the framing. The body, if any, is left in br, framed as r.Body says
// (RFC 9112 6.3): none after HEAD, for 1xx, 204 and 304, and for a 2xx to
// CONNECT; chunked when Transfer-Encoding ends with chunked (a
// Content-Length alongside is then deleted from r, as RFC 9112 6.3 asks of
// a proxy); Content-Length bytes; else until the server closes.
//
// A 1xx other than 101 is an interim response: read the next one after
// it. Errors are as for ReadRequest; for an *Error, a proxy answers 502
// whatever its Status.
func ReadResponse(br *bufio.Reader, r *Response, lim Limits, reqMethod []byte) error {
	r.Reset()
	var f facts
	if err := r.readHead(br, lim, 431, false, r.parseStatusLine, &f); err != nil {
		return err
	}
	return r.frame(&f, reqMethod)
}

// parseStatusLine parses "HTTP/1.x SP 3DIGIT SP reason"; the SP before an
// empty reason may be missing.
func (r *Response) parseStatusLine(line []byte) error {
	if len(line) < 12 || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return errorf(400, "malformed status line %s", quoted(line))
	}
	minor, e := parseVersion(line[:8])
	if e != nil {
		return e
	}
	status := 0
	for _, c := range line[9:12] {
		if !isDigit(c) {
			return errorf(400, "malformed status code %s", quoted(line[9:12]))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return errorf(400, "status code %d under 100", status)
	}
	var reason []byte
	if len(line) > 12 {
		reason = line[13:]
		if !validValue(reason) {
			return errorf(400, "invalid character in reason phrase %s", quoted(reason))
		}
	}
	r.Minor, r.Status, r.Reason = minor, status, clip(reason)
	return nil
}

// frame checks the fields of a response that decide its framing and sets
// Body and KeepAlive.
func (r *Response) frame(f *facts, reqMethod []byte) error {
	chunked, length := false, int64(-1)
	switch {
	case f.nTE > 0:
		if r.Minor == 0 {
			return errorf(400, "Transfer-Encoding in an HTTP/1.0 response")
		}
		if e := r.checkChunked(); e != nil {
			return e
		}
		if f.nCL > 0 {
			// RFC 9112 6.3: Transfer-Encoding overrides Content-Length,
			// which a proxy must remove before forwarding.
			r.Del("Content-Length")
		}
		chunked = true
	case f.nCL > 1:
		return errorf(400, "several Content-Length fields")
	case f.nCL == 1:
		n, e := r.contentLength(f.cl)
		if e != nil {
			return e
		}
		length = n
	}
	tunnel := r.Status == 101 || r.Status/100 == 2 && string(reqMethod) == "CONNECT"
	switch {
	case string(reqMethod) == "HEAD" || r.Status < 200 || r.Status == 204 || r.Status == 304 || tunnel:
	case chunked:
		r.Body.Kind = BodyChunked
	case length > 0:
		r.Body = Body{Kind: BodyLength, Length: length}
	case length == 0:
	default:
		r.Body.Kind = BodyUntilClose
	}
	if r.Minor == 0 {
		r.KeepAlive = f.keepAlive && !f.close
	} else {
		r.KeepAlive = !f.close
	}
	if r.Body.Kind == BodyUntilClose || tunnel {
		r.KeepAlive = false
	}
	return nil
}
