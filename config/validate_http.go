package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"lb/rules"
)

// Hash keys of balance = "hash".
const (
	HashURI    = "uri"
	HashPath   = "path"
	HashHeader = "header"
	HashCookie = "cookie"
)

// ParseHashKey splits a hash_key into its kind (uri, path, header, cookie)
// and, for header and cookie, the name.
func ParseHashKey(s string) (kind, name string, err error) {
	switch s {
	case HashURI, HashPath:
		return s, "", nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || (kind != HashHeader && kind != HashCookie) {
		return "", "", fmt.Errorf(`hash_key %q is not valid: use "uri", "path", "header:NAME" or "cookie:NAME"`, s)
	}
	if !isToken(name) {
		return "", "", fmt.Errorf("hash_key %q: %q is not a valid %s name", s, name, kind)
	}
	return kind, name, nil
}

// TLS versions and ALPN protocols a frontend accepts.
var (
	tlsVersions = []string{"1.0", "1.1", "1.2", "1.3"}
	alpnProtos  = []string{"h2", "http/1.1"}
)

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func badMode(m string) string {
	return fmt.Sprintf("mode %q is not valid: use %q or %q", m, ModeTCP, ModeHTTP)
}

// httpDefaults checks the HTTP settings of [global] and [defaults].
func (v *validator) httpDefaults() {
	g, d, o := &v.c.Global, &v.c.Defaults, v.c.origin
	if !o.rejected("global.close_spread_time") && (g.CloseSpreadTime < 0 || g.CloseSpreadTime.D() > time.Hour) {
		v.add(o.pos("global.close_spread_time"), "global", "close_spread_time %s is out of range: use 0s to 1h", g.CloseSpreadTime)
	}
	if !o.rejected("global.http_head_budget") && g.HTTPHeadBudget != 0 && g.HTTPHeadBudget < MinHTTPHeadBudget {
		v.add(o.pos("global.http_head_budget"), "global", "http_head_budget %d is out of range: use 0 (no limit) or %d bytes or more", g.HTTPHeadBudget, MinHTTPHeadBudget)
	}
	const obj = "defaults"
	if !o.rejected("defaults.mode") && !slices.Contains(Modes, d.Mode) {
		v.add(o.pos("defaults.mode"), obj, "%s", badMode(d.Mode))
	}
	for _, t := range []struct {
		key      string
		d        Duration
		positive bool
	}{
		{"http_request", d.Timeout.HTTPRequest, true},
		{"http_keep_alive", d.Timeout.HTTPKeepAlive, true},
		{"tunnel", d.Timeout.Tunnel, false},
		{"queue", d.Timeout.Queue, false},
	} {
		key := "timeout." + t.key
		if o.rejected("defaults." + key) {
			continue
		}
		if t.positive && t.d <= 0 {
			v.add(o.pos("defaults."+key), obj, "%s", notPositive(key, t.d))
		} else if t.d < 0 {
			v.add(o.pos("defaults."+key), obj, "%s", negative(key, t.d))
		}
	}
	for _, p := range httpOptionProblems(&d.HTTP) {
		if !o.rejected("defaults.http." + p.key) {
			v.add(o.pos("defaults.http."+p.key), obj, "%s", p.msg)
		}
	}
}

type keyProblem struct{ key, msg string }

func httpOptionProblems(h *HTTPOptions) []keyProblem {
	var ps []keyProblem
	if h.MaxHeaderBytes < 1024 || h.MaxHeaderBytes > MaxMaxHeaderBytes {
		ps = append(ps, keyProblem{"max_header_bytes", fmt.Sprintf("max_header_bytes %d is out of range (1024 to %d)", h.MaxHeaderBytes, MaxMaxHeaderBytes)})
	}
	if h.MaxHeaders < 1 || h.MaxHeaders > MaxMaxHeaders {
		ps = append(ps, keyProblem{"max_headers", fmt.Sprintf("max_headers %d is out of range (1 to %d)", h.MaxHeaders, MaxMaxHeaders)})
	}
	if h.MaxBodyBytes < 0 {
		ps = append(ps, keyProblem{"max_body_bytes", negative("max_body_bytes", h.MaxBodyBytes)})
	}
	if h.RequestIDHeader != "" && !isToken(h.RequestIDHeader) {
		ps = append(ps, keyProblem{"request_id_header", fmt.Sprintf("request_id_header %q is not a valid header name", h.RequestIDHeader)})
	}
	return ps
}

// backendModes maps each backend's name to its mode.
func (v *validator) backendModes() map[string]string {
	m := map[string]string{}
	for _, b := range v.c.Backends {
		if _, seen := m[b.Name]; !seen {
			m[b.Name] = b.Mode
		}
	}
	return m
}

// httpFrontend checks the mode of frontend f and its HTTP settings.
func (v *validator) httpFrontend(f *Frontend, obj string, modes map[string]string) {
	p := f.Pos
	if !rejected(p.bad, "mode") && !slices.Contains(Modes, f.Mode) {
		if _, set := p.keys["mode"]; set {
			v.add(p.Key("mode"), obj, "%s", badMode(f.Mode))
		}
		return
	}
	if bm, ok := modes[f.DefaultBackend]; ok && bm != f.Mode && slices.Contains(Modes, bm) && !rejected(p.bad, "default_backend") {
		v.add(p.keyOr("default_backend", "mode"), obj, "default_backend %q is in mode %q but this frontend is in mode %q: set mode = %q in both", f.DefaultBackend, bm, f.Mode, ModeHTTP)
	}
	if f.Mode != ModeHTTP {
		for _, key := range []string{"route", "header", "http", "tls", "timeout.http_request", "timeout.http_keep_alive"} {
			if _, set := p.keys[key]; set || hasKeyPrefix(p, key+".") {
				v.add(p.Key(key), obj, "%s needs mode = %q (this frontend is in mode %q)", key, ModeHTTP, f.Mode)
			}
		}
		return
	}
	for _, t := range []struct {
		key string
		d   Duration
		def Duration
	}{
		{"timeout.http_request", f.Timeout.HTTPRequest, v.c.Defaults.Timeout.HTTPRequest},
		{"timeout.http_keep_alive", f.Timeout.HTTPKeepAlive, v.c.Defaults.Timeout.HTTPKeepAlive},
	} {
		if !rejected(p.bad, t.key) && !inherited(p, t.key, t.d == t.def) && t.d <= 0 {
			v.add(p.Key(t.key), obj, "%s", notPositive(t.key, t.d))
		}
	}
	for _, pr := range httpOptionProblems(&f.HTTP) {
		key := "http." + pr.key
		if _, set := p.keys[key]; set && !rejected(p.bad, key) {
			v.add(p.Key(key), obj, "%s", pr.msg)
		}
	}
	for i := range f.Routes {
		v.route(&f.Routes[i], obj+": "+elemLabel("route", "", i+1), f.Mode, modes)
	}
	v.headerRules(f.Headers, obj)
	v.frontendTLS(f, obj)
}

// hasKeyPrefix reports whether the object set a key under prefix.
func hasKeyPrefix(p Pos, prefix string) bool {
	for k := range p.keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func (v *validator) route(r *Route, obj, mode string, modes map[string]string) {
	p := r.Pos
	if !rejected(p.bad, "backend") {
		bm, ok := modes[r.Backend]
		switch {
		case r.Backend == "":
			v.add(p.Key("backend"), obj, `backend is required: name the backend that takes the requests this route matches`)
		case !ok:
			v.add(p.Key("backend"), obj, "backend %q is not defined", r.Backend)
		case bm != mode && slices.Contains(Modes, bm):
			v.add(p.Key("backend"), obj, "backend %q is in mode %q: a route of an HTTP frontend needs a backend with mode = %q", r.Backend, bm, ModeHTTP)
		}
	}
	for _, k := range []string{"host", "path_prefix", "path_regex", "method", "header", "when"} {
		if rejected(p.bad, k) {
			return
		}
	}
	var err error
	r.rule, err = rules.CompileRoute(routeSpec(r))
	if err != nil {
		v.specError(p, obj, err)
		return
	}
	r.rule.SetWhen(v.when(p, obj, r.When, rules.LevelRequest))
}

// when compiles a when expression of a route or header rule, which is
// evaluated at level; nil when there is none or it is wrong (reported).
func (v *validator) when(p Pos, obj, when string, level rules.Level) *rules.Expr {
	if when == "" {
		return nil
	}
	e, err := rules.CompileExpr(when, v.conds)
	if err != nil {
		v.specError(p, obj, err)
		return nil
	}
	if e.Level() > level {
		v.add(p.Key("when"), obj, "when %q needs a %s, which is not there yet when this is applied", when, e.Level())
		return nil
	}
	return e
}

// routeSpec returns the rules package's form of a route.
func routeSpec(r *Route) rules.RouteSpec {
	return rules.RouteSpec{Host: r.Host, PathPrefix: r.PathPrefix, PathRegex: r.PathRegex, Method: r.Method, Header: r.Header, HasWhen: r.When != ""}
}

// headerRuleSpec returns the rules package's form of a header rule.
func headerRuleSpec(h *HeaderRule) rules.HeaderRuleSpec {
	return rules.HeaderRuleSpec{Action: h.Action, On: h.On, Name: h.Name, Value: h.Value}
}

func (v *validator) headerRules(hs []HeaderRule, owner string) {
	for i := range hs {
		h := &hs[i]
		p := h.Pos
		obj := owner + ": " + elemLabel("header rule", "", i+1)
		bad := false
		for _, k := range []string{"action", "on", "name", "value", "when"} {
			bad = bad || rejected(p.bad, k)
		}
		if bad {
			continue
		}
		var err error
		h.rule, err = rules.CompileHeaderRule(headerRuleSpec(h))
		if err != nil {
			v.specError(p, obj, err)
			continue
		}
		level := rules.LevelRequest
		if h.rule.Response() {
			level = rules.LevelResponse
		}
		h.rule.SetWhen(v.when(p, obj, h.When, level))
	}
}

// specError reports an error of the rules package at the key it names.
func (v *validator) specError(p Pos, obj string, err error) {
	if err == nil {
		return
	}
	var se *rules.SpecError
	if !errors.As(err, &se) {
		v.add(p, obj, "%v", err)
		return
	}
	pos := p.Key(se.Key)
	if se.Index >= 0 {
		pos = p.keyOr(se.Key+"."+strconv.Itoa(se.Index), se.Key)
	}
	v.add(pos, obj, "%s", se.Error())
}

func (v *validator) frontendTLS(f *Frontend, obj string) {
	p, t := f.Pos, &f.TLS
	if _, set := p.keys["tls"]; !set && !hasKeyPrefix(p, "tls.") {
		return
	}
	if !rejected(p.bad, "tls.cert") && len(t.Certs) == 0 {
		v.add(p.Key("tls"), obj, `tls: no certificate: add cert = [{ cert_file = "site.crt", key_file = "site.key" }]`)
	}
	for i := range t.Certs {
		c := &t.Certs[i]
		cobj := obj + ": tls: " + elemLabel("cert", "", i+1)
		if c.CertFile == "" && !rejected(c.Pos.bad, "cert_file") {
			v.add(c.Pos.Key("cert_file"), cobj, "cert_file is required: the PEM file of the certificate chain")
		}
		if c.KeyFile == "" && !rejected(c.Pos.bad, "key_file") {
			v.add(c.Pos.Key("key_file"), cobj, "key_file is required: the PEM file of the certificate's private key")
		}
	}
	if !rejected(p.bad, "tls.min_version") && t.MinVersion != "" && !slices.Contains(tlsVersions, t.MinVersion) {
		v.add(p.Key("tls.min_version"), obj, "tls: min_version %q is not valid: use one of %s", t.MinVersion, strings.Join(tlsVersions, ", "))
	}
	if !rejected(p.bad, "tls.alpn") {
		for i, a := range t.ALPN {
			if !slices.Contains(alpnProtos, a) {
				v.add(p.keyOr("tls.alpn."+strconv.Itoa(i), "tls.alpn"), obj, "tls: alpn %q is not supported: use %s", a, strings.Join(alpnProtos, ", "))
			}
		}
	}
}

// httpBackend checks the mode of backend b and its HTTP settings.
func (v *validator) httpBackend(b *Backend, obj string) {
	p, def := b.Pos, &v.c.Defaults
	if !rejected(p.bad, "mode") && !slices.Contains(Modes, b.Mode) {
		if _, set := p.keys["mode"]; set {
			v.add(p.Key("mode"), obj, "%s", badMode(b.Mode))
		}
		return
	}
	if !rejected(p.bad, "timeout.queue") && !inherited(p, "timeout.queue", b.Timeout.Queue == def.Timeout.Queue) && b.Timeout.Queue < 0 {
		v.add(p.Key("timeout.queue"), obj, "%s", negative("timeout.queue", b.Timeout.Queue))
	}
	if b.Mode != ModeHTTP {
		if b.Balance == BalanceHash && !rejected(p.bad, "balance") {
			v.add(p.keyOr("balance"), obj, `balance "hash" needs mode = %q (in mode %q use "source")`, ModeHTTP, b.Mode)
		}
		for _, key := range []string{"hash_key", "cookie", "header", "tls", "timeout.tunnel", "proto"} {
			if _, set := p.keys[key]; set || hasKeyPrefix(p, key+".") {
				v.add(p.Key(key), obj, "%s needs mode = %q (this backend is in mode %q)", key, ModeHTTP, b.Mode)
			}
		}
		return
	}
	if !rejected(p.bad, "hash_key") {
		var err error
		if b.hashKind, b.hashName, err = ParseHashKey(b.HashKey); err != nil {
			v.add(p.Key("hash_key"), obj, "%v", err)
		}
	}
	if !rejected(p.bad, "cookie") && b.Cookie != "" && !isToken(b.Cookie) {
		v.add(p.Key("cookie"), obj, "cookie %q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~)", b.Cookie)
	}
	for _, t := range []struct {
		key string
		d   Duration
		def Duration
	}{
		{"timeout.tunnel", b.Timeout.Tunnel, def.Timeout.Tunnel},
	} {
		if !rejected(p.bad, t.key) && !inherited(p, t.key, t.d == t.def) && t.d < 0 {
			v.add(p.Key(t.key), obj, "%s", negative(t.key, t.d))
		}
	}
	v.headerRules(b.Headers, obj)
	switch {
	case rejected(p.bad, "proto"):
	case b.Proto != "" && b.Proto != ProtoH1 && b.Proto != ProtoH2:
		v.add(p.Key("proto"), obj, "proto %q is not an HTTP version lb speaks to servers: write %q (HTTP/1.1) or %q (HTTP/2)", b.Proto, ProtoH1, ProtoH2)
	case b.Proto == ProtoH2 && b.SendProxy != "":
		v.add(p.Key("send_proxy"), obj, "send_proxy cannot go with proto = %q: one HTTP/2 connection carries the requests of many clients, and a PROXY protocol header names one", ProtoH2)
	}
	if b.TLS.Enabled && b.TLS.InsecureSkipVerify && b.TLS.CAFile != "" && !rejected(p.bad, "tls.ca_file") {
		v.add(p.Key("tls.ca_file"), obj, "tls: ca_file is useless with insecure_skip_verify = true: remove one of them")
	}
	if t := &b.TLS; !t.Enabled {
		for _, k := range []struct {
			key string
			set bool
		}{{"tls.ca_file", t.CAFile != ""}, {"tls.server_name", t.ServerName != ""}, {"tls.insecure_skip_verify", t.InsecureSkipVerify}} {
			if k.set {
				v.add(p.Key(k.key), obj, "%s is set but tls.enabled is false: add enabled = true to [backend.tls]", k.key)
				break
			}
		}
	}
}
