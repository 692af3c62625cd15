package config

import (
	"lb/rules"
	"lb/syslog"

	"golang.org/x/crypto/bcrypt"

	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// logLevels are the values of global.log_level.
var logLevels = []string{"debug", "info", "warn", "error"}

// Validate checks every setting of c and returns Errors listing every
// problem, each at the line of the offending key (or of its object's table
// header), or nil when c is valid. Parse calls it; a Config made in code can
// be checked with it too, with positions left empty.
//
// Validate also compiles what the serving path needs in another form (the
// routes, header rules, expect lists and hash keys), once: Route.Rule,
// HeaderRule.Rule, Check.ExpectRanges and Backend.HashKeyParts return it.
func (c *Config) Validate() error {
	errs := c.validate()
	c.validated = len(errs) == 0
	return errs.orNil(c.origin.fileList())
}

// Validated reports whether the last Validate of c found nothing wrong,
// so that what it compiled is there.
func (c *Config) Validated() bool { return c.validated }

// validator collects the problems of one Config.
type validator struct {
	c    *Config
	errs Errors
	// tables and conds are the stick tables and the named conditions, by
	// name, as checked first.
	tables map[string]*Table
	conds  map[string]*rules.Cond
}

func (c *Config) validate() Errors {
	v := &validator{c: c}
	v.global()
	v.defaults()
	v.httpDefaults()
	v.tables = v.stickTables()
	v.conds = v.acls(v.tables)
	binds := v.frontends()
	v.backends()
	v.stats(binds)
	return v.errs
}

// stats checks the [stats] table; binds are the frontends' addresses.
func (v *validator) stats(binds map[string]bindUse) {
	s, o := &v.c.Stats, v.c.origin
	const obj = "stats"
	if !o.rejected("stats.bind") && s.Bind != "" {
		norm, problem := checkAddress(s.Bind, false)
		switch {
		case problem != "":
			v.add(o.pos("stats.bind"), obj, "bind address %q%s", s.Bind, problem)
		case binds[norm].object != "":
			prev := binds[norm]
			v.add(o.pos("stats.bind"), obj, "bind address %q is already used by %s%s: give the stats listener an address of its own", s.Bind, prev.object, at(prev.pos))
		}
	}
	if s.Bind == "" {
		for _, k := range []struct {
			name string
			set  bool
		}{{"allow", len(s.Allow) > 0}, {"user", s.User != ""}, {"password_hash", s.PasswordHash != ""}, {"admin", s.Admin}} {
			if k.set {
				v.add(o.pos("stats."+k.name), obj, `%s is set but bind is not: without bind = "ip:port" there is no stats listener`, k.name)
			}
		}
	}
	if !o.rejected("stats.allow") {
		for _, a := range s.Allow {
			if _, ok := parsePrefix(a); !ok {
				v.add(o.pos("stats.allow"), obj, "allow entry %q is neither an IP address nor a CIDR (like \"10.0.0.0/8\")", a)
			}
		}
	}
	if !o.rejected("stats.history_step") && (s.HistoryStep < 0 || (s.HistoryStep > 0 && s.HistoryStep.D() < 100*time.Millisecond) || s.HistoryStep.D() > time.Hour) {
		v.add(o.pos("stats.history_step"), obj, "history_step %s is out of range: use 100ms to 1h (default 10s)", s.HistoryStep)
	}
	if !o.rejected("stats.admin") && s.Admin && s.User == "" && s.PasswordHash == "" {
		v.add(o.pos("stats.admin"), obj, "admin = true needs user and password_hash: the page's actions change servers, so they are never open to anyone")
	}
	if !o.rejected("stats.user") && !o.rejected("stats.password_hash") {
		switch {
		case s.User == "" && s.PasswordHash != "":
			v.add(o.pos("stats.password_hash"), obj, "password_hash is set without user: set both, or neither")
		case s.User != "" && s.PasswordHash == "":
			v.add(o.pos("stats.user"), obj, "user is set without password_hash: set password_hash to a bcrypt hash (lb hash-password makes one)")
		case s.PasswordHash != "":
			if _, err := bcrypt.Cost([]byte(s.PasswordHash)); err != nil {
				v.add(o.pos("stats.password_hash"), obj, "password_hash is not a bcrypt hash (%v): set it to what lb hash-password prints, never to the password itself", err)
			}
		}
	}
}

func (v *validator) add(p Pos, object, format string, args ...any) {
	v.errs = append(v.errs, &Error{Pos: p, Object: object, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) global() {
	g, o := &v.c.Global, v.c.origin
	if !o.rejected("global.log_level") && !slices.Contains(logLevels, g.LogLevel) {
		v.add(o.pos("global.log_level"), "global", "log_level %q is not valid: use one of %s", g.LogLevel, strings.Join(logLevels, ", "))
	}
	if !o.rejected("global.hard_stop_after") && g.HardStopAfter < 0 {
		v.add(o.pos("global.hard_stop_after"), "global", "hard_stop_after %s is negative: use 0 or more", g.HardStopAfter)
	}
	if !o.rejected("global.handshake_grace") && (g.HandshakeGrace < 0 || g.HandshakeGrace.D() > time.Minute) {
		v.add(o.pos("global.handshake_grace"), "global", "handshake_grace %s is out of range: use 0s to 1m", g.HandshakeGrace)
	}
	if !o.rejected("global.startup_timeout") && (g.StartupTimeout <= 0 || g.StartupTimeout.D() > 10*time.Minute) {
		v.add(o.pos("global.startup_timeout"), "global", "startup_timeout %s is out of range: use more than 0s, up to 10m", g.StartupTimeout)
	}
	if !o.rejected("global.syslog") && g.Syslog != "" && g.Syslog != "none" {
		if _, _, err := syslog.ParseTarget(g.Syslog); err != nil {
			v.add(o.pos("global.syslog"), "global", "%v (or \"none\")", err)
		}
	}
	if !o.rejected("global.syslog_facility") {
		if _, err := syslog.Facility(g.SyslogFacility); err != nil {
			v.add(o.pos("global.syslog_facility"), "global", "%v", err)
		}
	}
	if !o.rejected("global.syslog_tag") && (g.SyslogTag == "" || len(g.SyslogTag) > 48 || strings.ContainsAny(g.SyslogTag, " \t\n")) {
		v.add(o.pos("global.syslog_tag"), "global", "syslog_tag %q is not valid: use 1 to 48 characters without spaces", g.SyslogTag)
	}
	if !o.rejected("global.admin_socket") && len(g.AdminSocket) > MaxUnixPath {
		v.add(o.pos("global.admin_socket"), "global", "admin_socket path is %d bytes long: a unix socket path may have at most %d", len(g.AdminSocket), MaxUnixPath)
	}
}

func (v *validator) defaults() {
	d, o := &v.c.Defaults, v.c.origin
	const obj = "defaults"
	if !o.rejected("defaults.balance") && !slices.Contains(Balances, d.Balance) {
		v.add(o.pos("defaults.balance"), obj, "%s", badBalance(d.Balance))
	}
	if !o.rejected("defaults.retries") && (d.Retries < 0 || d.Retries > MaxRetries) {
		v.add(o.pos("defaults.retries"), obj, "%s", badRetries(d.Retries))
	}
	if !o.rejected("defaults.maxconn") && (d.MaxConn < 0 || d.MaxConn > MaxMaxConn) {
		v.add(o.pos("defaults.maxconn"), obj, "%s", badMaxConn(d.MaxConn))
	}
	if !o.rejected("defaults.timeout.connect") && d.Timeout.Connect <= 0 {
		v.add(o.pos("defaults.timeout.connect"), obj, "%s", notPositive("timeout.connect", d.Timeout.Connect))
	}
	if !o.rejected("defaults.timeout.client") && d.Timeout.Client < 0 {
		v.add(o.pos("defaults.timeout.client"), obj, "%s", negative("timeout.client", d.Timeout.Client))
	}
	if !o.rejected("defaults.timeout.server") && d.Timeout.Server < 0 {
		v.add(o.pos("defaults.timeout.server"), obj, "%s", negative("timeout.server", d.Timeout.Server))
	}
	if !o.rejected("defaults.slowstart") && d.SlowStart < 0 {
		v.add(o.pos("defaults.slowstart"), obj, "%s", negative("slowstart", d.SlowStart))
	}
	for _, p := range checkProblems(&d.Check) {
		if !o.rejected("defaults.check." + p.key) {
			v.add(o.pos("defaults.check."+p.key), obj, "%s", p.msg)
		}
	}
}

// checks reports the problems of a backend's or a server's check, for the
// keys that object set itself: an inherited value was reported where it
// was set.
func (v *validator) checks(c *Check, p Pos, obj string) {
	for _, pr := range checkProblems(c) {
		key := "check." + pr.key
		if _, set := p.keys[key]; set && !rejected(p.bad, key) {
			v.add(p.Key(key), obj, "%s", pr.msg)
		}
	}
}

// bindUse is where a bind address was first used.
type bindUse struct {
	object string
	pos    Pos
}

// frontends checks the frontends, and returns their bind addresses.
func (v *validator) frontends() map[string]bindUse {
	c := v.c
	if len(c.Frontends) == 0 && !c.origin.rejected("frontend") {
		v.add(c.origin.first(), "", "no frontend defined: add a [[frontend]] table")
	}
	var backends []string
	for _, b := range c.Backends {
		if b.Name != "" && !slices.Contains(backends, b.Name) {
			backends = append(backends, b.Name)
		}
	}
	seen := map[string]Pos{}
	binds := map[string]bindUse{}
	modes := v.backendModes()
	for i := range c.Frontends {
		f := &c.Frontends[i]
		p := f.Pos
		obj := elemLabel("frontend", f.Name, i+1)
		v.uniqueName(seen, p, obj, "", "frontend", f.Name, "frontend")

		if !rejected(p.bad, "bind") {
			if len(f.Bind) == 0 {
				what := "required"
				if _, set := p.keys["bind"]; set {
					what = "empty"
				}
				v.add(p.Key("bind"), obj, `bind is %s: list the addresses to listen on, like bind = [":8080"]`, what)
			}
			for j, addr := range f.Bind {
				bp := p.keyOr("bind."+strconv.Itoa(j), "bind")
				norm, problem := checkAddress(addr, false)
				if problem != "" {
					v.add(bp, obj, "bind address %q%s", addr, problem)
					continue
				}
				if prev, ok := binds[norm]; ok {
					v.add(bp, obj, "bind address %q is already used by %s%s: bind each address once", addr, prev.object, at(prev.pos))
					continue
				}
				binds[norm] = bindUse{object: obj, pos: bp}
			}
		}

		if !rejected(p.bad, "default_backend") {
			switch {
			case f.DefaultBackend == "":
				v.add(p.Key("default_backend"), obj, `default_backend is required: name the backend that takes this frontend's connections`)
			case !slices.Contains(backends, f.DefaultBackend):
				list := "no backend is defined: add a [[backend]] table"
				if len(backends) > 0 {
					list = "backends: " + strings.Join(backends, ", ")
				}
				v.add(p.Key("default_backend"), obj, "default_backend %q is not defined (%s)", f.DefaultBackend, list)
			}
		}

		if !rejected(p.bad, "maxconn") && !inherited(p, "maxconn", f.MaxConn == c.Defaults.MaxConn) && (f.MaxConn < 0 || f.MaxConn > MaxMaxConn) {
			v.add(p.Key("maxconn"), obj, "%s", badMaxConn(f.MaxConn))
		}
		if !rejected(p.bad, "timeout.client") && !inherited(p, "timeout.client", f.Timeout.Client == c.Defaults.Timeout.Client) && f.Timeout.Client < 0 {
			v.add(p.Key("timeout.client"), obj, "%s", negative("timeout.client", f.Timeout.Client))
		}
		if !rejected(p.bad, "log_format") {
			switch {
			case f.LogFormat != "" && f.LogFormat != LogFormatJSON && f.LogFormat != LogFormatHTTPLog:
				v.add(p.Key("log_format"), obj, "log_format %q is not valid: use %q or %q", f.LogFormat, LogFormatJSON, LogFormatHTTPLog)
			case f.LogFormat == LogFormatHTTPLog && f.Mode != ModeHTTP:
				v.add(p.Key("log_format"), obj, "log_format %q is for HTTP mode: this frontend is in %s mode", f.LogFormat, f.Mode)
			}
		}
		v.httpFrontend(f, obj, modes)
		v.policy(f, obj, v.tables, v.conds, modes)
	}
	return binds
}

func (v *validator) backends() {
	c := v.c
	def := &c.Defaults
	seen := map[string]Pos{}
	for i := range c.Backends {
		b := &c.Backends[i]
		p := b.Pos
		obj := elemLabel("backend", b.Name, i+1)
		v.uniqueName(seen, p, obj, "", "backend", b.Name, "backend")
		if !rejected(p.bad, "balance") && !inherited(p, "balance", b.Balance == def.Balance) && !slices.Contains(Balances, b.Balance) {
			v.add(p.Key("balance"), obj, "%s", badBalance(b.Balance))
		}
		if !rejected(p.bad, "retries") && !inherited(p, "retries", b.Retries == def.Retries) && (b.Retries < 0 || b.Retries > MaxRetries) {
			v.add(p.Key("retries"), obj, "%s", badRetries(b.Retries))
		}
		if !rejected(p.bad, "timeout.connect") && !inherited(p, "timeout.connect", b.Timeout.Connect == def.Timeout.Connect) && b.Timeout.Connect <= 0 {
			v.add(p.Key("timeout.connect"), obj, "%s", notPositive("timeout.connect", b.Timeout.Connect))
		}
		if !rejected(p.bad, "timeout.server") && !inherited(p, "timeout.server", b.Timeout.Server == def.Timeout.Server) && b.Timeout.Server < 0 {
			v.add(p.Key("timeout.server"), obj, "%s", negative("timeout.server", b.Timeout.Server))
		}
		if !rejected(p.bad, "slowstart") && b.SlowStart < 0 {
			v.add(p.Key("slowstart"), obj, "%s", negative("slowstart", b.SlowStart))
		}
		v.checks(&b.Check, p, obj)
		v.httpBackend(b, obj)
		v.backendPolicy(b, obj, v.tables)
		if !rejected(p.bad, "server") && len(b.Servers) == 0 {
			v.add(p.Key("server"), "", "%s has no servers: add a [[backend.server]] table", obj)
		}
		v.servers(b, obj)
	}
}

func (v *validator) servers(b *Backend, bobj string) {
	seen := map[string]Pos{}
	for i := range b.Servers {
		s := &b.Servers[i]
		p := s.Pos
		obj := bobj + ": " + elemLabel("server", s.Name, i+1)
		v.uniqueName(seen, p, obj, bobj, "server", s.Name, "server of a backend")
		if !rejected(p.bad, "address") {
			if s.Address == "" {
				v.add(p.Key("address"), obj, `address is required: add address = "host:port"`)
			} else if _, problem := checkAddress(s.Address, true); problem != "" {
				v.add(p.Key("address"), obj, "address %q%s", s.Address, problem)
			}
		}
		if !rejected(p.bad, "weight") && (s.Weight < 0 || s.Weight > MaxWeight) {
			v.add(p.Key("weight"), obj, "weight %d is out of range (0 to %d)", s.Weight, MaxWeight)
		}
		if !rejected(p.bad, "maxconn") && s.MaxConn < 0 {
			v.add(p.Key("maxconn"), obj, "%s", negative("maxconn", s.MaxConn))
		}
		v.checks(&s.Check, p, obj)
	}
}

// name checks the name of a frontend, backend or server, and reports
// whether it is one that can be checked for uniqueness.
func (v *validator) name(p Pos, obj, name string) bool {
	if rejected(p.bad, "name") {
		return false
	}
	if name == "" {
		v.add(p.Key("name"), obj, `name is required: add name = "..."`)
		return false
	}
	if !validName(name) {
		v.add(p.Key("name"), obj, `name %q is not valid: use only letters, digits, "-", "_" and "."`, name)
	}
	return true
}

// uniqueName checks the name of an element of kind (name), and that no
// element before it in seen has it; within is what holds the element, for
// the message ("" when at the top). It reports whether the name is good
// and the first, and then records where it is.
func (v *validator) uniqueName(seen map[string]Pos, p Pos, obj, within, kind, name, each string) bool {
	if !v.name(p, obj, name) {
		return false
	}
	if first, dup := seen[name]; dup {
		v.add(p.Key("name"), within, "%s %q is already defined%s: give each %s its own name", kind, name, at(first.Key("name")), each)
		return false
	}
	seen[name] = p
	return true
}

// validName reports whether name is made of ASCII letters, digits, "-", "_"
// and ".".
func validName(name string) bool {
	for i := range len(name) {
		if c := name[i]; !isBare(c) && c != '.' {
			return false
		}
	}
	return name != ""
}

// checkAddress checks a "host:port" address. It returns the address in a
// normal form, to compare addresses, or the problem, to follow the quoted
// address in a message. The host may be empty only when needHost is false.
func checkAddress(addr string, needHost bool) (norm, problem string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, _, err2 := net.SplitHostPort(addr + ":1"); err2 == nil {
			return "", ` has no port: write it as "host:port"`
		}
		msg := err.Error()
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			msg = ae.Err
		}
		return "", fmt.Sprintf(` is not "host:port" (%s); write an IPv6 address in brackets, like "[::1]:80"`, msg)
	}
	switch {
	case port == "":
		return "", ` has no port: write it as "host:port"`
	case strings.Trim(port, "0123456789") != "":
		return "", fmt.Sprintf(": port %q is not a number: use a port from 1 to 65535", port)
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil || n > 65535:
		return "", fmt.Sprintf(": port %s is out of range (1 to 65535)", port)
	case n == 0:
		return "", ": port 0 is not allowed: use a port from 1 to 65535"
	}
	switch {
	case host == "":
		if needHost {
			return "", ` has no host: write it as "host:port"`
		}
	case strings.Contains(host, ":") || strings.Trim(host, "0123456789.") == "":
		// An IPv6 literal, or something meant as an IPv4 one.
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Sprintf(": %q is not a valid IP address", host)
		}
		host = ip.String()
	case !needHost:
		// A listening address: lb binds addresses, not names, so that the
		// sockets of every generation share one SO_REUSEPORT group.
		return "", fmt.Sprintf(`: host %q is not an IP address: bind an IP address, like "127.0.0.1:%s", or every address, like ":%s"`, host, port, port)
	case !validHostname(host):
		return "", fmt.Sprintf(": host %q is not an IP address or a host name", host)
	default:
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), ""
}

// validHostname reports whether host is a DNS name: dot-separated labels of
// letters, digits, "-" and "_", not starting or ending with "-".
func validHostname(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			if !isBare(label[i]) {
				return false
			}
		}
	}
	return true
}

// rejected reports whether the dotted key, or a table holding it, is in bad.
func rejected(bad map[string]bool, key string) bool {
	for {
		if bad[key] {
			return true
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return false
		}
		key = key[:i]
	}
}

// inherited reports whether a value came from [defaults] rather than from
// the object: the object did not set the key and the value is the default.
// The defaults are checked, and reported, on their own.
func inherited(p Pos, key string, same bool) bool {
	_, set := p.keys[key]
	return !set && same
}

// keyOr returns the position of the first of the keys that was set, or the
// object's own position.
func (p Pos) keyOr(keys ...string) Pos {
	for _, k := range keys {
		if l, ok := p.keys[k]; ok {
			return Pos{File: p.File, Line: l}
		}
	}
	return Pos{File: p.File, Line: p.Line}
}

// at returns " at file:line" for a known position, else nothing.
func at(p Pos) string {
	if s := p.String(); s != "" {
		return " at " + s
	}
	return ""
}

func badBalance(b string) string {
	return fmt.Sprintf("balance %q is not valid: use one of %s", b, strings.Join(Balances, ", "))
}

func badRetries(n int) string {
	return fmt.Sprintf("retries %d is out of range (0 to %d)", n, MaxRetries)
}

func negative(key string, v any) string {
	return fmt.Sprintf("%s %v is negative: use 0 for no limit", key, v)
}

// badMaxConn is the problem of a frontend's maxconn out of range. Its 0 is
// not "no limit" but a default derived from the file descriptor limit.
func badMaxConn(n int) string {
	if n < 0 {
		return fmt.Sprintf("maxconn %d is negative: use 0 for a default derived from the file descriptor limit, or a number of connections", n)
	}
	return fmt.Sprintf("maxconn %d is more connections than one process can hold (at most %d: Linux gives a process at most 2^31 "+
		"file descriptors, and a connection holds one or two); use 0 for a default derived from the file descriptor limit", n, MaxMaxConn)
}

func notPositive(key string, d Duration) string {
	return fmt.Sprintf("%s must be more than 0, not %s", key, d)
}
