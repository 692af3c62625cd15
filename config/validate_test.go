package config

import (
	"strings"
	"testing"
)

func TestCheckAddress(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		needHost bool
		norm     string // when valid
		problem  string // fragment, when not
	}{
		{addr: ":80", norm: ":80"},
		{addr: "0.0.0.0:080", norm: "0.0.0.0:80"},
		{addr: "[::1]:443", norm: "[::1]:443"},
		{addr: "[0:0::1]:443", norm: "[::1]:443"},
		{addr: "[fe80::1%eth0]:80", norm: "[fe80::1%eth0]:80"},
		{addr: "Example.COM:80", needHost: true, norm: "example.com:80"},
		{addr: "my_host-1.internal.:80", needHost: true, norm: "my_host-1.internal.:80"},
		{addr: "localhost:80", problem: `host "localhost" is not an IP address: bind an IP address, like "127.0.0.1:80", or every address, like ":80"`},
		{addr: "host1:80", needHost: true, norm: "host1:80"},
		{addr: ":80", needHost: true, problem: "has no host"},
		{addr: "10.0.0.1", problem: " has no port"},
		{addr: "[::1]", problem: " has no port"},
		{addr: "host", problem: " has no port"},
		{addr: "host:", problem: " has no port"},
		{addr: "::1", problem: `is not "host:port" (too many colons in address)`},
		{addr: "h:0", problem: "port 0 is not allowed"},
		{addr: "h:65536", problem: "port 65536 is out of range"},
		{addr: "h:99999999999999999999", problem: "out of range"},
		{addr: "h:+80", problem: `port "+80" is not a number`},
		{addr: "h:http", problem: `port "http" is not a number`},
		{addr: "10.0.0.256:80", problem: `"10.0.0.256" is not a valid IP address`},
		{addr: "a b:80", needHost: true, problem: `host "a b" is not an IP address or a host name`},
		{addr: "-a:80", needHost: true, problem: "not an IP address or a host name"},
		{addr: "a..b:80", needHost: true, problem: "not an IP address or a host name"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			norm, problem := checkAddress(tc.addr, tc.needHost)
			if tc.problem == "" {
				if problem != "" || norm != tc.norm {
					t.Errorf("checkAddress(%q) = %q, %q; want %q, no problem", tc.addr, norm, problem, tc.norm)
				}
				return
			}
			if !strings.Contains(problem, tc.problem) {
				t.Errorf("checkAddress(%q) problem %q, want it to contain %q", tc.addr, problem, tc.problem)
			}
		})
	}
}

// TestValidateInCode checks a Config made in code, without positions.
func TestValidateInCode(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err == nil || err.Error() != "no frontend defined: add a [[frontend]] table" {
		t.Errorf("Validate(Default()) = %v", err)
	}

	cfg.Frontends = []Frontend{{Name: "web", Bind: []string{":80"}, DefaultBackend: "app", MaxConn: -1}}
	cfg.Backends = []Backend{{
		Name: "app", Balance: BalanceRandom, Timeout: BackendTimeouts{Connect: Duration(1)},
		Servers: []Server{{Name: "a", Address: "h:1", Weight: 1}, {Name: "a", Address: "h:2", Weight: 1}},
	}}
	checkErrors(t, cfg.Validate(), []wantErr{
		{"", `frontend "web": maxconn -1 is negative`},
		{"", `backend "app": server "a" is already defined: give`},
	})

	cfg.Frontends[0].MaxConn = 0
	cfg.Backends[0].Servers[1].Name = "b"
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestInheritedNotRepeated checks that a bad default is reported once, at
// [defaults], not again for every object that inherits it.
func TestInheritedNotRepeated(t *testing.T) {
	src := `[defaults]
balance = "nope"
maxconn = -1
timeout.connect = "0s"
timeout.client = "-1s"

[[frontend]]
name = "web"
bind = [":80"]
default_backend = "app"

[[backend]]
name = "app"
server = [{ name = "a", address = "h:1" }]
`
	_, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	checkErrors(t, err, []wantErr{
		{"lb.toml:2", `defaults: balance "nope" is not valid`},
		{"lb.toml:3", `defaults: maxconn -1 is negative`},
		{"lb.toml:4", `defaults: timeout.connect must be more than 0, not 0s`},
		{"lb.toml:5", `defaults: timeout.client -1s is negative`},
	})
}
