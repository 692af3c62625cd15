package rules

import (
	"bytes"
	"errors"
	"fmt"
	"lb/ipbytes"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Header is the read side of a message's header fields. Names are ASCII
// case-insensitive.
type Header interface {
	// Get returns the value of the first field of that name, and whether
	// there is one.
	Get(name string) ([]byte, bool)
}

// RouteSpec is one routing rule as configured. Every condition that is set
// must match (AND); a list matches when any of its elements does (OR). An
// empty list is a condition that is not set.
type RouteSpec struct {
	// Host lists host names. "api.example.com" matches that name;
	// "*.example.com" matches any subdomain, at any depth
	// ("a.example.com", "a.b.example.com"), but not example.com itself.
	// Names are compared case-insensitively, the request's port is
	// ignored ("API.example.com:8443" matches "api.example.com"), and so
	// is a final dot. An IPv6 address is written in brackets, "[::1]", and
	// compared as an address; an IPv4 address is written as such,
	// "192.0.2.1", and compared as text.
	Host []string
	// PathPrefix lists path prefixes, each starting with "/". A prefix is a
	// plain byte prefix of the path, as the client sent it (not
	// percent-decoded): "/api" matches "/api", "/api/v1" and "/apis".
	PathPrefix []string
	// PathRegex is a regular expression in Go's RE2 syntax that must match
	// the path, as the client sent it, without the query. It is not
	// anchored: use ^ and $ to match the whole path.
	PathRegex string
	// Method lists methods, which are tokens compared case-sensitively, as
	// HTTP methods are: "GET", "POST", ...
	Method []string
	// Header lists header conditions, each of which must match: "Name:
	// value" requires the first field called Name to have exactly that
	// value, optional whitespace around it aside ("Name:" requires it to
	// be empty); "Name" alone requires the field to be present.
	Header []string
	// HasWhen says the route has a when expression (set on the compiled
	// route with SetWhen), which is a condition of its own.
	HasWhen bool
}

// Route is a compiled RouteSpec. It is safe for concurrent use.
type Route struct {
	hosts    []hostPattern
	prefixes []string
	re       *regexp.Regexp
	methods  []string
	headers  []headerCond
	when     *Expr
}

// SetWhen adds e to the route's conditions (nil: none).
func (r *Route) SetWhen(e *Expr) { r.when = e }

// headerCond is a compiled element of RouteSpec.Header.
type headerCond struct {
	name    string
	value   string
	present bool // only presence is required; value is unused
}

// noCondition is the message of a route without any condition.
const noCondition = "a route needs at least one condition: host, path_prefix, path_regex, method, header or when"

// CompileRoute checks a route's conditions and compiles them. Its errors are
// *SpecError, about the first problem found.
func CompileRoute(s RouteSpec) (*Route, error) {
	if len(s.Host) == 0 && len(s.PathPrefix) == 0 && s.PathRegex == "" && len(s.Method) == 0 && len(s.Header) == 0 && !s.HasWhen {
		return nil, &SpecError{Index: -1, Msg: noCondition}
	}
	r := &Route{}
	for i, h := range s.Host {
		p, msg := compileHost(h)
		if msg != "" {
			return nil, &SpecError{Key: "host", Index: i, Value: h, Msg: msg}
		}
		r.hosts = append(r.hosts, p)
	}
	for i, p := range s.PathPrefix {
		if msg := pathPrefixProblem(p); msg != "" {
			return nil, &SpecError{Key: "path_prefix", Index: i, Value: p, Msg: msg}
		}
		r.prefixes = append(r.prefixes, p)
	}
	if s.PathRegex != "" {
		re, err := regexp.Compile(s.PathRegex)
		if err != nil {
			return nil, &SpecError{Key: "path_regex", Index: -1, Value: s.PathRegex, Msg: regexProblem(s.PathRegex, err)}
		}
		r.re = re
	}
	for i, m := range s.Method {
		if msg := methodProblem(m); msg != "" {
			return nil, &SpecError{Key: "method", Index: i, Value: m, Msg: msg}
		}
		r.methods = append(r.methods, m)
	}
	for i, h := range s.Header {
		c, msg := compileHeaderCond(h)
		if msg != "" {
			return nil, &SpecError{Key: "header", Index: i, Value: h, Msg: msg}
		}
		r.headers = append(r.headers, c)
	}
	return r, nil
}

// pathPrefixProblem says what is wrong with a path prefix, or returns "".
func pathPrefixProblem(p string) string {
	switch {
	case p == "":
		return `is empty: write a prefix starting with "/", like "/api/"`
	case strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://"):
		return `is a URL: write only its path, like "/api/"`
	case p[0] != '/':
		return fmt.Sprintf(`does not start with "/": write %q`, "/"+p)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '?':
			return `contains "?", but paths are matched without the query: remove the query`
		case c == '#':
			return `contains "#", but clients do not send the fragment: remove it`
		case c <= ' ' || c >= 0x7f:
			return fmt.Sprintf("contains %s, which clients send percent-encoded: write %s instead, since paths are compared as sent", charAt(p, i), percentEncode(p, i))
		}
	}
	return ""
}

// percentEncode returns the percent-encoding of the character that starts
// at s[i], like "%20" or "%C3%A9".
func percentEncode(s string, i int) string {
	n := 1
	if s[i] >= 0x80 {
		// The whole UTF-8 sequence: the lead byte and its continuations.
		for i+n < len(s) && s[i+n]&0xc0 == 0x80 && n < 4 {
			n++
		}
	}
	var b strings.Builder
	for _, c := range []byte(s[i : i+n]) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// regexProblem turns a regexp compile error into a SpecError message.
func regexProblem(re string, err error) string {
	const fix = "fix it in Go's RE2 syntax (https://pkg.go.dev/regexp/syntax)"
	var se *syntax.Error
	if !errors.As(err, &se) {
		return "is not a valid regular expression: " + err.Error() + ": " + fix
	}
	what := string(se.Code)
	if se.Expr != "" && se.Expr != re {
		what += " at `" + clip(se.Expr, 32) + "`"
	}
	switch se.Code {
	case syntax.ErrInvalidPerlOp:
		what += " (RE2 has no lookahead or lookbehind)"
	case syntax.ErrInvalidEscape:
		if len(se.Expr) == 2 && '1' <= se.Expr[1] && se.Expr[1] <= '9' {
			what += " (RE2 has no backreferences)"
		}
	case syntax.ErrInvalidRepeatSize:
		what += " (a count is at most 1000, nested counts multiplied)"
	case syntax.ErrLarge, syntax.ErrNestingDepth:
		return "is too complex (" + what + "): write a simpler regular expression, or use path_prefix"
	}
	return "is not a valid regular expression: " + what + ": " + fix
}

// standardMethods are the methods of RFC 9110 and PATCH, which are upper
// case: a method that differs from one of them only by case is a mistake.
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// methodProblem says what is wrong with a method, or returns "".
func methodProblem(m string) string {
	if m == "" {
		return `is empty: write a method, like "GET"`
	}
	if i := firstNonTchar(m); i >= 0 {
		if c := m[i]; c == ' ' || c == ',' || c == '|' {
			return `lists several methods in one string: write each as its own element, like ["GET", "HEAD"]`
		}
		return fmt.Sprintf(`contains %s, which cannot appear in a method: write a method, like "GET"`, charAt(m, i))
	}
	for _, std := range standardMethods {
		if m != std && strings.EqualFold(m, std) {
			return fmt.Sprintf("methods are case-sensitive: write %q", std)
		}
	}
	return ""
}

// compileHeaderCond checks a header condition and compiles it. The problem,
// when there is one, is a SpecError message.
func compileHeaderCond(s string) (headerCond, string) {
	const forms = `write "Name: value" to require that value, or "Name" to require the field`
	if s == "" {
		return headerCond{}, "is empty: " + forms
	}
	name, value, hasValue := strings.Cut(s, ":")
	if name == "" {
		return headerCond{}, `has no field name before ":": ` + forms
	}
	if i := firstNonTchar(name); i >= 0 {
		trimmed := strings.TrimRight(name, " \t")
		switch {
		case hasValue && trimmed != "" && firstNonTchar(trimmed) < 0:
			return headerCond{}, `has whitespace before ":": write "Name: value", with the colon right after the name`
		case !hasValue && (name[i] == ' ' || name[i] == '\t'):
			return headerCond{}, `has whitespace but no ":": ` + forms
		}
		return headerCond{}, fmt.Sprintf("has %s in its field name, which names cannot contain: %s", charAt(name, i), forms)
	}
	if !hasValue {
		return headerCond{name: name, present: true}, ""
	}
	value = trimOWS(value)
	if i := firstCTL(value); i >= 0 {
		return headerCond{}, fmt.Sprintf("has %s in its value, which field values cannot contain: remove it", charAt(value, i))
	}
	return headerCond{name: name, value: value}, ""
}

// trimOWS removes the optional whitespace (spaces and tabs) around a field
// value.
func trimOWS[T string | []byte](s T) T {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// Match reports whether a request matches every condition of the route.
// method is the request's method; host its host, from the Host field or the
// target's authority, port included or not; path the path of its target, as
// sent (anything from a "?" on is ignored); h its header fields, or nil for
// none.
func (r *Route) Match(method, host, path []byte, h Header) bool {
	if len(r.methods) > 0 && !r.matchMethod(method) {
		return false
	}
	if len(r.hosts) > 0 && !r.matchHost(host) {
		return false
	}
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if len(r.prefixes) > 0 && !r.matchPrefix(path) {
		return false
	}
	if len(r.headers) > 0 && !r.matchHeaders(h) {
		return false
	}
	return r.re == nil || r.re.Match(path)
}

func (r *Route) matchMethod(method []byte) bool {
	for _, m := range r.methods {
		if string(method) == m {
			return true
		}
	}
	return false
}

func (r *Route) matchHost(host []byte) bool {
	name, ip6, ok := splitHost(host)
	if !ok {
		return false
	}
	var ip [16]byte
	if ip6 {
		if ip, ok = ipbytes.ParseIPv6(name); !ok {
			return false
		}
	}
	for i := range r.hosts {
		if r.hosts[i].match(name, ip6, &ip) {
			return true
		}
	}
	return false
}

func (r *Route) matchPrefix(path []byte) bool {
	for _, p := range r.prefixes {
		if len(path) >= len(p) && string(path[:len(p)]) == p {
			return true
		}
	}
	return false
}

func (r *Route) matchHeaders(h Header) bool {
	if h == nil {
		return false
	}
	for i := range r.headers {
		c := &r.headers[i]
		v, ok := h.Get(c.name)
		if !ok || !c.present && string(trimOWS(v)) != c.value {
			return false
		}
	}
	return true
}

// Table is an ordered list of routes; the first match wins. It is safe for
// concurrent use.
type Table struct {
	routes  []*Route
	targets []int
}

// NewTable returns a table of routes, in order. targets[i] is what Lookup
// returns when routes[i] is the first to match: an opaque value to the
// table, like a backend's index. NewTable panics when the slices differ in
// length or a route is nil.
func NewTable(routes []*Route, targets []int) *Table {
	if len(routes) != len(targets) {
		panic(fmt.Sprintf("rules.NewTable: %d routes but %d targets", len(routes), len(targets)))
	}
	for i, r := range routes {
		if r == nil {
			panic(fmt.Sprintf("rules.NewTable: route %d is nil", i))
		}
	}
	return &Table{
		routes:  append([]*Route(nil), routes...),
		targets: append([]int(nil), targets...),
	}
}

// Lookup returns the target of the first route that matches the request (see
// Route.Match for the arguments), or ok false when none does. A nil table
// matches nothing.
func (t *Table) Lookup(method, host, path []byte, h Header) (target int, ok bool) {
	return t.LookupSubject(method, host, path, h, nil)
}

// LookupSubject is Lookup for routes that may have when expressions, which
// are evaluated for s (nil: a route with one does not match).
func (t *Table) LookupSubject(method, host, path []byte, h Header, s *Subject) (target int, ok bool) {
	if t == nil {
		return 0, false
	}
	for i, r := range t.routes {
		if r.Match(method, host, path, h) && (r.when == nil || s != nil && r.when.Match(s)) {
			return t.targets[i], true
		}
	}
	return 0, false
}
