package config

// Traffic policy: named conditions (ACLs), stick tables, traffic rules,
// and the PROXY protocol.

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"lb/rules"
	"lb/table"
)

// ACL is a named condition that rules, routes and header rules use in
// their when expressions. Every key it sets must match; a list matches when
// any of its elements does.
type ACL struct {
	Name string `toml:"name"`
	// Src lists client addresses and CIDR blocks; SrcFile names a file of
	// more, one per line (relative to the configuration file's directory).
	Src     []string `toml:"src"`
	SrcFile string   `toml:"src_file"`
	// DstPort lists the ports the client connected to.
	DstPort []int `toml:"dst_port"`
	// SNI lists the TLS server names the client asked for.
	SNI        []string `toml:"sni"`
	Host       []string `toml:"host"`
	Path       []string `toml:"path"`
	PathPrefix []string `toml:"path_prefix"`
	PathRegex  string   `toml:"path_regex"`
	Method     []string `toml:"method"`
	Header     []string `toml:"header"`
	Query      []string `toml:"query"`
	Cookie     []string `toml:"cookie"`
	Status     []string `toml:"status"`
	// Table, Figure and Above: the client's figure in that table (one the
	// frontend tracks) is above the number.
	Table  string `toml:"table"`
	Figure string `toml:"figure"`
	Above  int    `toml:"above"`

	Pos  Pos `toml:"-"`
	cond *rules.Cond
}

// Cond returns the condition as Validate compiled it.
func (a *ACL) Cond() *rules.Cond { return a.cond }

// Table is a stick table: counters per key (a client address, a header, a
// cookie, a URL parameter or a path) that rules read, handed to the next
// generation at every reload.
type Table struct {
	Name string `toml:"name"`
	// Key is "src", "header:NAME", "cookie:NAME", "url_param:NAME" or
	// "path". Default src.
	Key string `toml:"key"`
	// Size bounds the entries; the least recently used goes first.
	Size int `toml:"size"`
	// Expire drops an entry this long after its last use.
	Expire Duration `toml:"expire"`
	// Period is the window of the rates.
	Period Duration `toml:"period"`

	Pos              Pos `toml:"-"`
	keyKind, keyName string
}

// Table key kinds.
const (
	KeySrc      = "src"
	KeyHeader   = "header"
	KeyCookie   = "cookie"
	KeyURLParam = "url_param"
	KeyPath     = "path"
)

// Table defaults.
const (
	DefaultTableSize   = 100000
	DefaultTablePeriod = Duration(10 * time.Second)
	DefaultTableExpire = Duration(60 * time.Second)
	MaxTableSize       = 1000000
)

// KeyParts returns the key as Validate parsed it: its kind (KeySrc, ...)
// and, for header, cookie and url_param, the name.
func (t *Table) KeyParts() (kind, name string) { return t.keyKind, t.keyName }

// Spec returns the table's runtime settings.
func (t *Table) Spec() table.Spec {
	return table.Spec{Name: t.Name, Size: t.Size, Expire: t.Expire.D(), Period: t.Period.D()}
}

// Rule is a traffic rule of a frontend: on a connection, a request or a
// response, when its condition matches, it allows, denies, redirects,
// returns a response, tarpits or picks a backend.
type Rule struct {
	On          string   `toml:"on"`
	When        string   `toml:"when"`
	Action      string   `toml:"action"`
	Status      int      `toml:"status"`
	Location    string   `toml:"location"`
	Scheme      string   `toml:"scheme"`
	Prefix      string   `toml:"prefix"`
	Body        string   `toml:"body"`
	ContentType string   `toml:"content_type"`
	Headers     []string `toml:"headers"`
	Delay       Duration `toml:"delay"`
	Backend     string   `toml:"backend"`

	Pos  Pos `toml:"-"`
	rule *rules.Rule
}

// Rule returns the rule as Validate compiled it.
func (r *Rule) Rule() *rules.Rule { return r.rule }

// PROXY protocol versions of send_proxy.
const (
	ProxyV1 = "v1"
	ProxyV2 = "v2"
)

// TrustedPrefixes returns accept_proxy parsed, as src conditions are.
func (f *Frontend) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range f.AcceptProxy {
		if p, msg := rules.ParsePrefix(a); msg == "" {
			out = append(out, p)
		}
	}
	return out
}

// parseTableKey parses a table's key.
func parseTableKey(s string) (kind, name string, msg string) {
	const forms = `write "src", "header:NAME", "cookie:NAME", "url_param:NAME" or "path"`
	switch s {
	case KeySrc, KeyPath:
		return s, "", ""
	}
	kind, name, ok := strings.Cut(s, ":")
	switch {
	case !ok || !slices.Contains([]string{KeyHeader, KeyCookie, KeyURLParam}, kind):
		return "", "", "is not a table key: " + forms
	case name == "":
		return "", "", "names no " + strings.ReplaceAll(kind, "_", " ") + ": " + forms
	case kind == KeyHeader && !isToken(name):
		return "", "", fmt.Sprintf("%q is not a header name", name)
	case strings.ContainsAny(name, " \t;=&"):
		return "", "", fmt.Sprintf("%q is not a %s name", name, strings.ReplaceAll(kind, "_", " "))
	}
	return kind, name, ""
}

// stickTables checks the stick tables, and returns them by name.
func (v *validator) stickTables() map[string]*Table {
	byName := map[string]*Table{}
	seen := map[string]Pos{}
	for i := range v.c.Tables {
		t := &v.c.Tables[i]
		p := t.Pos
		obj := elemLabel("table", t.Name, i+1)
		if v.uniqueName(seen, p, obj, "", "table", t.Name, "table") {
			byName[t.Name] = t
		}
		if t.Key == "" {
			t.Key = KeySrc
		}
		if !rejected(p.bad, "key") {
			kind, name, msg := parseTableKey(t.Key)
			if msg != "" {
				v.add(p.Key("key"), obj, "key %q %s", t.Key, msg)
			}
			t.keyKind, t.keyName = kind, name
		}
		if _, set := p.keys["size"]; !set {
			t.Size = DefaultTableSize
		} else if !rejected(p.bad, "size") && (t.Size < 1 || t.Size > MaxTableSize) {
			v.add(p.Key("size"), obj, "size %d is out of range: write how many keys the table holds, 1 to %d", t.Size, MaxTableSize)
		}
		if _, set := p.keys["period"]; !set {
			t.Period = DefaultTablePeriod
		} else if !rejected(p.bad, "period") && t.Period < Duration(time.Second) {
			v.add(p.Key("period"), obj, "period %s is too short: rates are counted over 1s or more, like \"10s\"", t.Period.D())
		}
		if _, set := p.keys["expire"]; !set {
			t.Expire = max(DefaultTableExpire, t.Period)
		} else if !rejected(p.bad, "expire") && t.Expire < t.Period {
			v.add(p.Key("expire"), obj, "expire %s is shorter than period %s: an entry would go before its rates are counted; write %s or more", t.Expire.D(), t.Period.D(), t.Period.D())
		}
	}
	return byName
}

// acls checks and compiles the named conditions, and returns them by name.
func (v *validator) acls(tables map[string]*Table) map[string]*rules.Cond {
	conds := map[string]*rules.Cond{}
	seen := map[string]Pos{}
	for i := range v.c.ACLs {
		a := &v.c.ACLs[i]
		p := a.Pos
		obj := elemLabel("acl", a.Name, i+1)
		if !v.uniqueName(seen, p, obj, "", "acl", a.Name, "condition") {
			continue
		}
		bad := false
		for k := range p.bad {
			bad = bad || k != "name"
		}
		if bad {
			continue
		}
		spec := rules.CondSpec{Name: a.Name, Src: a.Src, SrcFile: a.SrcFile, DstPort: a.DstPort, SNI: a.SNI,
			Host: a.Host, Path: a.Path, PathPrefix: a.PathPrefix, PathRegex: a.PathRegex, Method: a.Method,
			Header: a.Header, Query: a.Query, Cookie: a.Cookie, Status: a.Status,
			Table: a.Table, Figure: a.Figure, Above: a.Above}
		if a.SrcFile != "" {
			lines, err := readSrcFile(a.SrcFile, p.File)
			if err != nil {
				v.add(p.Key("src_file"), obj, "src_file %q: %v", a.SrcFile, err)
				continue
			}
			spec.SrcLines = lines
		}
		var t *Table
		if a.Table != "" {
			if t = tables[a.Table]; t == nil {
				v.add(p.Key("table"), obj, "table %q is not defined: add a [[table]] with name = %q", a.Table, a.Table)
				continue
			}
		}
		c, err := rules.CompileCond(spec)
		if err != nil {
			v.specError(p, obj, err)
			continue
		}
		if t != nil && t.keyKind != KeySrc {
			c.RaiseTo(rules.LevelRequest) // its key comes with the request
		}
		a.cond = c
		conds[a.Name] = c
	}
	return conds
}

// readSrcFile reads a list of addresses and CIDR blocks, one per line,
// "#" starting a comment. A relative name is relative to the directory of
// the configuration file.
func readSrcFile(name, cfgFile string) ([]string, error) {
	if !filepath.IsAbs(name) && cfgFile != "" {
		name = filepath.Join(filepath.Dir(cfgFile), name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		// Blank lines stay, as "", so that messages give line numbers.
		out = append(out, strings.TrimSpace(line))
	}
	return out, sc.Err()
}

// policy checks a frontend's traffic policy: PROXY protocol, tracked
// tables, rules.
func (v *validator) policy(f *Frontend, obj string, tables map[string]*Table, conds map[string]*rules.Cond, modes map[string]string) {
	p := f.Pos
	for i, a := range f.AcceptProxy {
		if _, msg := rules.ParsePrefix(a); msg != "" {
			v.add(p.keyOr("accept_proxy."+strconv.Itoa(i), "accept_proxy"), obj,
				"accept_proxy %q %s (the load balancers that send PROXY protocol headers)", a, msg)
		}
	}
	if len(f.Track) > rules.MaxTracked {
		v.add(p.Key("track"), obj, "track lists %d tables: a frontend tracks at most %d", len(f.Track), rules.MaxTracked)
	}
	tracked := map[string]bool{}
	for i, name := range f.Track {
		pos := p.keyOr("track."+strconv.Itoa(i), "track")
		t := tables[name]
		switch {
		case t == nil:
			v.add(pos, obj, "track: table %q is not defined: add a [[table]] with name = %q", name, name)
		case tracked[name]:
			v.add(pos, obj, "track: table %q is listed twice", name)
		case f.Mode == ModeTCP && t.keyKind != KeySrc && t.keyKind != "":
			v.add(pos, obj, "track: table %q has key %q, which needs an HTTP request: a TCP frontend tracks tables keyed by src", name, t.Key)
		}
		tracked[name] = true
	}
	names := make(map[string]int, len(v.c.Backends))
	for i := range v.c.Backends {
		names[v.c.Backends[i].Name] = i
	}
	for i := range f.Rules {
		r := &f.Rules[i]
		rp := r.Pos
		robj := obj + ": " + elemLabel("rule", "", i+1)
		if len(rp.bad) > 0 {
			continue
		}
		if !v.trackedConds(rp, robj, r.When, conds, tracked) {
			continue
		}
		target := -1
		if r.Backend != "" {
			bm, ok := modes[r.Backend]
			switch {
			case !ok:
				v.add(rp.Key("backend"), robj, "backend %q is not defined", r.Backend)
				continue
			case bm != f.Mode && slices.Contains(Modes, bm):
				v.add(rp.Key("backend"), robj, "backend %q is in mode %q but this frontend is in mode %q", r.Backend, bm, f.Mode)
				continue
			}
			target = names[r.Backend]
		}
		spec := rules.RuleSpec{On: r.On, When: r.When, Action: r.Action, Status: r.Status, Location: r.Location,
			Scheme: r.Scheme, Prefix: r.Prefix, Body: r.Body, ContentType: r.ContentType, Headers: r.Headers,
			Delay: r.Delay.D(), Backend: r.Backend, BackendTarget: target}
		if f.Mode == ModeTCP && spec.On != rules.OnConnection {
			v.add(rp.Key("on"), robj, "a TCP frontend has only connection rules: write on = %q", rules.OnConnection)
			continue
		}
		if f.Mode == ModeHTTP && spec.On == rules.OnConnection && spec.Action == "use_backend" {
			v.add(rp.Key("action"), robj, "an HTTP frontend picks backends per request: write this use_backend rule with on = %q", rules.OnRequestP)
			continue
		}
		rule, err := rules.CompileRule(spec, conds)
		if err != nil {
			v.specError(rp, robj, err)
			continue
		}
		r.rule = rule
	}
}

// trackedConds checks that the conditions of a when expression read only
// tables the frontend tracks. It reports false when it found a problem.
func (v *validator) trackedConds(p Pos, obj, when string, conds map[string]*rules.Cond, tracked map[string]bool) bool {
	if when == "" {
		return true
	}
	e, err := rules.CompileExpr(when, conds)
	if err != nil {
		v.specError(p, obj, err)
		return false
	}
	ok := true
	e.Conds(func(c *rules.Cond) {
		if t := c.Table(); t != "" && !tracked[t] && ok {
			v.add(p.Key("when"), obj, "condition %q reads table %q, which this frontend does not track: add %q to its track list", c.Name(), t, t)
			ok = false
		}
	})
	return ok
}

// backendPolicy checks a backend's PROXY protocol and stickiness settings.
func (v *validator) backendPolicy(b *Backend, obj string, tables map[string]*Table) {
	p := b.Pos
	if b.SendProxy != "" && b.SendProxy != ProxyV1 && b.SendProxy != ProxyV2 && !rejected(p.bad, "send_proxy") {
		v.add(p.Key("send_proxy"), obj, "send_proxy %q is not a PROXY protocol version: write %q or %q", b.SendProxy, ProxyV1, ProxyV2)
	}
	if b.Stick != "" && !rejected(p.bad, "stick") {
		t := tables[b.Stick]
		switch {
		case t == nil:
			v.add(p.Key("stick"), obj, "stick: table %q is not defined: add a [[table]] with name = %q", b.Stick, b.Stick)
		case b.Mode == ModeTCP && t.keyKind != KeySrc && t.keyKind != "":
			v.add(p.Key("stick"), obj, "stick: table %q has key %q, which needs an HTTP request: a TCP backend sticks on a table keyed by src", b.Stick, t.Key)
		}
	}
}
