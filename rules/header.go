package rules

import (
	"fmt"
	"strings"
)

// Editor is what header rules change: a message's header fields. Names are
// ASCII case-insensitive.
type Editor interface {
	// Get returns the value of the first field of that name, and whether
	// there is one.
	Get(name string) ([]byte, bool)
	// Set replaces every field of that name by one with value, which it
	// copies.
	Set(name string, value []byte)
	// Add appends a field, copying value.
	Add(name string, value []byte)
	// Del removes every field of that name.
	Del(name string)
}

// HeaderRuleSpec is one header rule as configured.
type HeaderRuleSpec struct {
	// Action is "set" (replace every field of that name by one), "add"
	// (append a field) or "delete" (remove every field of that name).
	Action string
	// On is "request" (the default, when empty) or "response": the
	// messages the rule changes.
	On string
	// Name is the field's name, a token. The fields that frame messages
	// or concern one connection (Content-Length, Transfer-Encoding,
	// Trailer, Connection, Keep-Alive, Proxy-Connection, TE, Upgrade) are
	// the proxy's and refused, and so are adding or deleting a request's
	// Host (setting it is allowed).
	Name string
	// Value is a Template, for set and add; it may expand to an empty
	// value. It must be empty for delete.
	Value string
}

// Header rule actions.
const (
	actionSet = iota
	actionAdd
	actionDelete
)

// HeaderRule is a compiled HeaderRuleSpec. It is safe for concurrent use.
type HeaderRule struct {
	action   int
	response bool
	name     string
	value    *Template
	when     *Expr
}

// SetWhen makes the rule apply only when e matches (nil: always).
func (r *HeaderRule) SetWhen(e *Expr) { r.when = e }

// Applies reports whether the rule applies to s: its when matches.
func (r *HeaderRule) Applies(s *Subject) bool { return r.when == nil || s != nil && r.when.Match(s) }

// actionSynonyms are words people write for an action, with the action.
var actionSynonyms = map[string]string{
	"replace": "set",
	"append":  "add",
	"remove":  "delete",
	"del":     "delete",
	"unset":   "delete",
}

// reservedFields are the fields header rules may not change, by lower-case
// name, with why.
var reservedFields = map[string]string{
	"content-length":    "frames the message body, which lb does itself: header rules cannot change it",
	"transfer-encoding": "frames the message body, which lb does itself: header rules cannot change it",
	"trailer":           "announces the fields after a chunked body, whose framing lb does itself: header rules cannot change it",
	"connection":        "is hop-by-hop, managed by lb on each connection: header rules cannot change it",
	"keep-alive":        "is hop-by-hop, managed by lb on each connection: header rules cannot change it",
	"proxy-connection":  "is hop-by-hop, managed by lb on each connection: header rules cannot change it",
	"te":                "is hop-by-hop, managed by lb on each connection: header rules cannot change it",
	"upgrade":           "is hop-by-hop, managed by lb on each connection: header rules cannot change it",
}

// CompileHeaderRule checks a header rule and compiles it. Its errors are
// *SpecError with Index -1, about the first problem found.
func CompileHeaderRule(s HeaderRuleSpec) (*HeaderRule, error) {
	r := &HeaderRule{}
	switch s.Action {
	case "set":
		r.action = actionSet
	case "add":
		r.action = actionAdd
	case "delete":
		r.action = actionDelete
	case "":
		return nil, specErr("action", -1, s.Action, `is missing: write "set", "add" or "delete"`)
	default:
		a := strings.ToLower(s.Action)
		if a == "set" || a == "add" || a == "delete" {
			return nil, specErr("action", -1, s.Action, "is not lower case: write %q", a)
		}
		if meant, ok := actionSynonyms[a]; ok {
			return nil, specErr("action", -1, s.Action, "is not an action: write %q", meant)
		}
		return nil, specErr("action", -1, s.Action, `is not an action: write "set", "add" or "delete"`)
	}
	switch s.On {
	case "", "request":
	case "response":
		r.response = true
	default:
		if o := strings.ToLower(s.On); o == "request" || o == "response" {
			return nil, specErr("on", -1, s.On, "is not lower case: write %q", o)
		}
		return nil, specErr("on", -1, s.On, `is neither "request" nor "response": write one of them, or leave on out for "request"`)
	}
	if msg := fieldNameProblem(s.Name, r.action, r.response); msg != "" {
		return nil, &SpecError{Key: "name", Index: -1, Value: s.Name, Msg: msg}
	}
	r.name = s.Name
	if r.action == actionDelete {
		if s.Value != "" {
			return nil, specErr("value", -1, s.Value, `is not used by "delete": remove it, or use action "set" to replace the field`)
		}
		return r, nil
	}
	t, err := CompileTemplate(s.Value)
	if err != nil {
		return nil, err
	}
	r.value = t
	return r, nil
}

// fieldNameProblem says what is wrong with the name of a header rule, or
// returns "".
func fieldNameProblem(name string, action int, response bool) string {
	if name == "" {
		return `is missing: name the header field to change, like "X-Forwarded-Proto"`
	}
	if i := firstNonTchar(name); i >= 0 {
		if name[i] == ':' {
			return `contains ":": write only the field's name, and its value as value`
		}
		return fmt.Sprintf(`contains %s, which cannot appear in a field name: use letters, digits and "-"`, charAt(name, i))
	}
	lower := strings.ToLower(name)
	if why, ok := reservedFields[lower]; ok {
		return why
	}
	if lower == "host" && !response {
		switch action {
		case actionAdd:
			return `cannot be added: a request has exactly one Host field; use action "set" to replace it`
		case actionDelete:
			return `cannot be deleted: a request must have a Host field; use action "set" to replace it`
		}
	}
	return ""
}

// Response reports whether the rule applies to responses; otherwise it
// applies to requests.
func (r *HeaderRule) Response() bool { return r.response }

// Apply applies the rule to the header fields h, with the variables of env
// (nil leaves them empty). It expands the value in scratch, from its start,
// and returns it, possibly grown, for the next call: once scratch is large
// enough, Apply does not allocate (h's methods aside).
func (r *HeaderRule) Apply(h Editor, env *Env, scratch []byte) []byte {
	switch r.action {
	case actionSet:
		scratch = r.value.Append(scratch[:0], env)
		h.Set(r.name, scratch)
	case actionAdd:
		scratch = r.value.Append(scratch[:0], env)
		h.Add(r.name, scratch)
	default:
		h.Del(r.name)
	}
	return scratch
}
