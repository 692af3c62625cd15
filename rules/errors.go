package rules

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// SpecError is a problem with one key of a spec.
//
// Msg says what is wrong with the key's value and what to do about it,
// without naming the key or quoting the value, which Error puts in front:
// `<Key> "<Value>": <Msg>`. When Key is empty the problem is with the spec as
// a whole (a route without any condition) and Msg stands alone.
type SpecError struct {
	// Key is the configuration key at fault: "host", "path_prefix",
	// "path_regex", "method", "header", "action", "name", "value" or "on";
	// empty for the spec as a whole.
	Key string
	// Index is the element of a list key at fault, counting from 0, or -1.
	Index int
	// Value is the value at fault: the list element for a list key.
	Value string
	// Msg says what is wrong and what to do.
	Msg string
}

// Error formats the error as `key "value": msg`, with the value quoted as
// by strconv.Quote, or "key: msg" when the value is empty, or msg alone when
// Key is empty. The index is not part of it: the value identifies the
// element.
func (e *SpecError) Error() string {
	switch {
	case e.Key == "":
		return e.Msg
	case e.Value == "":
		return e.Key + ": " + e.Msg
	default:
		return e.Key + " " + strconv.Quote(e.Value) + ": " + e.Msg
	}
}

// specErr returns a *SpecError with a formatted message.
func specErr(key string, index int, value, format string, args ...any) *SpecError {
	return &SpecError{Key: key, Index: index, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// isTchar reports whether c may appear in a token (RFC 9110, section 5.6.2),
// the syntax of methods and field names.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// firstNonTchar returns the index of the first byte of s that may not appear
// in a token, or -1.
func firstNonTchar(s string) int {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return i
		}
	}
	return -1
}

// isCTL reports whether c is a control character that may not appear in a
// header field value: every C0 control but horizontal tab, and DEL.
func isCTL(c byte) bool {
	return c < 0x20 && c != '\t' || c == 0x7f
}

// firstCTL returns the index of the first byte of s for which isCTL holds,
// or -1.
func firstCTL(s string) int {
	for i := 0; i < len(s); i++ {
		if isCTL(s[i]) {
			return i
		}
	}
	return -1
}

// charAt names the character that starts at s[i], for messages: `a space`,
// `a line feed (\n)`, `"/"`, `"é"`, `byte 0xff`.
func charAt(s string, i int) string {
	switch c := s[i]; c {
	case ' ':
		return "a space"
	case '\t':
		return `a tab (\t)`
	case '\r':
		return `a carriage return (\r)`
	case '\n':
		return `a line feed (\n)`
	case 0:
		return "a NUL byte"
	case 0x7f:
		return "a DEL character (0x7f)"
	default:
		if c < 0x20 {
			return fmt.Sprintf("control character %#02x", c)
		}
		if c < utf8.RuneSelf {
			return strconv.Quote(string(c))
		}
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError {
		return fmt.Sprintf("byte %#02x", s[i])
	}
	return strconv.Quote(string(r))
}
