package h1

import "bytes"

// Character classes of RFC 9110 and RFC 9112, as bits of charClass.
const (
	// classToken: tchar, a byte of a token (method, field name, coding).
	classToken uint8 = 1 << iota
	// classValue: a byte allowed in a field value: HTAB, SP, VCHAR and
	// obs-text. Also good for a reason phrase.
	classValue
	// classTarget: a byte allowed in a request target: VCHAR but "#". A
	// fragment is not part of a request target (RFC 9112 3.2), and bytes
	// over 0x7e (obs-text) are not part of a URI (RFC 3986): servers
	// decode them in different ways, so lb refuses both, as HAProxy does.
	classTarget
	// classHost: a byte allowed in a Host value or an authority: unreserved,
	// sub-delims, ":", "[", "]" and "%" (reg-name, IP-literal, port).
	classHost
)

// charClass holds the classes of every byte.
var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		isAlnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if isAlnum || contains("!#$%&'*+-.^_`|~", b) {
			t[c] |= classToken
		}
		if b == '\t' || b >= ' ' && b != 0x7f {
			t[c] |= classValue
		}
		if b > ' ' && b < 0x7f && b != '#' {
			t[c] |= classTarget
		}
		if isAlnum || contains("-._~!$&'()*+,;=:[]%", b) {
			t[c] |= classHost
		}
	}
	return t
}()

// contains reports whether s holds b.
func contains(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

// isToken reports whether b is a non-empty token.
func isToken[S string | []byte](b S) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if charClass[b[i]]&classToken == 0 {
			return false
		}
	}
	return true
}

// validValue reports whether every byte of b may appear in a field value.
func validValue(b []byte) bool { return ValidValue(b) }

// lower folds an ASCII upper-case letter to lower case.
func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold[A, B string | []byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if x, y := a[i], b[i]; x != y && lower(x) != lower(y) {
			return false
		}
	}
	return true
}

// isOWS reports whether b is optional whitespace: SP or HTAB.
func isOWS(b byte) bool { return b == ' ' || b == '\t' }

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// nextElement splits the first element off a comma-separated list and
// returns it with OWS trimmed, and the rest after the comma: nil when
// there is no comma. ok is false when list is nil. A list of n commas
// yields n+1 elements, empty ones included ("5," is "5" and "").
func nextElement(list []byte) (elem, rest []byte, ok bool) {
	if list == nil {
		return nil, nil, false
	}
	i := bytes.IndexByte(list, ',')
	if i < 0 {
		return trimOWS(list), nil, true
	}
	return trimOWS(list[:i]), list[i+1:], true
}

// hasToken reports whether the comma-separated list holds token, ignoring
// case.
func hasToken(list []byte, token string) bool {
	for elem, rest, ok := nextElement(list); ok; elem, rest, ok = nextElement(rest) {
		if equalFold(elem, token) {
			return true
		}
	}
	return false
}

// clip caps b's capacity at its length, so that appending to it never
// writes over the storage that follows.
func clip(b []byte) []byte { return b[:len(b):len(b)] }

// ValidToken reports whether b is a non-empty token (RFC 9110 5.6.2), as a
// method or a field name must be.
func ValidToken[S string | []byte](b S) bool { return isToken(b) }

// ValidTarget reports whether t is made only of the bytes ReadRequest
// accepts in a request target: VCHAR but "#" (no fragment, no
// whitespace, no control character, no byte over 0x7e). It does not check
// the target's form.
func ValidTarget[S string | []byte](t S) bool {
	for i := 0; i < len(t); i++ {
		if charClass[t[i]]&classTarget == 0 {
			return false
		}
	}
	return true
}

// ValidHost reports whether b is a Host value or an authority that
// ReadRequest accepts: reg-name or IP literal, and port, with no userinfo,
// path or whitespace; empty is valid.
func ValidHost[S string | []byte](b S) bool {
	for i := 0; i < len(b); i++ {
		if charClass[b[i]]&classHost == 0 {
			return false
		}
	}
	return true
}

// ValidValue reports whether every byte of b may appear in a field value:
// HTAB, SP, VCHAR and obs-text, no other control character.
func ValidValue[S string | []byte](b S) bool {
	for i := 0; i < len(b); i++ {
		if charClass[b[i]]&classValue == 0 {
			return false
		}
	}
	return true
}
