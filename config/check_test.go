package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCheckInheritance(t *testing.T) {
	data, err := os.ReadFile("testdata/checks.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(Source{Name: "checks.toml", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	app, plain := cfg.Backends[0], cfg.Backends[1]
	def := Default().Defaults.Check
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"defaults interval", cfg.Defaults.Check.Interval, Duration(5 * time.Second)},
		{"defaults rise", cfg.Defaults.Check.Rise, 3},
		{"defaults fall is the built-in one", cfg.Defaults.Check.Fall, def.Fall},
		{"backend slowstart", app.SlowStart, Duration(10 * time.Second)},
		{"plain backend inherits slowstart", plain.SlowStart, Duration(30 * time.Second)},
		{"backend type", app.Check.Type, CheckHTTP},
		{"backend inherits the defaults' interval", app.Check.Interval, Duration(5 * time.Second)},
		{"backend inherits the defaults' rise", app.Check.Rise, 3},
		{"server inherits the backend's check", app.Servers[0].Check, app.Check},
		{"server overrides port", app.Servers[1].Check.Port, 9090},
		{"server overrides type", app.Servers[1].Check.Type, CheckTCP},
		{"server keeps the backend's path", app.Servers[1].Check.Path, "/health"},
		{"server keeps the backend's error_limit", app.Servers[1].Check.ErrorLimit, 5},
		{"server in a sub-table", app.Servers[2].Check.Type, CheckNone},
		{"plain backend has the defaults' check", plain.Servers[0].Check.Interval, Duration(5 * time.Second)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := app.Servers[1].Check.Expect; !reflect.DeepEqual(got, []string{"200", "3xx"}) {
		t.Errorf("server expect %v", got)
	}
}

func TestBadChecks(t *testing.T) {
	data, err := os.ReadFile("testdata/bad_checks.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(Source{Name: "bad_checks.toml", Data: data})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`bad_checks.toml:2: defaults: check.rise 0 is out of range (1 to 100)`,
		`bad_checks.toml:11: backend "app": slowstart -1s is negative`,
		`bad_checks.toml:13: backend "app": check.type "ping" is not valid: use tcp, http or none`,
		`bad_checks.toml:14: backend "app": check.expect "99x" is not a status`,
		`bad_checks.toml:15: backend "app": check.on_error "panic" is not valid`,
		`bad_checks.toml:20: backend "app": server "s1": check.port 70000 is out of range`,
		`bad_checks.toml:20: backend "app": server "s1": check.path "health" is not valid`,
		`bad_checks.toml:20: backend "app": server "s1": check.interval 0s must be more than 0`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	// Each mistake once: the server inherits the backend's bad type, which
	// is reported at the backend only.
	if n := strings.Count(err.Error(), `"ping"`); n != 1 {
		t.Errorf("the bad type is reported %d times:\n%v", n, err)
	}
}

func TestParseExpect(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want [][2]int
		err  bool
	}{
		{nil, [][2]int{{200, 399}}, false},
		{[]string{"200"}, [][2]int{{200, 200}}, false},
		{[]string{"2xx", "301-302"}, [][2]int{{200, 299}, {301, 302}}, false},
		{[]string{"600"}, nil, true},
		{[]string{"302-301"}, nil, true},
		{[]string{"2XX"}, nil, true},
		{[]string{"20"}, nil, true},
	} {
		got, err := ParseExpect(tc.in)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("ParseExpect(%q) = %v, %v", tc.in, got, err)
		}
	}
}
