package rules

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// hostKind is the kind of a host pattern.
type hostKind uint8

const (
	hostExact    hostKind = iota // a name, compared whole
	hostWildcard                 // "*.example.com": the name's subdomains
	hostIP6                      // "[2001:db8::1]", compared as an address
)

// hostPattern is a compiled element of RouteSpec.Host.
type hostPattern struct {
	kind hostKind
	// name is the lower-case name of hostExact, or the lower-case suffix
	// of hostWildcard, with its leading dot (".example.com").
	name string
	// ip is the address of hostIP6.
	ip [16]byte
}

// hostHint says what a host pattern looks like.
const hostHint = `write a host name like "api.example.com", or "*.example.com" for its subdomains`

// compileHost checks a host pattern and compiles it. The problem, when there
// is one, is a SpecError message.
func compileHost(s string) (hostPattern, string) {
	if s == "" {
		return hostPattern{}, "is empty: " + hostHint
	}
	if strings.Contains(s, "://") {
		return hostPattern{}, `is a URL: write only its host name, like "api.example.com"`
	}
	if s[0] == '[' {
		return compileIP6Host(s)
	}
	if strings.Count(s, ":") > 1 {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			return hostPattern{}, fmt.Sprintf("is an IPv6 address without brackets: write %q", "["+s+"]")
		}
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && i+1 < len(s) && isDigits(s[i+1:]) {
		return hostPattern{}, fmt.Sprintf("has a port: remove %q (the request's port is ignored when matching hosts)", s[i:])
	}
	if s == "*" {
		return hostPattern{}, `matches every host, as leaving host out does: remove it, or write "*.example.com" for the subdomains of a domain`
	}
	name, wildcard := s, false
	if strings.HasPrefix(s, "*.") {
		name, wildcard = s[2:], true
	}
	// A final dot makes a name fully qualified; it is the same name.
	name = strings.TrimSuffix(name, ".")
	switch {
	case name == "" && wildcard:
		return hostPattern{}, `has no domain after "*.": write one, like "*.example.com"`
	case name == "":
		return hostPattern{}, "is not a host name: " + hostHint
	case len(name) > 253:
		return hostPattern{}, fmt.Sprintf("is %d characters long: a host name has at most 253", len(name))
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			continue
		}
		label := name[start:i]
		switch {
		case label == "" && start == 0 && !wildcard:
			return hostPattern{}, `starts with ".": write "*.example.com" for the subdomains of example.com, and add "example.com" for the domain itself`
		case label == "":
			return hostPattern{}, `has an empty label: remove the extra "."`
		case label == "*":
			return hostPattern{}, `has "*" past the first label: a wildcard can only be the whole first label, as in "*.example.com"`
		case strings.Contains(label, "*"):
			return hostPattern{}, `has "*" inside a label: a wildcard must be the whole first label, as in "*.example.com"`
		case len(label) > 63:
			return hostPattern{}, fmt.Sprintf("has a label of %d characters: DNS allows at most 63 per label", len(label))
		}
		for j := start; j < i; j++ {
			if msg := hostCharProblem(name, j); msg != "" {
				return hostPattern{}, msg
			}
		}
		start = i + 1
	}
	p := hostPattern{kind: hostExact, name: strings.ToLower(name)}
	if wildcard {
		p.kind, p.name = hostWildcard, "."+p.name
	}
	return p, ""
}

// hostCharProblem says what is wrong with name[i] in a host name, or returns
// "" when it may appear there.
func hostCharProblem(name string, i int) string {
	switch c := name[i]; {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		return ""
	case c == '/':
		return `contains "/": host takes only a host name; match paths with path_prefix or path_regex`
	case c >= utf8.RuneSelf:
		return fmt.Sprintf(`contains %s: write an internationalized name in its ASCII form ("xn--..."), as clients send it`, charAt(name, i))
	}
	return fmt.Sprintf(`contains %s, which cannot appear in a host name: use letters, digits, "-", "_" and "."`, charAt(name, i))
}

// compileIP6Host compiles a host pattern that starts with "[".
func compileIP6Host(s string) (hostPattern, string) {
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return hostPattern{}, `has "[" but no "]": write an IPv6 address in brackets, like "[2001:db8::1]"`
	}
	if rest := s[end+1:]; rest != "" {
		if len(rest) > 1 && rest[0] == ':' && isDigits(rest[1:]) {
			return hostPattern{}, fmt.Sprintf("has a port: remove %q (the request's port is ignored when matching hosts)", rest)
		}
		return hostPattern{}, `has text after "]": write an IPv6 address in brackets and nothing else, like "[2001:db8::1]"`
	}
	a, err := netip.ParseAddr(s[1:end])
	switch {
	case err != nil:
		return hostPattern{}, `is not a valid IPv6 address: write one in brackets, like "[2001:db8::1]"`
	case a.Is4():
		return hostPattern{}, fmt.Sprintf("is an IPv4 address: write it without brackets, as %q", a.String())
	case a.Zone() != "":
		return hostPattern{}, fmt.Sprintf("has a zone (%q), which requests do not carry: remove it", "%"+a.Zone())
	}
	return hostPattern{kind: hostIP6, ip: a.As16()}, ""
}

// splitHost returns the name in a request's host (a Host header field value
// or the authority of its target): without the port, the brackets of an IPv6
// literal, or a final dot. ok is false when host is not of the form
// name[:port] or [address][:port].
func splitHost(host []byte) (name []byte, ip6, ok bool) {
	if len(host) == 0 {
		return nil, false, false
	}
	if host[0] == '[' {
		end := bytes.IndexByte(host, ']')
		if end < 0 || !isPortSuffix(host[end+1:]) {
			return nil, false, false
		}
		return host[1:end], true, true
	}
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		if !isPortSuffix(host[i:]) {
			return nil, false, false
		}
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	return host, false, true
}

// isPortSuffix reports whether b is empty or a colon and digits: what may
// follow the host in a request's host. The digits may be missing (RFC 3986).
func isPortSuffix(b []byte) bool {
	return len(b) == 0 || b[0] == ':' && isDigits(b[1:])
}

// isDigits reports whether s is made of ASCII digits only (true when empty).
func isDigits[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// equalLower reports whether b equals lower, a lower-case string, with b
// compared ASCII case-insensitively.
func equalLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// match reports whether a request's host name, as split by splitHost, matches
// the pattern. ip is the parsed name when ip6 is set.
func (p *hostPattern) match(name []byte, ip6 bool, ip *[16]byte) bool {
	switch p.kind {
	case hostIP6:
		return ip6 && *ip == p.ip
	case hostExact:
		return !ip6 && equalLower(name, p.name)
	default: // hostWildcard
		n := len(name) - len(p.name)
		// At least one label before the suffix: not the apex, nor ".x.com".
		return !ip6 && n > 0 && name[n-1] != '.' && equalLower(name[n:], p.name)
	}
}
