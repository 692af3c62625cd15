package h1

import (
	"bufio"
	"bytes"
	"fmt"
)

// CheckRoundTrip writes r's head as WriteRequestHead does and reads it
// back with ReadRequest under lim, and returns the first difference
// between the two, or nil: a head that lb forwards must reach the server
// as the request lb routed and framed, with nothing a server could read
// another way. The body's framing must be in r's fields (Content-Length or
// Transfer-Encoding), as it is in a head about to be written.
func CheckRoundTrip(r *Request, lim Limits) error {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := WriteRequestHead(w, r); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	wire := out.String()
	var back Request
	if err := ReadRequest(bufio.NewReader(&out), &back, lim); err != nil {
		return fmt.Errorf("%q does not parse back: %w", wire, err)
	}
	switch {
	case !bytes.Equal(back.Method, r.Method):
		return fmt.Errorf("%q: method %q parses back as %q", wire, r.Method, back.Method)
	case !bytes.Equal(back.Target, r.Target):
		return fmt.Errorf("%q: target %q parses back as %q", wire, r.Target, back.Target)
	case !bytes.Equal(back.Host(), r.Host()):
		return fmt.Errorf("%q: host %q parses back as %q", wire, r.Host(), back.Host())
	case back.Body != r.Body:
		return fmt.Errorf("%q: body %s %d parses back as %s %d", wire, r.Body.Kind, r.Body.Length, back.Body.Kind, back.Body.Length)
	case len(back.Fields) != len(r.Fields):
		return fmt.Errorf("%q: %d fields parse back as %d", wire, len(r.Fields), len(back.Fields))
	}
	for i, f := range r.Fields {
		if g := back.Fields[i]; !bytes.Equal(g.Name, f.Name) || !bytes.Equal(g.Value, f.Value) {
			return fmt.Errorf("%q: field %q: %q parses back as %q: %q", wire, f.Name, f.Value, g.Name, g.Value)
		}
	}
	return nil
}
