// Package config holds lb's configuration schema and turns TOML files into a
// validated Config.
//
// The flow is decode, then validate: Load parses each file with
// BurntSushi/toml, maps it strictly onto the types below (an unknown key or a
// wrong type is an error), merges the files in order and validates the result.
// Every error names the file, the line and the object it is about. The types
// are plain data; runtime objects are built from a validated Config (package
// provision) and never change it.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"lb/proxy"
)

// Config is one merged, validated configuration.
type Config struct {
	Global    Global     `toml:"global"`
	Defaults  Defaults   `toml:"defaults"`
	Frontends []Frontend `toml:"frontend"`
	Backends  []Backend  `toml:"backend"`
	// ACLs are the named conditions of rules, routes and header rules.
	ACLs []ACL `toml:"acl"`
	// Tables are the stick tables.
	Tables []Table `toml:"table"`
	// Stats is the stats listener: Prometheus metrics, /stats.json and the
	// stats page. No [stats] table (no bind), no listener.
	Stats Stats `toml:"stats"`

	// origin records where Parse found each setting; nil for a Config
	// made in code.
	origin *origin
	// validated is set by a Validate that found nothing wrong.
	validated bool
}

// Access log formats.
const (
	LogFormatJSON    = "json"
	LogFormatHTTPLog = "httplog"
)

// Stats is the [stats] table.
type Stats struct {
	// Bind is the stats listener's "ip:port"; empty means none.
	Bind string `toml:"bind"`
	// Allow lists the client addresses or CIDRs that may connect; empty
	// means any.
	Allow []string `toml:"allow"`
	// User and PasswordHash, when set, require HTTP basic authentication:
	// PasswordHash is the password's bcrypt hash ("$2b$..."; lb
	// hash-password makes one), never the password itself.
	User         string `toml:"user"`
	PasswordHash string `toml:"password_hash"`
	// Admin turns the stats page's actions on: drain, ready, maint and
	// weight. It requires User and PasswordHash.
	Admin bool `toml:"admin"`
	// HistoryStep is the step of the stats page's graphs, which keep 90
	// points: the default 10s shows 15 minutes.
	HistoryStep Duration `toml:"history_step"`
}

// AllowPrefixes returns Allow parsed: an address stands for itself alone.
// Validate reported any entry that does not parse; such entries are left
// out.
func (s *Stats) AllowPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range s.Allow {
		if p, ok := parsePrefix(a); ok {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix parses a CIDR or an address (a prefix of its full length).
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// Global holds process-wide settings.
type Global struct {
	// LogLevel is one of debug, info, warn, error. Default info.
	LogLevel string `toml:"log_level"`
	// PidFile is where the pid file is written when -p is not given.
	PidFile string `toml:"pid_file"`
	// HardStopAfter bounds how long a stopping generation may keep serving
	// its established connections; 0 means no limit. Default 10m.
	HardStopAfter Duration `toml:"hard_stop_after"`
	// HandshakeGrace is how long a stopping generation keeps its listening
	// sockets open and accepting, so that TCP handshakes already under way
	// on them complete rather than being reset. Default 1s.
	HandshakeGrace Duration `toml:"handshake_grace"`
	// AdminSocket is the path of the unix admin socket; empty means none.
	AdminSocket string `toml:"admin_socket"`
	// LogFile is a file to append logs to instead of stderr; empty means
	// stderr.
	LogFile string `toml:"log_file"`
	// Syslog sends the logs to syslog too, as RFC 5424 messages: a unix
	// datagram socket's path ("/dev/log") or "udp://host:port". Empty: a
	// daemon (-D) with no log_file whose stderr is not systemd's journal
	// logs to /dev/log when that socket exists; "none": never.
	Syslog string `toml:"syslog"`
	// SyslogFacility is the facility of the syslog messages. Default daemon.
	SyslogFacility string `toml:"syslog_facility"`
	// SyslogTag is the APP-NAME of the syslog messages. Default lb.
	SyslogTag string `toml:"syslog_tag"`
	// StateFile is where the serving generation saves what it knows of the
	// servers, as it changes, for a next generation that cannot ask it
	// directly. Empty means none.
	StateFile string `toml:"state_file"`
	// TicketKeysFile holds the TLS session ticket keys, one base64 key per
	// line, the newest last; empty means keys lb makes, rotates and hands
	// from generation to generation.
	TicketKeysFile string `toml:"ticket_keys_file"`
	// StartupTimeout bounds the round of health checks that a generation
	// with nothing to take over runs before it serves. Default 5s.
	StartupTimeout Duration `toml:"startup_timeout"`
	// CloseSpreadTime is how long a stopping generation takes to close its
	// idle HTTP keep-alive connections: each one at a random moment within
	// it, so that clients do not all reconnect at once. Default 1s.
	CloseSpreadTime Duration `toml:"close_spread_time"`
	// HTTPHeadBudget bounds, in bytes, what the HTTP request heads still
	// arriving hold, over the whole process: each head that does not
	// arrive in one read counts its bytes so far plus its connection's
	// 8 KiB read buffer. When it is full the slowest of them are shed
	// (408). 0 means no limit. Default DefaultHTTPHeadBudget.
	HTTPHeadBudget int `toml:"http_head_budget"`
}

// GlobalPos returns where the [global] key was set: its file and line, or
// the first file when it was not set.
func (c *Config) GlobalPos(key string) Pos { return c.origin.pos("global." + key) }

// StatsPos returns where the [stats] key was set, as GlobalPos does.
func (c *Config) StatsPos(key string) Pos { return c.origin.pos("stats." + key) }

// MaxUnixPath is the longest path a unix socket may have on Linux.
const MaxUnixPath = 107

// Defaults holds values that frontends and backends inherit unless they set
// their own.
type Defaults struct {
	// Mode is "tcp" or "http", for frontends and backends that do not set
	// theirs. Default tcp.
	Mode string `toml:"mode"`
	// Balance is the algorithm of backends that do not name one.
	Balance string `toml:"balance"`
	// Retries is how many more servers a connection is tried on after a
	// failed connect. Default 3.
	Retries int `toml:"retries"`
	// MaxConn is the frontends' limit of concurrent connections; 0 means a
	// default derived from the file descriptor limit (see FDPlan).
	MaxConn int      `toml:"maxconn"`
	Timeout Timeouts `toml:"timeout"`
	// SlowStart is the backends' default slow start; 0 means none.
	SlowStart Duration `toml:"slowstart"`
	// Check is the backends' default health check.
	Check Check `toml:"check"`
	// HTTP holds the HTTP-mode frontends' defaults.
	HTTP HTTPOptions `toml:"http"`
}

// Timeouts are the defaults for every timeout lb knows.
type Timeouts struct {
	// Connect bounds one connection attempt to a server. Default 5s.
	Connect Duration `toml:"connect"`
	// Client is how long the client side may stay idle. Default 1m; 0 means
	// no limit.
	Client Duration `toml:"client"`
	// Server is how long the server side may stay idle. Default 1m; 0 means
	// no limit. In HTTP mode it also bounds the wait for a response.
	Server Duration `toml:"server"`
	// HTTPRequest bounds the reading of a request's head, from its first
	// byte (HTTP mode); beyond it lb answers 408. Default 10s.
	HTTPRequest Duration `toml:"http_request"`
	// HTTPKeepAlive is how long an HTTP connection may wait for its next
	// request. Default 15s.
	HTTPKeepAlive Duration `toml:"http_keep_alive"`
	// Tunnel is how long an Upgrade tunnel (WebSocket) may stay idle.
	// Default 1h; 0 means no limit.
	Tunnel Duration `toml:"tunnel"`
	// Queue is how long a request (HTTP) or a connection (TCP) waits for a
	// server when every server is at its maxconn; beyond it lb answers 503
	// (HTTP) or closes the connection (TCP). Default 5s; 0 means no wait.
	Queue Duration `toml:"queue"`
}

// Frontend is a set of listening addresses whose connections go to a backend.
type Frontend struct {
	Name string `toml:"name"`
	// Bind lists "host:port" addresses; an empty host means every address,
	// "[::1]:80" is IPv6.
	Bind []string `toml:"bind"`
	// Mode is "tcp" or "http"; its backends must have the same.
	Mode           string           `toml:"mode"`
	DefaultBackend string           `toml:"default_backend"`
	MaxConn        int              `toml:"maxconn"`
	Timeout        FrontendTimeouts `toml:"timeout"`
	// Routes pick the backend of each HTTP request, in order; the first
	// that matches wins, else DefaultBackend.
	Routes []Route `toml:"route"`
	// Headers are the header rules applied to every request and response
	// of the frontend (HTTP mode).
	Headers []HeaderRule `toml:"header"`
	HTTP    HTTPOptions  `toml:"http"`
	// TLS terminates TLS on the frontend's addresses (HTTP mode).
	TLS FrontendTLS `toml:"tls"`
	// LogFormat is the format of the access log lines: "json" (lb's log
	// lines), or "httplog" (HTTP mode: HAProxy's option httplog, one
	// line of text each, for its parsers). Default json.
	LogFormat string `toml:"log_format"`
	// LogQuery puts the query string in the access log lines. Default
	// true; false keeps secrets in query strings out of the logs.
	LogQuery bool `toml:"log_query"`
	// AcceptProxy lists the addresses and CIDR blocks of the load
	// balancers in front of lb: a connection from one of them starts
	// with a PROXY protocol header (v1 or v2), which gives the client's
	// address; one from anywhere else may not send one.
	AcceptProxy []string `toml:"accept_proxy"`
	// Track lists the stick tables the frontend counts its clients in
	// (at most 3).
	Track []string `toml:"track"`
	// Rules are the traffic rules, evaluated in order within each phase.
	Rules []Rule `toml:"rule"`

	Pos Pos `toml:"-"`
}

// FrontendTimeouts are the timeouts a frontend may override.
type FrontendTimeouts struct {
	Client        Duration `toml:"client"`
	HTTPRequest   Duration `toml:"http_request"`
	HTTPKeepAlive Duration `toml:"http_keep_alive"`
}

// Backend is a named pool of servers and the way to pick one.
type Backend struct {
	Name string `toml:"name"`
	// Mode is "tcp" or "http".
	Mode string `toml:"mode"`
	// Balance is one of roundrobin, leastconn, random, source, first, and
	// hash in HTTP mode.
	Balance string `toml:"balance"`
	// HashKey is what balance = "hash" hashes: "uri", "path",
	// "header:NAME" or "cookie:NAME". Default uri.
	HashKey string `toml:"hash_key"`
	// Cookie, when set, is the name of the cookie lb inserts to keep each
	// client on its server (HTTP mode).
	Cookie  string          `toml:"cookie"`
	Retries int             `toml:"retries"`
	Timeout BackendTimeouts `toml:"timeout"`
	// SlowStart is how long a server that comes back up takes to ramp up
	// to its full weight; 0 means at once.
	SlowStart Duration `toml:"slowstart"`
	// Check is the health check of the backend's servers.
	Check Check `toml:"check"`
	// Headers are header rules for the backend's requests and responses,
	// applied after the frontend's on requests and before them on
	// responses (HTTP mode).
	Headers []HeaderRule `toml:"header"`
	// TLS makes lb speak TLS to the servers (HTTP mode).
	TLS BackendTLS `toml:"tls"`
	// Proto is the HTTP version lb speaks to the servers: "h1" (HTTP/1.1,
	// the default) or "h2" (HTTP/2: over TLS when tls.enabled, else
	// cleartext with prior knowledge). HTTP mode.
	Proto string `toml:"proto"`
	// SendProxy sends a PROXY protocol header, "v1" or "v2", to the
	// servers at the start of each connection.
	SendProxy string `toml:"send_proxy"`
	// Stick names a stick table: a client (by the table's key) keeps the
	// server it got first.
	Stick   string   `toml:"stick"`
	Servers []Server `toml:"server"`

	Pos Pos `toml:"-"`
	// hashKind and hashName are HashKey parsed by Validate (HTTP mode).
	hashKind, hashName string
}

// HashKeyParts returns the hash key as Validate parsed it: its kind
// (HashURI, HashPath, HashHeader or HashCookie) and, for the last two, the
// name (see ParseHashKey). The kind is empty for a TCP backend.
func (b *Backend) HashKeyParts() (kind, name string) { return b.hashKind, b.hashName }

// BackendTimeouts are the timeouts a backend may override.
type BackendTimeouts struct {
	Connect Duration `toml:"connect"`
	Server  Duration `toml:"server"`
	Tunnel  Duration `toml:"tunnel"`
	Queue   Duration `toml:"queue"`
}

// Server is one backend server.
type Server struct {
	Name string `toml:"name"`
	// Address is "host:port"; a host name is resolved once, at start-up.
	Address string `toml:"address"`
	// Weight is the server's share of new connections, 0 to 256; 0 means it
	// takes none. Default 1.
	Weight int `toml:"weight"`
	// MaxConn is the server's limit of concurrent connections; 0 means no
	// limit. A full server is skipped.
	MaxConn int `toml:"maxconn"`
	// Backup servers take connections only when no other server can.
	Backup bool `toml:"backup"`
	// Check overrides the backend's check for this server: every key it
	// does not set comes from the backend.
	Check Check `toml:"check"`

	Pos Pos `toml:"-"`
}

// Check is a health check: active checks, and passive checks of real
// traffic.
type Check struct {
	// Type is "tcp" (a connect), "http" (a request) or "none".
	Type string `toml:"type"`
	// Interval is the time between checks of a server that is up.
	Interval Duration `toml:"interval"`
	// FastInterval is used while a server changes state; 0 means Interval.
	FastInterval Duration `toml:"fast_interval"`
	// DownInterval is used while a server is down; 0 means Interval.
	DownInterval Duration `toml:"down_interval"`
	// Timeout bounds one check; 0 means Interval.
	Timeout Duration `toml:"timeout"`
	// Rise is how many checks in a row must pass to bring a server up.
	Rise int `toml:"rise"`
	// Fall is how many checks in a row must fail to take a server down.
	Fall int `toml:"fall"`
	// Port is the port to check; 0 means the server's.
	Port int `toml:"port"`
	// Address is the host (IP or name) to check; empty means the server's.
	Address string `toml:"address"`
	// Method, Path and Host make the HTTP check's request; an empty Host
	// means the checked address.
	Method string `toml:"method"`
	Path   string `toml:"path"`
	Host   string `toml:"host"`
	// Expect lists the passing statuses: codes ("200"), classes ("2xx")
	// and ranges ("200-299"). Empty means 2xx and 3xx.
	Expect []string `toml:"expect"`
	// Body is a string the response body must contain; empty means any.
	Body string `toml:"body"`
	// ErrorLimit is how many traffic errors in a row (connect failures,
	// resets, timeouts) trigger OnError; 0 turns passive checks off.
	ErrorLimit int `toml:"error_limit"`
	// OnError is "mark-down" or "fast-interval".
	OnError string `toml:"on_error"`

	// expect is Expect parsed by Validate.
	expect [][2]int
}

// ExpectRanges returns the expect list as Validate parsed it: inclusive
// ranges of passing statuses (see ParseExpect).
func (c *Check) ExpectRanges() [][2]int { return c.expect }

// Check types and passive check actions.
const (
	CheckTCP            = "tcp"
	CheckHTTP           = "http"
	CheckNone           = "none"
	OnErrorMarkDown     = "mark-down"
	OnErrorFastInterval = "fast-interval"
)

// Balancing algorithms.
const (
	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceRandom     = "random"
	BalanceSource     = "source"
	BalanceFirst      = "first"
	BalanceHash       = "hash"
)

// Balances lists every balancing algorithm, in the order the docs give them.
var Balances = []string{BalanceRoundRobin, BalanceLeastConn, BalanceRandom, BalanceSource, BalanceFirst, BalanceHash}

// Modes.
const (
	ModeTCP  = "tcp"
	ModeHTTP = "http"
)

// Limits and defaults.
const (
	MaxWeight     = 256
	DefaultWeight = 1
	// MaxRetries is the data path's bound on retries.
	MaxRetries = proxy.MaxRetries
)

// Default returns the values a configuration starts from before any file is
// read.
func Default() Config {
	return Config{
		Global: Global{
			LogLevel:        "info",
			SyslogFacility:  "daemon",
			SyslogTag:       "lb",
			HardStopAfter:   Duration(10 * time.Minute),
			HandshakeGrace:  Duration(time.Second),
			StartupTimeout:  Duration(5 * time.Second),
			CloseSpreadTime: Duration(time.Second),
			HTTPHeadBudget:  DefaultHTTPHeadBudget,
		},
		Defaults: Defaults{
			Mode:    ModeTCP,
			Balance: BalanceRoundRobin,
			Retries: 3,
			Timeout: Timeouts{
				Connect:       Duration(5 * time.Second),
				Client:        Duration(time.Minute),
				Server:        Duration(time.Minute),
				HTTPRequest:   Duration(10 * time.Second),
				HTTPKeepAlive: Duration(15 * time.Second),
				Tunnel:        Duration(time.Hour),
				Queue:         Duration(5 * time.Second),
			},
			HTTP: HTTPOptions{
				MaxHeaderBytes:  DefaultMaxHeaderBytes,
				MaxHeaders:      DefaultMaxHeaders,
				RequestIDHeader: "X-Request-Id",
			},
			Check: Check{
				Type:     CheckTCP,
				Interval: Duration(2 * time.Second),
				Rise:     2,
				Fall:     3,
				Method:   "GET",
				Path:     "/",
				OnError:  OnErrorMarkDown,
			},
		},
	}
}

// Duration is a time.Duration written in TOML as a string such as "2s" or
// "1m30s".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q: want a number and a unit, like \"500ms\", \"2s\" or \"1m\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// Pos is where an object was defined: its file, the line of its table header,
// and the lines of the keys it set.
type Pos struct {
	File string
	Line int

	keys map[string]int
	// bad holds the keys whose value the decoder rejected (already
	// reported), so that validation does not report them again.
	bad map[string]bool
}

// String formats the position as "file:line".
func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Key returns the position of a key the object set (a dotted name such as
// "timeout.client", or "bind.1" for an element of an array), or the object's
// own position when the key was not set.
func (p Pos) Key(name string) Pos {
	if l, ok := p.keys[name]; ok {
		return Pos{File: p.File, Line: l}
	}
	return Pos{File: p.File, Line: p.Line}
}
