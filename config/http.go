package config

// HTTP-mode settings: routes, header rules, limits and TLS.

import "lb/rules"

// HTTPOptions are the settings of an HTTP-mode frontend.
type HTTPOptions struct {
	// MaxHeaderBytes bounds a request's head (request line and header
	// fields); beyond it lb answers 431. Default 16384.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxHeaders bounds the number of header fields of a request; beyond
	// it lb answers 431. Default 100.
	MaxHeaders int `toml:"max_headers"`
	// MaxBodyBytes bounds a request's body; beyond it lb answers 413. 0
	// means no limit.
	MaxBodyBytes int `toml:"max_body_bytes"`
	// RequestIDHeader is the request header that carries the request id:
	// kept when the client sent one, generated otherwise, and logged.
	// Empty: lb neither reads nor sets one (it still logs its own id).
	RequestIDHeader string `toml:"request_id_header"`
	// Forwarded adds an RFC 7239 Forwarded header, next to the
	// X-Forwarded-* ones lb always sets.
	Forwarded bool `toml:"forwarded"`
}

// HTTP limits and defaults.
const (
	DefaultMaxHeaderBytes = 16384
	DefaultMaxHeaders     = 100
	MaxMaxHeaderBytes     = 1 << 20
	MaxMaxHeaders         = 10000
	// DefaultHTTPHeadBudget is the default of global.http_head_budget:
	// about 1,400 unfinished heads of 16 KiB at once, or 3,600 small
	// ones (each counts its 8 KiB read buffer).
	DefaultHTTPHeadBudget = 32 << 20
	// MinHTTPHeadBudget is the smallest http_head_budget but 0.
	MinHTTPHeadBudget = 64 << 10
)

// Route sends the HTTP requests that match every condition it sets to a
// backend. A list condition matches when any of its elements does.
type Route struct {
	Backend string `toml:"backend"`
	// Host lists host names: "api.example.com", or "*.example.com" for any
	// subdomain. The request's port is ignored.
	Host []string `toml:"host"`
	// PathPrefix lists path prefixes, each starting with "/".
	PathPrefix []string `toml:"path_prefix"`
	// PathRegex is a regular expression (RE2) the path must match.
	PathRegex string `toml:"path_regex"`
	// Method lists methods: "GET", "POST", ...
	Method []string `toml:"method"`
	// Header lists "Name: value" (the field has that value) or "Name" (the
	// field is present); every one must match.
	Header []string `toml:"header"`
	// When is a condition over the named ACLs that must match too.
	When string `toml:"when"`

	Pos Pos `toml:"-"`
	// rule is the route compiled by Validate.
	rule *rules.Route
}

// Rule returns the route as Validate compiled it.
func (r *Route) Rule() *rules.Route { return r.rule }

// HeaderRule changes a header of requests or responses.
type HeaderRule struct {
	// Action is "set", "add" or "delete".
	Action string `toml:"action"`
	// On is "request" (the default) or "response".
	On string `toml:"on"`
	// Name is the header's name.
	Name string `toml:"name"`
	// Value is the value of set and add; %[client_ip], %[server],
	// %[request_id] and the other variables are replaced.
	Value string `toml:"value"`
	// When is a condition over the named ACLs: the rule applies only
	// when it matches.
	When string `toml:"when"`

	Pos Pos `toml:"-"`
	// rule is the header rule compiled by Validate.
	rule *rules.HeaderRule
}

// Rule returns the header rule as Validate compiled it.
func (h *HeaderRule) Rule() *rules.HeaderRule { return h.rule }

// FrontendTLS terminates TLS on a frontend.
type FrontendTLS struct {
	// Certs are the certificates: the first is the default, the others
	// are chosen by the name the client asks for (SNI).
	Certs []Cert `toml:"cert"`
	// MinVersion is "1.0", "1.1", "1.2" or "1.3". Default 1.2.
	MinVersion string `toml:"min_version"`
	// ALPN lists the protocols offered to clients: "h2", "http/1.1".
	// Default both.
	ALPN []string `toml:"alpn"`
}

// On reports whether TLS is configured.
func (t *FrontendTLS) On() bool { return len(t.Certs) > 0 }

// Cert is a certificate chain and its key, PEM files.
type Cert struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`

	Pos Pos `toml:"-"`
}

// BackendTLS makes lb connect to the servers with TLS.
type BackendTLS struct {
	Enabled bool `toml:"enabled"`
	// CAFile holds the CA certificates that sign the servers'; empty means
	// the system's.
	CAFile string `toml:"ca_file"`
	// ServerName is the name verified in the servers' certificates (and
	// sent as SNI); empty means each server's host.
	ServerName string `toml:"server_name"`
	// InsecureSkipVerify accepts any certificate.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
}

// HTTP versions lb speaks to a backend's servers (Backend.Proto).
const (
	ProtoH1 = "h1"
	ProtoH2 = "h2"
)

// Modes lists the modes.
var Modes = []string{ModeTCP, ModeHTTP}

// Header rule actions and directions.
const (
	ActionSet    = "set"
	ActionAdd    = "add"
	ActionDelete = "delete"
	OnRequest    = "request"
	OnResponse   = "response"
)
