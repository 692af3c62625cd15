package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyBase is an HTTP frontend and backend, and a TCP pair, after which
// a test's text goes: sub-tables of the last [[frontend]] come first.
const policyBase = `
[[backend]]
name = "app"
mode = "http"
[[backend.server]]
name = "a"
address = "127.0.0.1:9000"

[[backend]]
name = "raw"
mode = "tcp"
[[backend.server]]
name = "a"
address = "127.0.0.1:9001"

[[frontend]]
name = "tcp"
mode = "tcp"
bind = ["127.0.0.1:8081"]
default_backend = "raw"

[[frontend]]
name = "web"
mode = "http"
bind = ["127.0.0.1:8080"]
default_backend = "app"
`

// TestPolicyConfig checks the traffic policy's keys: accepted forms, and
// each mistake reported with its line and what to do.
func TestPolicyConfig(t *testing.T) {
	dir := t.TempDir()
	office := filepath.Join(dir, "office.txt")
	if err := os.WriteFile(office, []byte("# the office\n10.0.0.0/8\n192.0.2.7 # a laptop\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(badFile, []byte("# blocked\n10.0.0.0/8\n\nten\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		want       string // an error fragment; "" for none
	}{
		{name: "rate limit", text: `track = ["t"]
[[frontend.rule]]
when = "fast"
action = "deny"
status = 429
headers = ["Retry-After: 10"]
[[acl]]
name = "fast"
table = "t"
figure = "http_req_rate"
above = 100
[[table]]
name = "t"`},
		{name: "every acl key", text: `[[frontend.rule]]
when = "a or b or c"
action = "allow"
[[acl]]
name = "a"
src = ["10.0.0.0/8", "::1"]
dst_port = [80, 443]
[[acl]]
name = "b"
sni = ["*.example.com"]
host = ["example.com"]
path = ["/x"]
path_prefix = ["/y"]
path_regex = "^/z"
method = ["GET"]
header = ["X-A: 1"]
query = ["v=2", "debug"]
cookie = ["beta=1"]
[[acl]]
name = "c"
src_file = "` + office + `"`},
		{name: "redirect", text: `[[frontend.rule]]
action = "redirect"
scheme = "https"
status = 301`},
		{name: "accept_proxy", text: `accept_proxy = ["10.0.0.0/8", "192.0.2.1"]`},
		{name: "route and header when", text: `[[frontend.route]]
backend = "app"
when = "a"
[[frontend.header]]
action = "set"
name = "X-A"
value = "1"
when = "a"
[[acl]]
name = "a"
src = ["10.0.0.0/8"]`},
		{name: "bad accept_proxy", text: `accept_proxy = ["ten"]`, want: `lb.toml:27: frontend "web": accept_proxy "ten" is neither an address nor a CIDR block`},
		{name: "unknown acl", text: "[[frontend.rule]]\nwhen = \"nope\"\naction = \"deny\"", want: `lb.toml:28: frontend "web": rule #1: when "nope": at column 1: no condition is called "nope": define it as an [[acl]] with name = "nope"`},
		{name: "bad expression", text: "[[frontend.rule]]\nwhen = \"a and\"\naction = \"deny\"\n[[acl]]\nname = \"a\"\nsrc = [\"10.0.0.0/8\"]", want: `when "a and": at column 6: expected a condition's name, found the end`},
		{name: "bad action", text: "[[frontend.rule]]\naction = \"drop\"", want: `lb.toml:28: frontend "web": rule #1: action "drop": is not an action: write allow, deny, redirect, return, tarpit or use_backend`},
		{name: "late condition", text: "[[frontend.rule]]\non = \"connection\"\nwhen = \"p\"\naction = \"deny\"\n[[acl]]\nname = \"p\"\npath = [\"/x\"]", want: `condition "p" needs a request, which a connection rule does not have yet: use it in a rule with on = "request"`},
		{name: "table not tracked", text: "[[frontend.rule]]\nwhen = \"f\"\naction = \"deny\"\n[[acl]]\nname = \"f\"\ntable = \"t\"\nfigure = \"conn_cur\"\n[[table]]\nname = \"t\"", want: `condition "f" reads table "t", which this frontend does not track: add "t" to its track list`},
		{name: "unknown table", text: "[[acl]]\nname = \"f\"\ntable = \"t\"\nfigure = \"conn_cur\"", want: `lb.toml:29: acl "f": table "t" is not defined: add a [[table]] with name = "t"`},
		{name: "unknown figure", text: "track = [\"t\"]\n[[acl]]\nname = \"f\"\ntable = \"t\"\nfigure = \"req_rate\"\n[[table]]\nname = \"t\"", want: `acl "f": figure "req_rate": is not a figure`},
		{name: "bad key", text: "[[table]]\nname = \"t\"\nkey = \"ip\"", want: `lb.toml:29: table "t": key "ip" is not a table key: write "src", "header:NAME", "cookie:NAME", "url_param:NAME" or "path"`},
		{name: "short period", text: "[[table]]\nname = \"t\"\nperiod = \"100ms\"", want: `period 100ms is too short`},
		{name: "expire below period", text: "[[table]]\nname = \"t\"\nperiod = \"60s\"\nexpire = \"10s\"", want: `expire 10s is shorter than period 1m0s`},
		{name: "tcp tracks a header table", text: "[[table]]\nname = \"t\"\nkey = \"header:X-Key\"\n[[frontend]]\nname = \"t2\"\nmode = \"tcp\"\nbind = [\"127.0.0.1:8082\"]\ndefault_backend = \"raw\"\ntrack = [\"t\"]", want: `track: table "t" has key "header:X-Key", which needs an HTTP request`},
		{name: "tcp request rule", text: "[[frontend]]\nname = \"t2\"\nmode = \"tcp\"\nbind = [\"127.0.0.1:8082\"]\ndefault_backend = \"raw\"\n[[frontend.rule]]\naction = \"deny\"", want: `a TCP frontend has only connection rules: write on = "connection"`},
		{name: "http connection use_backend", text: "[[frontend.rule]]\non = \"connection\"\naction = \"use_backend\"\nbackend = \"app\"", want: `an HTTP frontend picks backends per request`},
		{name: "use_backend of the other mode", text: "[[frontend.rule]]\naction = \"use_backend\"\nbackend = \"raw\"", want: `backend "raw" is in mode "tcp" but this frontend is in mode "http"`},
		{name: "send_proxy", text: "[[backend]]\nname = \"b\"\nsend_proxy = \"v3\"\n[[backend.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"", want: `send_proxy "v3" is not a PROXY protocol version: write "v1" or "v2"`},
		{name: "stick on an unknown table", text: "[[backend]]\nname = \"b\"\nstick = \"t\"\n[[backend.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"", want: `stick: table "t" is not defined`},
		{name: "src_file missing", text: "[[acl]]\nname = \"o\"\nsrc_file = \"" + filepath.Join(dir, "none.txt") + "\"", want: `acl "o": src_file`},
		{name: "src_file bad line", text: "[[acl]]\nname = \"o\"\nsrc_file = \"" + badFile + "\"", want: `line 4: "ten" is neither an address nor a CIDR block`},
		{name: "dst_port", text: "[[acl]]\nname = \"o\"\ndst_port = [0]", want: `dst_port "0": is not a port`},
		{name: "dst_port not integers", text: "[[acl]]\nname = \"o\"\ndst_port = [\"80\"]", want: `dst_port: element 1: expected an integer, found a string`},
		{name: "acl twice", text: "[[acl]]\nname = \"o\"\nsrc = [\"::1\"]\n[[acl]]\nname = \"o\"\nsrc = [\"::1\"]", want: `lb.toml:31: acl "o" is already defined at lb.toml:28`},
		{name: "empty acl", text: "[[acl]]\nname = \"o\"", want: `a condition needs at least one of`},
		{name: "status in a connection rule", text: "[[frontend.rule]]\non = \"connection\"\naction = \"deny\"\nstatus = 429", want: `status: does nothing with action = "deny"`},
		{name: "redirect needs a target", text: "[[frontend.rule]]\naction = \"redirect\"", want: `a redirect needs exactly one of location`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(policyBase + tc.text + "\n")})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.want == "" && cfg.Frontends[1].Rules != nil:
				for i := range cfg.Frontends[1].Rules {
					if cfg.Frontends[1].Rules[i].Rule() == nil {
						t.Errorf("rule %d not compiled", i)
					}
				}
			}
		})
	}
}
