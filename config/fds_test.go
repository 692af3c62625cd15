package config

import (
	"reflect"
	"strings"
	"testing"

	"lb/fdlimit"
)

func TestFDPlan(t *testing.T) {
	const src = `
[global]
admin_socket = "/run/lb/admin.sock"
log_file = "/var/log/lb.log"

[defaults]
maxconn = 0

[[frontend]]
name = "tcp"
bind = ["127.0.0.1:8081", "127.0.0.1:8082"]
default_backend = "tcpapp"

[[frontend]]
name = "bounded"
mode = "http"
bind = ["127.0.0.1:8080"]
default_backend = "api"
maxconn = 500

[[frontend]]
name = "open"
mode = "http"
bind = ["127.0.0.1:8443"]
default_backend = "api"
[[frontend.route]]
backend = "web"
path_prefix = ["/"]

[[backend]]
name = "tcpapp"
[[backend.server]]
name = "t1"
address = "127.0.0.1:9001"
check = { type = "none" }

[[backend]]
name = "api"
mode = "http"
[[backend.server]]
name = "a1"
address = "127.0.0.1:9002"
maxconn = 30
[[backend.server]]
name = "a2"
address = "127.0.0.1:9003"
maxconn = 20

[[backend]]
name = "web"
mode = "http"
[[backend.server]]
name = "w1"
address = "127.0.0.1:9004"
maxconn = 10
[[backend.server]]
name = "w2"
address = "127.0.0.1:9005"
`
	cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.FDPlan()
	want := fdlimit.Plan{
		Frontends: []fdlimit.Frontend{
			{Name: "tcp", Listeners: 2, MaxConn: 0, PerConn: fdlimit.TCPConn},
			// Reaches only "api", whose servers all have a maxconn: its
			// server connections are counted apart, once.
			{Name: "bounded", Listeners: 1, MaxConn: 500, PerConn: fdlimit.HTTPConn},
			// Reaches "web" by a route, and w2 has no maxconn.
			{Name: "open", Listeners: 1, MaxConn: 0, PerConn: fdlimit.HTTPConnWithServer},
		},
		ServerConns: 30 + 20,
		Checks:      4, // every server but t1
		AdminSocket: true,
		LogFile:     true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FDPlan:\n got %+v\nwant %+v", got, want)
	}
}

func TestMaxConnRangeAndDerivedDefault(t *testing.T) {
	const src = "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\nmaxconn = -3\n" +
		"[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:9001\"\n"
	_, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	want := `lb.toml:5: frontend "web": maxconn -3 is negative: use 0 for a default derived from the file descriptor limit`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("maxconn -3: %v, want %q", err, want)
	}
	_, err = Parse(Source{Name: "lb.toml", Data: []byte("[defaults]\nmaxconn = 9223372036854775807\n" + src[:strings.Index(src, "maxconn")])})
	want = `lb.toml:2: defaults: maxconn 9223372036854775807 is more connections than one process can hold (at most 1073741824`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("maxconn 2^63-1: %v, want %q", err, want)
	}
	cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(strings.Replace(src, "maxconn = -3", "maxconn = 0", 1))})
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.FDPlan(); p.Frontends[0].MaxConn != 0 {
		t.Fatalf("maxconn 0 planned as %d, want 0 (derived)", p.Frontends[0].MaxConn)
	}
}
