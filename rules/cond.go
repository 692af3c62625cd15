package rules

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"lb/table"
)

// Fields is the read side of a request's header fields, as conditions
// see them. Names are ASCII case-insensitive.
type Fields interface {
	// Get returns the value of the first field of that name, and whether
	// there is one.
	Get(name string) ([]byte, bool)
	// Cookie returns the value of the first cookie of that name in the
	// Cookie fields, and whether there is one.
	Cookie(name string) ([]byte, bool)
}

// MaxTracked is how many tables one frontend may track.
const MaxTracked = 3

// Track is one table a frontend tracks, by name, and the entry of the key
// that the connection or request being looked at has in it (nil when it
// has none: its figures are all 0).
type Track struct {
	Name  string
	Entry *table.Entry
}

// Subject is what conditions look at: a connection, with its request once
// one is read, with its response once one came. The data path fills it in
// place; nothing in it is retained.
type Subject struct {
	// Client is the client's address (from a PROXY protocol header when
	// the frontend accepts one); Local is the address it connected to.
	Client, Local netip.AddrPort
	// SNI is the server name the client asked for in its TLS handshake
	// (lower case, without a final dot); empty without TLS or a name.
	SNI string
	// Method, Host and Target are the request's; Method is nil before a
	// request is read.
	Method, Host, Target []byte
	// Header holds the request's header fields; nil before a request.
	Header Fields
	// Status is the response's status; 0 before a response.
	Status int
	// Tracked are the tables the frontend tracks, with this subject's
	// entries.
	Tracked [MaxTracked]Track
	// Now is the time figures are read at.
	Now time.Time
}

// figure returns figure f of t's entry for s, 0 when s has none.
func (s *Subject) figure(t string, f table.Figure) uint64 {
	for i := range s.Tracked {
		if tr := &s.Tracked[i]; tr.Entry != nil && tr.Name == t {
			return tr.Entry.Get(f, s.Now)
		}
	}
	return 0
}

// Level says when a condition can be decided: at the connection, once a
// request came, or once its response came.
type Level uint8

// Levels, in the order the facts arrive.
const (
	LevelConnection Level = iota
	LevelRequest
	LevelResponse
)

func (l Level) String() string {
	return [...]string{"connection", "request", "response"}[l]
}

// CondSpec is one named condition as configured (an ACL, in HAProxy's
// words). Every key that is set must match (AND); a list matches when any of
// its elements does (OR).
type CondSpec struct {
	Name string
	// Src lists client addresses and CIDR blocks; SrcFile names a file of
	// more, one per line ("#" starts a comment), read by the caller into
	// SrcLines, one element per line of the file, "" for a line with
	// nothing but a comment (SrcFile is kept for messages).
	Src      []string
	SrcFile  string
	SrcLines []string
	// DstPort lists the ports the client may have connected to.
	DstPort []int
	// SNI lists TLS server names, like Host.
	SNI []string
	// Host, PathPrefix, PathRegex, Method and Header are as in RouteSpec;
	// Path lists exact paths.
	Host       []string
	Path       []string
	PathPrefix []string
	PathRegex  string
	Method     []string
	Header     []string
	// Query lists "name=value" (the query parameter has that value) or
	// "name" (it is present), as the client sent them.
	Query []string
	// Cookie lists "name=value" or "name", likewise.
	Cookie []string
	// Status lists response statuses: "404", or a class, "5xx".
	Status []string
	// Table, Figure and Above: the figure of the subject's entry in the
	// table of that name is above the number.
	Table  string
	Figure string
	Above  int
}

// Cond is a compiled CondSpec. It is safe for concurrent use.
type Cond struct {
	name     string
	src      []netip.Prefix
	hasSrc   bool // src or src_file is set: an empty src_file matches no client
	ports    []uint16
	sni      []hostPattern
	route    *Route // host, path_prefix, path_regex, method, header
	paths    []string
	query    []pair
	cookies  []pair
	statuses []statusMatch
	table    string
	figure   table.Figure
	above    uint64
	hasTable bool
	request  bool // a part reads the request
	level    Level
}

// pair is a name and a value to match, or the name alone (present).
type pair struct {
	name, value string
	present     bool
}

// statusMatch is a status code, or a class when class is set.
type statusMatch struct {
	code  int
	class bool
}

// Name returns the condition's name.
func (c *Cond) Name() string { return c.name }

// Level returns when the condition can be decided.
func (c *Cond) Level() Level { return c.level }

// UsesSNI reports whether the condition reads the TLS server name: at the
// connection, lb then peeks at the client's ClientHello for it.
func (c *Cond) UsesSNI() bool { return len(c.sni) > 0 }

// Table returns the name of the table a figure condition reads, or "".
func (c *Cond) Table() string { return c.table }

// CompileCond checks a condition and compiles it. Its errors are
// *SpecError, about the first problem found.
func CompileCond(s CondSpec) (*Cond, error) {
	c := &Cond{name: s.Name}
	set := false
	for i, a := range s.Src {
		p, msg := ParsePrefix(a)
		if msg != "" {
			return nil, &SpecError{Key: "src", Index: i, Value: a, Msg: msg}
		}
		c.src, set = append(c.src, p), true
	}
	for i, line := range s.SrcLines {
		if line == "" {
			continue // a blank line or a comment, kept for the numbering
		}
		p, msg := ParsePrefix(line)
		if msg != "" {
			return nil, specErr("src_file", -1, s.SrcFile, "line %d: %q %s", i+1, line, msg)
		}
		c.src, set = append(c.src, p), true
	}
	if s.SrcFile != "" {
		set = true // an empty list matches no client
	}
	c.hasSrc = set
	for i, p := range s.DstPort {
		if p < 1 || p > 65535 {
			return nil, &SpecError{Key: "dst_port", Index: i, Value: strconv.Itoa(p), Msg: "is not a port: write a number from 1 to 65535"}
		}
		c.ports, set = append(c.ports, uint16(p)), true
	}
	for i, h := range s.SNI {
		p, msg := compileHost(h)
		if msg != "" {
			return nil, &SpecError{Key: "sni", Index: i, Value: h, Msg: msg}
		}
		// The name is known at the connection: from the TLS handshake, or,
		// in TCP mode, from the ClientHello lb peeks at (see UsesSNI).
		c.sni, set = append(c.sni, p), true
	}
	if len(s.Host) > 0 || len(s.PathPrefix) > 0 || s.PathRegex != "" || len(s.Method) > 0 || len(s.Header) > 0 {
		r, err := CompileRoute(RouteSpec{Host: s.Host, PathPrefix: s.PathPrefix, PathRegex: s.PathRegex, Method: s.Method, Header: s.Header})
		if err != nil {
			return nil, err
		}
		c.route, set = r, true
		c.raise(LevelRequest)
	}
	for i, p := range s.Path {
		if msg := pathPrefixProblem(p); msg != "" {
			return nil, &SpecError{Key: "path", Index: i, Value: p, Msg: msg}
		}
		c.paths, set = append(c.paths, p), true
		c.raise(LevelRequest)
	}
	var err error
	if c.query, err = compilePairs("query", s.Query, "a query parameter"); err != nil {
		return nil, err
	}
	if c.cookies, err = compilePairs("cookie", s.Cookie, "a cookie"); err != nil {
		return nil, err
	}
	if len(c.query) > 0 || len(c.cookies) > 0 {
		set = true
		c.raise(LevelRequest)
	}
	for i, st := range s.Status {
		m, ok := parseStatus(st)
		if !ok {
			return nil, &SpecError{Key: "status", Index: i, Value: st, Msg: `is not a status: write a code from 100 to 599, like "404", or a class, like "5xx"`}
		}
		c.statuses, set = append(c.statuses, m), true
		c.raise(LevelResponse)
	}
	if s.Table != "" || s.Figure != "" {
		if s.Figure == "" {
			return nil, &SpecError{Key: "figure", Index: -1, Msg: "is required with table: name what to compare, like \"http_req_rate\""}
		}
		f, err := table.ParseFigure(s.Figure)
		if err != nil {
			return nil, &SpecError{Key: "figure", Index: -1, Value: s.Figure, Msg: "is not a figure: " + strings.TrimPrefix(err.Error(), "table: ")}
		}
		if s.Table == "" {
			return nil, &SpecError{Key: "table", Index: -1, Msg: "is required with figure: name the table whose figure is compared"}
		}
		if s.Above < 0 {
			return nil, &SpecError{Key: "above", Index: -1, Value: strconv.Itoa(s.Above), Msg: "is negative: write the number the figure must be above"}
		}
		c.table, c.figure, c.above, c.hasTable, set = s.Table, f, uint64(s.Above), true, true
	} else if s.Above != 0 {
		return nil, &SpecError{Key: "above", Index: -1, Value: strconv.Itoa(s.Above), Msg: "needs table and figure: name what must be above it"}
	}
	c.request = c.route != nil || len(c.paths) > 0 || len(c.query) > 0 || len(c.cookies) > 0
	if !set {
		return nil, &SpecError{Index: -1, Msg: "a condition needs at least one of src, src_file, dst_port, sni, host, path, path_prefix, path_regex, method, header, query, cookie, status, or table with figure and above"}
	}
	return c, nil
}

// raise makes l the condition's level if it is later.
func (c *Cond) raise(l Level) { c.level = max(c.level, l) }

// RaiseTo makes the condition wait for l at least: a figure of a table
// keyed by the request is known once the request came.
func (c *Cond) RaiseTo(l Level) { c.raise(l) }

// ParsePrefix parses an address (a block of its full length) or a CIDR
// block, IPv4-mapped ones as IPv4; the problem, when there is one, is a
// SpecError message ("is neither an address nor ...").
func ParsePrefix(s string) (netip.Prefix, string) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Sprintf("has bits set past its /%d: write %s", p.Bits(), p.Masked())
		}
		return unmapPrefix(p), ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, "has a zone: write the address without %zone"
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), ""
	}
	return netip.Prefix{}, `is neither an address nor a CIDR block: write one like "192.0.2.7", "10.0.0.0/8" or "2001:db8::/32"`
}

// unmapPrefix turns an IPv4-mapped IPv6 block into the IPv4 one.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// compilePairs compiles the elements of list key.
func compilePairs(key string, list []string, what string) ([]pair, error) {
	var out []pair
	for i, q := range list {
		p, msg := compilePair(q, what)
		if msg != "" {
			return nil, &SpecError{Key: key, Index: i, Value: q, Msg: msg}
		}
		out = append(out, p)
	}
	return out, nil
}

// compilePair parses "name=value" or "name".
func compilePair(s, what string) (pair, string) {
	name, value, hasValue := strings.Cut(s, "=")
	switch {
	case name == "":
		return pair{}, fmt.Sprintf(`has no name: write "name=value" to require that value of %s, or "name" to require it`, what)
	case strings.ContainsAny(name, " \t;&"):
		return pair{}, fmt.Sprintf(`has a space, ";" or "&" in its name: write one %s per element`, what)
	case firstCTL(s) >= 0:
		return pair{}, "has a control character: remove it"
	}
	if !hasValue {
		return pair{name: name, present: true}, ""
	}
	return pair{name: name, value: value}, ""
}

// parseStatus parses "404" or "5xx".
func parseStatus(s string) (statusMatch, bool) {
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && (s[1:] == "xx" || s[1:] == "XX") {
		return statusMatch{code: int(s[0] - '0'), class: true}, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 || !isDigits(s) || n < 100 || n > 599 {
		return statusMatch{}, false
	}
	return statusMatch{code: n}, true
}

// Match reports whether s matches every part of the condition. A part
// that needs what s does not have yet (a request, a response) does not
// match.
func (c *Cond) Match(s *Subject) bool {
	if c.hasSrc && !c.matchSrc(s.Client.Addr()) {
		return false
	}
	if len(c.ports) > 0 && !c.matchPort(s.Local.Port()) {
		return false
	}
	if len(c.sni) > 0 && !c.matchSNI(s.SNI) {
		return false
	}
	if c.request && s.Method == nil {
		return false
	}
	if c.route != nil && !c.route.Match(s.Method, s.Host, s.Target, s.Header) {
		return false
	}
	if len(c.paths) > 0 && !c.matchPath(s.Target) {
		return false
	}
	if len(c.query) > 0 && !c.matchQuery(s.Target) {
		return false
	}
	if len(c.cookies) > 0 && !c.matchCookie(s.Header) {
		return false
	}
	if len(c.statuses) > 0 && !c.matchStatus(s.Status) {
		return false
	}
	return !c.hasTable || s.figure(c.table, c.figure) > c.above
}

func (c *Cond) matchSrc(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range c.src {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *Cond) matchPort(port uint16) bool {
	for _, p := range c.ports {
		if p == port {
			return true
		}
	}
	return false
}

func (c *Cond) matchSNI(sni string) bool {
	if sni == "" {
		return false
	}
	name := []byte(sni) // a server name is short; this stays on the stack
	if len(name) > 255 {
		return false
	}
	var ip [16]byte
	for i := range c.sni {
		if c.sni[i].match(name, false, &ip) {
			return true
		}
	}
	return false
}

// pathOf returns the path of a request target, without the query.
func pathOf(target []byte) []byte {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

func (c *Cond) matchPath(target []byte) bool {
	path := pathOf(target)
	for _, p := range c.paths {
		if string(path) == p {
			return true
		}
	}
	return false
}

func (c *Cond) matchQuery(target []byte) bool {
	i := bytes.IndexByte(target, '?')
	if i < 0 {
		return false
	}
	q := target[i+1:]
	for j := range c.query {
		if v, ok := QueryParam(q, c.query[j].name); ok && (c.query[j].present || string(v) == c.query[j].value) {
			return true
		}
	}
	return false
}

// QueryParam returns the value of the first parameter called name in
// query (what follows "?", as sent: not percent-decoded), and whether
// there is one.
func QueryParam(query []byte, name string) ([]byte, bool) {
	for len(query) > 0 {
		var kv []byte
		if j := bytes.IndexByte(query, '&'); j >= 0 {
			kv, query = query[:j], query[j+1:]
		} else {
			kv, query = query, nil
		}
		k, v, _ := bytes.Cut(kv, []byte{'='})
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

func (c *Cond) matchCookie(h Fields) bool {
	if h == nil {
		return false
	}
	for j := range c.cookies {
		if v, ok := h.Cookie(c.cookies[j].name); ok && (c.cookies[j].present || string(v) == c.cookies[j].value) {
			return true
		}
	}
	return false
}

func (c *Cond) matchStatus(status int) bool {
	if status == 0 {
		return false
	}
	for _, m := range c.statuses {
		if m.code == status || m.class && m.code == status/100 {
			return true
		}
	}
	return false
}
