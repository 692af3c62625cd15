// Package config holds lb's configuration schema and turns TOML files into a
// validated Config.
//
// The flow is decode, then validate: Load parses each file with
// BurntSushi/toml, maps it strictly onto the types below (an unknown key or a
// wrong type is an error), merges the files in order and validates the result.
// Every error names the file, the line and the object it is about. The types
// are plain data; runtime objects are built from a validated Config and never
// change it.
package config

import (
	"fmt"
	"time"
)

// Config is one merged, validated configuration.
type Config struct {
	Global    Global     `toml:"global"`
	Defaults  Defaults   `toml:"defaults"`
	Frontends []Frontend `toml:"frontend"`
	Backends  []Backend  `toml:"backend"`

	// origin records where Parse found each setting; nil for a Config
	// made in code.
	origin *origin
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
}

// MaxUnixPath is the longest path a unix socket may have on Linux.
const MaxUnixPath = 107

// Defaults holds values that frontends and backends inherit unless they set
// their own.
type Defaults struct {
	// Balance is the algorithm of backends that do not name one.
	Balance string `toml:"balance"`
	// Retries is how many more servers a connection is tried on after a
	// failed connect. Default 3.
	Retries int `toml:"retries"`
	// MaxConn is the frontends' limit of concurrent connections; 0 means no
	// limit.
	MaxConn int      `toml:"maxconn"`
	Timeout Timeouts `toml:"timeout"`
}

// Timeouts are the defaults for every timeout lb knows.
type Timeouts struct {
	// Connect bounds one connection attempt to a server. Default 5s.
	Connect Duration `toml:"connect"`
	// Client is how long the client side may stay idle. Default 1m; 0 means
	// no limit.
	Client Duration `toml:"client"`
	// Server is how long the server side may stay idle. Default 1m; 0 means
	// no limit.
	Server Duration `toml:"server"`
}

// Frontend is a set of listening addresses whose connections go to a backend.
type Frontend struct {
	Name string `toml:"name"`
	// Bind lists "host:port" addresses; an empty host means every address,
	// "[::1]:80" is IPv6.
	Bind           []string         `toml:"bind"`
	DefaultBackend string           `toml:"default_backend"`
	MaxConn        int              `toml:"maxconn"`
	Timeout        FrontendTimeouts `toml:"timeout"`

	Pos Pos `toml:"-"`
}

// FrontendTimeouts are the timeouts a frontend may override.
type FrontendTimeouts struct {
	Client Duration `toml:"client"`
}

// Backend is a named pool of servers and the way to pick one.
type Backend struct {
	Name string `toml:"name"`
	// Balance is one of roundrobin, leastconn, random, source, first.
	Balance string          `toml:"balance"`
	Retries int             `toml:"retries"`
	Timeout BackendTimeouts `toml:"timeout"`
	Servers []Server        `toml:"server"`

	Pos Pos `toml:"-"`
}

// BackendTimeouts are the timeouts a backend may override.
type BackendTimeouts struct {
	Connect Duration `toml:"connect"`
	Server  Duration `toml:"server"`
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

	Pos Pos `toml:"-"`
}

// Balancing algorithms.
const (
	BalanceRoundRobin = "roundrobin"
	BalanceLeastConn  = "leastconn"
	BalanceRandom     = "random"
	BalanceSource     = "source"
	BalanceFirst      = "first"
)

// Balances lists every balancing algorithm, in the order the docs give them.
var Balances = []string{BalanceRoundRobin, BalanceLeastConn, BalanceRandom, BalanceSource, BalanceFirst}

// Limits and defaults.
const (
	MaxWeight     = 256
	DefaultWeight = 1
	MaxRetries    = 10
)

// Default returns the values a configuration starts from before any file is
// read.
func Default() Config {
	return Config{
		Global: Global{
			LogLevel:       "info",
			HardStopAfter:  Duration(10 * time.Minute),
			HandshakeGrace: Duration(time.Second),
		},
		Defaults: Defaults{
			Balance: BalanceRoundRobin,
			Retries: 3,
			Timeout: Timeouts{
				Connect: Duration(5 * time.Second),
				Client:  Duration(time.Minute),
				Server:  Duration(time.Minute),
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
