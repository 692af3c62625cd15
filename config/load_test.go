package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantErr is one expected error: its exact "file:line" and a fragment of
// its text.
type wantErr struct {
	pos  string
	frag string
}

// checkErrors asserts that err is Errors holding exactly the wanted errors,
// in order.
func checkErrors(t *testing.T, err error, want []wantErr) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v (%T), want Errors", err, err)
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		e := errs[i]
		if got := e.Pos.String(); got != w.pos {
			t.Errorf("error %d at %q, want %q: %v", i, got, w.pos, e)
		}
		if !strings.Contains(e.Error(), w.frag) {
			t.Errorf("error %d = %q, want it to contain %q", i, e.Error(), w.frag)
		}
	}
}

// parseFixture parses testdata/name under its base name.
func parseFixture(t *testing.T, names ...string) (*Config, error) {
	t.Helper()
	var srcs []Source
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, Source{Name: name, Data: data})
	}
	return Parse(srcs...)
}

func TestParseValid(t *testing.T) {
	cfg, err := parseFixture(t, "valid.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := func(s string) Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return Duration(v)
	}
	want := Config{
		Global: Global{LogLevel: "debug", PidFile: "/run/lb.pid", HardStopAfter: d("30s"), HandshakeGrace: d("250ms"),
			AdminSocket: "/run/lb/admin.sock", LogFile: "/var/log/lb.log", SyslogFacility: "daemon", SyslogTag: "lb"},
		Defaults: Defaults{
			Balance: BalanceLeastConn, Retries: 2, MaxConn: 1000,
			Timeout: Timeouts{Connect: d("2s"), Client: d("30s"), Server: d("45s")},
		},
		Frontends: []Frontend{
			{
				Name: "web", Bind: []string{":8080", "127.0.0.1:8443"}, DefaultBackend: "app", LogFormat: "json", LogQuery: true,
				MaxConn: 1000, Timeout: FrontendTimeouts{Client: d("30s")},
			},
			{
				Name: "admin", Bind: []string{"[::1]:9000", "127.0.0.2:9001"}, DefaultBackend: "static", LogFormat: "json", LogQuery: true,
				MaxConn: 10, Timeout: FrontendTimeouts{Client: d("5s")},
			},
		},
		Backends: []Backend{
			{
				Name: "app", Balance: BalanceRoundRobin, Retries: 2,
				Timeout: BackendTimeouts{Connect: d("1s"), Server: d("45s")},
				Servers: []Server{
					{Name: "app1", Address: "10.0.0.1:8080", Weight: 3},
					{Name: "app2", Address: "app2.internal:8080", Weight: 1, MaxConn: 100, Backup: true},
				},
			},
			{
				Name: "static", Balance: BalanceLeastConn, Retries: 0,
				Timeout: BackendTimeouts{Connect: d("2s"), Server: d("45s")},
				Servers: []Server{
					{Name: "s1", Address: "10.0.1.1:80", Weight: 1},
					{Name: "s2", Address: "[2001:db8::2]:80", Weight: 0},
				},
			},
		},
	}
	// valid.toml sets no check and no HTTP setting: every object has the
	// defaults.
	want.Global.StartupTimeout = d("5s")
	want.Global.CloseSpreadTime = d("1s")
	want.Global.HTTPHeadBudget = DefaultHTTPHeadBudget
	def := Default().Defaults
	want.Defaults.Mode, want.Defaults.HTTP = def.Mode, def.HTTP
	want.Defaults.Timeout.HTTPRequest, want.Defaults.Timeout.HTTPKeepAlive = def.Timeout.HTTPRequest, def.Timeout.HTTPKeepAlive
	want.Defaults.Timeout.Tunnel, want.Defaults.Timeout.Queue = def.Timeout.Tunnel, def.Timeout.Queue
	for i := range want.Frontends {
		f := &want.Frontends[i]
		f.Mode, f.HTTP = def.Mode, def.HTTP
		f.Timeout.HTTPRequest, f.Timeout.HTTPKeepAlive = def.Timeout.HTTPRequest, def.Timeout.HTTPKeepAlive
	}
	for i := range want.Backends {
		b := &want.Backends[i]
		b.Mode, b.HashKey = def.Mode, HashURI
		b.Timeout.Tunnel, b.Timeout.Queue = def.Timeout.Tunnel, def.Timeout.Queue
	}
	dc := Default().Defaults.Check
	want.Defaults.Check = dc
	for i := range want.Backends {
		want.Backends[i].Check = dc
		for j := range want.Backends[i].Servers {
			want.Backends[i].Servers[j].Check = dc
		}
	}
	if got := stripPos(*cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("config:\n got %+v\nwant %+v", got, want)
	}

	// Positions: header lines, and key lines including those in inline
	// tables and in arrays spanning lines.
	f1, b0, b1 := cfg.Frontends[1], cfg.Backends[0], cfg.Backends[1]
	for _, tc := range []struct {
		name string
		got  Pos
		want string
	}{
		{"frontend web", cfg.Frontends[0].Pos, "valid.toml:21"},
		{"frontend web default_backend", cfg.Frontends[0].Pos.Key("default_backend"), "valid.toml:24"},
		{"frontend admin", f1.Pos, "valid.toml:26"},
		{"frontend admin bind.1", f1.Pos.Key("bind.1"), "valid.toml:30"},
		{"frontend admin timeout.client", f1.Pos.Key("timeout.client"), "valid.toml:34"},
		{"frontend admin unset key", f1.Pos.Key("nope"), "valid.toml:26"},
		{"backend app", b0.Pos, "valid.toml:36"},
		{"backend app timeout.connect", b0.Pos.Key("timeout.connect"), "valid.toml:41"},
		{"server app1", b0.Servers[0].Pos, "valid.toml:43"},
		{"server app2", b0.Servers[1].Pos, "valid.toml:48"},
		{"server app2 backup", b0.Servers[1].Pos.Key("backup"), "valid.toml:52"},
		{"backend static server", b1.Pos.Key("server"), "valid.toml:57"},
		{"inline server s2", b1.Servers[1].Pos, "valid.toml:59"},
		{"inline server s2 weight", b1.Servers[1].Pos.Key("weight"), "valid.toml:59"},
	} {
		if got := tc.got.String(); got != tc.want {
			t.Errorf("%s: position %s, want %s", tc.name, got, tc.want)
		}
	}
}

// stripPos returns a copy of c without positions, nor what Validate
// compiled, to compare the settings only.
func stripPos(c Config) Config {
	c.origin, c.validated = nil, false
	c.Defaults.Check.expect = nil
	c.Frontends = append([]Frontend(nil), c.Frontends...)
	for i := range c.Frontends {
		c.Frontends[i].Pos = Pos{}
	}
	c.Backends = append([]Backend(nil), c.Backends...)
	for i := range c.Backends {
		b := &c.Backends[i]
		b.Pos, b.Check.expect, b.hashKind, b.hashName = Pos{}, nil, "", ""
		b.Servers = append([]Server(nil), b.Servers...)
		for j := range b.Servers {
			b.Servers[j].Pos, b.Servers[j].Check.expect = Pos{}, nil
		}
	}
	return c
}

func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []wantErr
	}{
		{"unknown_key_top.toml", []wantErr{
			{"unknown_key_top.toml:12", `unknown key "listen" (valid keys: global, defaults, frontend, backend, stats, acl, table)`},
		}},
		{"unknown_key_global.toml", []wantErr{
			{"unknown_key_global.toml:3", `global: unknown key "loglevel" (valid keys: log_level, pid_file, hard_stop_after, handshake_grace, admin_socket, log_file, syslog, syslog_facility, syslog_tag, state_file, ticket_keys_file, startup_timeout, close_spread_time, http_head_budget)`},
		}},
		{"bad_global.toml", []wantErr{
			{"bad_global.toml:2", `global: handshake_grace 2m0s is out of range: use 0s to 1m`},
			{"bad_global.toml:3", `global: admin_socket path is 125 bytes long: a unix socket path may have at most 107`},
		}},
		{"unknown_key_server.toml", []wantErr{
			{"unknown_key_server.toml:17", `backend "app": server "s2": unknown key "wieght" (valid keys: name, address, weight, maxconn, backup, check)`},
		}},
		{"wrong_type.toml", []wantErr{
			{"wrong_type.toml:12", `backend "app": server "s1": weight: expected an integer, found a string`},
		}},
		{"bad_duration.toml", []wantErr{
			{"bad_duration.toml:2", `defaults: timeout.connect: bad duration "5"`},
			{"bad_duration.toml:12", `backend "app": timeout.server: bad duration "1 minute"`},
		}},
		{"no_port.toml", []wantErr{
			{"no_port.toml:10", `backend "app": server "s1": address "10.0.0.1" has no port`},
		}},
		{"bad_port.toml", []wantErr{
			{"bad_port.toml:4", `frontend "web": bind address ":0": port 0 is not allowed`},
			{"bad_port.toml:5", `bind address ":70000": port 70000 is out of range (1 to 65535)`},
			{"bad_port.toml:6", `bind address ":http": port "http" is not a number`},
			{"bad_port.toml:7", `bind address "127.0.0.1" has no port`},
			{"bad_port.toml:16", `server "s1": address "10.0.0.1:0": port 0 is not allowed`},
		}},
		{"missing_backend.toml", []wantErr{
			{"missing_backend.toml:4", `frontend "web": default_backend "api" is not defined (backends: app, static)`},
		}},
		{"dup_frontend.toml", []wantErr{
			{"dup_frontend.toml:7", `frontend "web" is already defined at dup_frontend.toml:2`},
		}},
		{"dup_backend.toml", []wantErr{
			{"dup_backend.toml:13", `backend "app" is already defined at dup_backend.toml:7`},
		}},
		{"dup_server.toml", []wantErr{
			{"dup_server.toml:11", `backend "app": server "s1" is already defined at dup_server.toml:9`},
		}},
		{"dup_bind.toml", []wantErr{
			{"dup_bind.toml:8", `frontend "admin": bind address "127.0.0.1:08080" is already used by frontend "web" at dup_bind.toml:3`},
		}},
		{"empty_backend.toml", []wantErr{
			{"empty_backend.toml:6", `backend "app" has no servers: add a [[backend.server]] table`},
		}},
		{"weight_range.toml", []wantErr{
			{"weight_range.toml:11", `server "s1": weight 300 is out of range (0 to 256)`},
			{"weight_range.toml:15", `server "s2": weight -1 is out of range (0 to 256)`},
		}},
		{"retries_range.toml", []wantErr{
			{"retries_range.toml:2", `defaults: retries -1 is out of range (0 to 10)`},
			{"retries_range.toml:11", `backend "app": retries 11 is out of range (0 to 10)`},
		}},
		{"bad_balance.toml", []wantErr{
			{"bad_balance.toml:8", `backend "app": balance "fastest" is not valid: use one of roundrobin, leastconn, random, source, first`},
		}},
		{"bad_log_level.toml", []wantErr{
			{"bad_log_level.toml:2", `global: log_level "verbose" is not valid: use one of debug, info, warn, error`},
		}},
		{"no_frontend.toml", []wantErr{
			{"no_frontend.toml", `no_frontend.toml: no frontend defined: add a [[frontend]] table`},
		}},
		{"syntax.toml", []wantErr{
			{"syntax.toml:4", "syntax.toml:4: strings cannot contain newlines"},
		}},
		{"plain_frontend.toml", []wantErr{
			{"plain_frontend.toml:1", "frontend must be an array of tables, found a table: write [[frontend]] instead of [frontend]"},
		}},
		{"names.toml", []wantErr{
			{"names.toml:1", `frontend #1: name is required`},
			{"names.toml:1", `frontend #1: default_backend is required`},
			{"names.toml:5", `frontend "web site": name "web site" is not valid: use only letters, digits`},
			{"names.toml:11", `backend "app": server #1: name is required`},
			{"names.toml:13", `server "s/2": address is required`},
			{"names.toml:14", `server "s/2": name "s/2" is not valid`},
		}},
		{"multiple.toml", []wantErr{
			{"multiple.toml:2", `global: log_level "loud" is not valid`},
			{"multiple.toml:3", `global: hard_stop_after: bad duration "soon"`},
			{"multiple.toml:7", `defaults: maxconn -5 is negative: use 0 for a default derived from the file descriptor limit`},
			{"multiple.toml:11", `frontend "web": bind: element 2: expected a string, found an integer`},
			{"multiple.toml:12", `frontend "web": default_backend "api" is not defined (backends: app)`},
			{"multiple.toml:13", `frontend "web": timeout.client -1s is negative`},
			{"multiple.toml:17", `backend "app": unknown key "adress" (valid keys: name, mode, balance, hash_key, cookie, retries, timeout, slowstart, check, header, tls, proto, send_proxy, stick, server)`},
			{"multiple.toml:21", `server "s1": address "10.0.0.1" has no port`},
			{"multiple.toml:22", `server "s1": weight 1000 is out of range (0 to 256)`},
			{"multiple.toml:23", `server "s1": maxconn: expected an integer, found a string`},
			{"multiple.toml:24", `server "s1": backup: expected a boolean, found a string`},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := parseFixture(t, tc.file)
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			checkErrors(t, err, tc.want)
		})
	}
}

// TestParseInline checks TOML written inline: keys given in inline tables
// and arrays of inline tables for frontends, backends and servers.
func TestParseInline(t *testing.T) {
	src := `frontend = [{ name = "web", bind = [":80"], default_backend = "app", timeout = { client = "3s" } }]
backend = [
  { name = "app", server = [{ name = "a", address = "h:1" }] },
  { name = "bad", server = [{ name = "b", address = "h:2", weight = 999 }] },
]
`
	_, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	checkErrors(t, err, []wantErr{
		{"lb.toml:4", `backend "bad": server "b": weight 999 is out of range`},
	})
}

func TestParseTypes(t *testing.T) {
	const head = `[[frontend]]
name = "web"
bind = [":80"]
default_backend = "app"
[[backend]]
name = "app"
`
	for _, tc := range []struct {
		name string
		src  string // appended to head, from line 7
		want []wantErr
	}{
		{"bind is a string", "[[frontend]]\nname = \"x\"\nbind = \":81\"\ndefault_backend = \"app\"\n[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:9", `frontend "x": bind: expected an array of strings, found a string`},
			// The server follows the second [[frontend]], but belongs
			// to the backend "app".
		}},
		{"timeout is not a table", "timeout = \"5s\"\n[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:7", `backend "app": timeout: expected a table, found a string`},
		}},
		{"server is a plain table", "[backend.server]\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:7", `backend "app": server: expected an array of tables, found a table: write [[backend.server]] instead of [backend.server]`},
		}},
		{"server array of strings", "server = [\"h:1\"]\n", []wantErr{
			{"lb.toml:7", `backend "app": server: expected an array of tables, found an array of strings`},
		}},
		{"duration is a number", "timeout.connect = 5\n[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:7", `backend "app": timeout.connect: expected a duration string like "2s", found an integer`},
		}},
		{"unknown nested key", "[backend.timeout]\nclient = \"1s\"\n[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:8", `backend "app": unknown key "timeout.client" (valid keys in timeout: connect, server, tunnel, queue)`},
		}},
		{"keys are case-sensitive", "[[backend.server]]\nName = \"a\"\nname = \"a\"\naddress = \"h:1\"\n", []wantErr{
			{"lb.toml:8", `backend "app": server "a": unknown key "Name"`},
		}},
		{"float and date", "[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\nweight = 1.5\nmaxconn = 2024-01-02\n", []wantErr{
			{"lb.toml:10", `weight: expected an integer, found a float`},
			{"lb.toml:11", `maxconn: expected an integer, found a date-time`},
		}},
		{"global is an array", "[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n[[global]]\n", []wantErr{
			{"lb.toml:10", `global must be a table, found an array of tables: write [global]`},
		}},
		{"valid", "[[backend.server]]\nname = \"a\"\naddress = \"h:1\"\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(head + tc.src)})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.Backends[0].Servers[0].Name != "a" {
					t.Errorf("server not decoded: %+v", cfg.Backends[0])
				}
				return
			}
			checkErrors(t, err, tc.want)
		})
	}
}

func TestTopLevelNotArray(t *testing.T) {
	_, err := Parse(Source{Name: "lb.toml", Data: []byte("frontend = \"web\"\nbackend = 3\n")})
	checkErrors(t, err, []wantErr{
		{"lb.toml:1", `frontend must be an array of tables, found a string: write [[frontend]]`},
		{"lb.toml:2", `backend must be an array of tables, found an integer: write [[backend]]`},
	})
}

func TestDefaultsInherited(t *testing.T) {
	src := `[defaults]
balance = "source"
retries = 5
maxconn = 77
timeout = { connect = "3s", client = "4s", server = "6s" }

[[frontend]]
name = "inherits"
bind = [":80"]
default_backend = "inherits"

[[frontend]]
name = "overrides"
bind = [":81"]
default_backend = "overrides"
maxconn = 0
timeout.client = "0s"

[[backend]]
name = "inherits"
[[backend.server]]
name = "a"
address = "h:1"

[[backend]]
name = "overrides"
balance = "first"
retries = 0
timeout = { connect = "1s", server = "0s" }
[[backend.server]]
name = "a"
address = "h:1"
weight = 0
`
	cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	s := time.Second
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"frontend maxconn inherited", cfg.Frontends[0].MaxConn, 77},
		{"frontend timeout.client inherited", cfg.Frontends[0].Timeout.Client, Duration(4 * s)},
		{"frontend maxconn set to 0", cfg.Frontends[1].MaxConn, 0},
		{"frontend timeout.client set to 0", cfg.Frontends[1].Timeout.Client, Duration(0)},
		{"backend balance inherited", cfg.Backends[0].Balance, BalanceSource},
		{"backend retries inherited", cfg.Backends[0].Retries, 5},
		{"backend timeout inherited", cfg.Backends[0].Timeout, BackendTimeouts{Connect: Duration(3 * s), Server: Duration(6 * s), Tunnel: Duration(time.Hour), Queue: Duration(5 * s)}},
		{"server weight default", cfg.Backends[0].Servers[0].Weight, DefaultWeight},
		{"backend balance set", cfg.Backends[1].Balance, BalanceFirst},
		{"backend retries set to 0", cfg.Backends[1].Retries, 0},
		{"backend timeout set", cfg.Backends[1].Timeout, BackendTimeouts{Connect: Duration(s), Tunnel: Duration(time.Hour), Queue: Duration(5 * s)}},
		{"server weight set to 0", cfg.Backends[1].Servers[0].Weight, 0},
		{"global untouched", cfg.Global, Default().Global},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestDefaultsLaterFile checks that defaults from a later file apply to the
// frontends and backends of an earlier one.
func TestDefaultsLaterFile(t *testing.T) {
	cfg, err := Parse(
		Source{Name: "a.toml", Data: []byte("[[frontend]]\nname = \"web\"\nbind = [\":80\"]\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\nserver = [{ name = \"a\", address = \"h:1\" }]\n")},
		Source{Name: "b.toml", Data: []byte("[defaults]\nmaxconn = 9\nretries = 1\n")},
	)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.Frontends[0].MaxConn; got != 9 {
		t.Errorf("frontend maxconn = %d, want 9 from b.toml", got)
	}
	if got := cfg.Backends[0].Retries; got != 1 {
		t.Errorf("backend retries = %d, want 1 from b.toml", got)
	}
}

func TestMerge(t *testing.T) {
	t.Run("override and append", func(t *testing.T) {
		cfg, err := parseFixture(t, "merge_base.toml", "merge_extra.toml")
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		want := Global{LogLevel: "warn", PidFile: "/run/lb.pid", HardStopAfter: Duration(time.Minute), HandshakeGrace: Duration(time.Second), StartupTimeout: Duration(5 * time.Second), CloseSpreadTime: Duration(time.Second), HTTPHeadBudget: DefaultHTTPHeadBudget, SyslogFacility: "daemon", SyslogTag: "lb"}
		if cfg.Global != want {
			t.Errorf("global = %+v, want %+v", cfg.Global, want)
		}
		var names []string
		for _, f := range cfg.Frontends {
			names = append(names, f.Name+"@"+f.Pos.String())
		}
		for _, b := range cfg.Backends {
			names = append(names, b.Name+"@"+b.Pos.String())
		}
		wantNames := []string{
			"web@merge_base.toml:6", "api@merge_extra.toml:4",
			"app@merge_base.toml:11", "apisrv@merge_extra.toml:9",
		}
		if !reflect.DeepEqual(names, wantNames) {
			t.Errorf("objects = %q, want %q", names, wantNames)
		}
	})
	t.Run("duplicates across files", func(t *testing.T) {
		_, err := parseFixture(t, "merge_base.toml", "merge_dup.toml")
		checkErrors(t, err, []wantErr{
			{"merge_dup.toml:3", `frontend "web" is already defined at merge_base.toml:7`},
			{"merge_dup.toml:4", `bind address ":8080" is already used by frontend "web" at merge_base.toml:8`},
			{"merge_dup.toml:8", `backend "app" is already defined at merge_base.toml:12`},
		})
	})
	t.Run("errors in file order", func(t *testing.T) {
		_, err := Parse(
			Source{Name: "b.toml", Data: []byte("\n\n\n[global]\nlog_level = \"x\"\n")},
			Source{Name: "a.toml", Data: []byte("bogus = 1\n")},
		)
		checkErrors(t, err, []wantErr{
			{"b.toml", "no frontend defined"},
			{"b.toml:5", `log_level "x" is not valid`},
			{"a.toml:1", `unknown key "bogus"`},
		})
	})
	t.Run("later file fixes a value", func(t *testing.T) {
		_, err := Parse(
			Source{Name: "a.toml", Data: []byte("[global]\nlog_level = \"x\"\n")},
			Source{Name: "b.toml", Data: []byte("[global]\nlog_level = \"info\"\n")},
		)
		checkErrors(t, err, []wantErr{{"a.toml", "no frontend defined"}})
	})
	t.Run("syntax errors in every file", func(t *testing.T) {
		_, err := Parse(
			Source{Name: "a.toml", Data: []byte("x = \n")},
			Source{Name: "b.toml", Data: []byte("ok = 1\n[y\n")},
		)
		checkErrors(t, err, []wantErr{
			{"a.toml:1", "a.toml:1: "},
			{"b.toml:2", "b.toml:2: "},
		})
	})
}

func TestLoad(t *testing.T) {
	cfg, err := Load("testdata/merge_base.toml", "testdata/merge_extra.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Frontends[1].Pos.String(); got != "testdata/merge_extra.toml:4" {
		t.Errorf("position %s, want the path as given, testdata/merge_extra.toml:4", got)
	}

	_, err = Load("testdata/valid.toml", "testdata/missing.toml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want one wrapping fs.ErrNotExist", err)
	}
	if want := "error reading configuration: open testdata/missing.toml:"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}

	if _, err := Load(); err == nil {
		t.Error("Load() with no file: no error")
	}

	_, err = Load("testdata/no_port.toml")
	checkErrors(t, err, []wantErr{{"testdata/no_port.toml:10", "has no port"}})
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Pos: Pos{File: "lb.toml", Line: 3}, Object: `backend "app"`, Msg: "m"}, `lb.toml:3: backend "app": m`},
		{&Error{Pos: Pos{File: "lb.toml", Line: 3}, Msg: "m"}, `lb.toml:3: m`},
		{&Error{Pos: Pos{File: "lb.toml"}, Msg: "m"}, `lb.toml: m`},
		{&Error{Object: "global", Msg: "m"}, `global: m`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	errs := Errors{{Pos: Pos{File: "a", Line: 1}, Msg: "x"}, {Pos: Pos{File: "a", Line: 2}, Msg: "y"}}
	if got, want := errs.Error(), "a:1: x\na:2: y"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(error(errs), &e) || e.Msg != "x" {
		t.Errorf("errors.As(Errors, *Error) = %v", e)
	}
}

func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct {
		name, src, pos string
	}{
		{"unclosed header", "ok = 1\n[y\n", "lb.toml:2"},
		{"unclosed header at EOF", "ok = 1\n[y", "lb.toml:2"},
		{"unclosed array", "a = 1\nb = [\n", "lb.toml:2"},
		{"missing value", "a = 1\n\nx = \n", "lb.toml:3"},
		{"duplicate key", "a = 1\na = 2\n", "lb.toml:2"},
		{"after a BOM", "\xef\xbb\xbfok = 1\n[y\n", "lb.toml:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(Source{Name: "lb.toml", Data: []byte(tc.src)})
			checkErrors(t, err, []wantErr{{tc.pos, tc.pos + ": "}})
			var errs Errors
			if errors.As(err, &errs) && strings.HasPrefix(errs[0].Msg, "toml:") {
				t.Errorf("error %q repeats toml's prefix", err)
			}
		})
	}
}
