package h1

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is a malformed or oversized message. Status is what a proxy should
// answer a client for a bad request (400, 414, 431, 501, 505); for a bad
// response from a server the proxy answers 502 whatever Status says.
type Error struct {
	// Status is the HTTP status code that fits the mistake.
	Status int
	// Reason is a short, human description of the mistake, such as
	// "both Content-Length and Transfer-Encoding".
	Reason string
}

// Error returns "h1: Reason (Status)".
func (e *Error) Error() string {
	return "h1: " + e.Reason + " (" + strconv.Itoa(e.Status) + ")"
}

// errorf returns an *Error of status whose Reason is formatted.
func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// quoted returns b quoted for an error message, cut at 40 bytes.
func quoted(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// errTooLong is returned by readLine for a line over its budget.
var errTooLong = errors.New("h1: line over budget")
