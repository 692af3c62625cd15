package config

import (
	"cmp"
	"slices"
	"strings"
)

// Error is one problem in a configuration: where it is, the object it is
// about and what is wrong.
type Error struct {
	// Pos is the file and line of the offending key, or of the object's
	// table header when the key was not set. Line is 0 for a problem with
	// a whole file.
	Pos Pos
	// Object names the object, like `backend "app": server "s1"`; empty
	// for a problem that is not about one object.
	Object string
	// Msg says what is wrong and what to do about it.
	Msg string
}

// Error formats the error as "file:line: object: msg", leaving out the parts
// that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if p := e.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if e.Object != "" {
		b.WriteString(e.Object)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, in file order, then line
// order. Load, Parse and Config.Validate return it as their error.
type Errors []*Error

// Error writes one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors, so that errors.As finds an *Error in Errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sort orders the errors by the position of their file in files (files not
// in it go last), then by line. Errors on the same line keep their order.
func (es Errors) sort(files []string) {
	rank := func(file string) int {
		if i := slices.Index(files, file); i >= 0 {
			return i
		}
		return len(files)
	}
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(rank(a.Pos.File), rank(b.Pos.File)),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
		)
	})
}

// orNil returns the errors sorted as an error, or nil when there are none.
func (es Errors) orNil(files []string) error {
	if len(es) == 0 {
		return nil
	}
	es.sort(files)
	return es
}
