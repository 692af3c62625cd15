package config

import (
	"errors"
	"strings"
	"testing"
)

// httpBase is a valid HTTP-mode configuration; tests append to its
// frontend (line 7 on) or replace parts of it.
const httpBase = `[defaults]
mode = "http"
[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
default_backend = "app"
`

const httpBackends = `
[[backend]]
name = "app"
[[backend.server]]
name = "s1"
address = "127.0.0.1:9001"
[[backend]]
name = "api"
`

// apiServer ends the backend "api", after keys a test adds to it.
const apiServer = `[[backend.server]]
name = "a1"
address = "127.0.0.1:9002"
`

func TestHTTPConfigValid(t *testing.T) {
	src := httpBase + `[frontend.http]
max_body_bytes = 1048576
forwarded = true
[frontend.timeout]
http_request = "2s"
[[frontend.route]]
backend = "api"
host = ["api.example.com", "*.api.example.com"]
path_prefix = ["/api/"]
path_regex = "^/api/v[0-9]+/"
method = ["GET", "POST"]
header = ["X-Canary: 1", "X-Debug"]
[[frontend.header]]
action = "set"
on = "response"
name = "X-Served-By"
value = "%[server] %[request_id]"
` + httpBackends + `balance = "hash"
hash_key = "cookie:uid"
cookie = "LBSRV"
[[backend.header]]
action = "delete"
name = "X-Internal"
` + apiServer
	cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Frontends[0]
	if f.Mode != ModeHTTP || f.HTTP.MaxBodyBytes != 1<<20 || !f.HTTP.Forwarded || f.HTTP.MaxHeaders != DefaultMaxHeaders ||
		f.Timeout.HTTPRequest.String() != "2s" || f.Timeout.HTTPKeepAlive != Default().Defaults.Timeout.HTTPKeepAlive {
		t.Errorf("frontend = %+v", f)
	}
	if len(f.Routes) != 1 || f.Routes[0].Backend != "api" || len(f.Routes[0].Host) != 2 || len(f.Headers) != 1 {
		t.Errorf("routes %+v, headers %+v", f.Routes, f.Headers)
	}
	b := cfg.Backends[1]
	if b.Mode != ModeHTTP || b.Balance != BalanceHash || b.HashKey != "cookie:uid" || b.Cookie != "LBSRV" || len(b.Headers) != 1 {
		t.Errorf("backend = %+v", b)
	}
	if kind, name, err := ParseHashKey(b.HashKey); err != nil || kind != HashCookie || name != "uid" {
		t.Errorf("ParseHashKey = %q %q %v", kind, name, err)
	}
	if cfg.Global.HTTPHeadBudget != DefaultHTTPHeadBudget {
		t.Errorf("http_head_budget = %d, want the default %d", cfg.Global.HTTPHeadBudget, DefaultHTTPHeadBudget)
	}
}

func TestHTTPHeadBudget(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
	}{
		{"0", 0},
		{"65536", MinHTTPHeadBudget},
		{"268435456", 256 << 20},
	} {
		cfg, err := Parse(Source{Name: "lb.toml", Data: []byte("[global]\nhttp_head_budget = " + tc.value + "\n" + httpBase + httpBackends + apiServer)})
		if err != nil {
			t.Fatalf("http_head_budget = %s: %v", tc.value, err)
		}
		if got := cfg.Global.HTTPHeadBudget; got != tc.want {
			t.Errorf("http_head_budget = %s: got %d, want %d", tc.value, got, tc.want)
		}
	}
}

func TestHTTPConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // "line: text", in order
	}{
		{"bad mode", strings.Replace(httpBase, `mode = "http"`, `mode = "h2"`, 1) + httpBackends + apiServer,
			[]string{`lb.toml:2: defaults: mode "h2" is not valid: use "tcp" or "http"`}},
		{"route to an undefined backend", httpBase + "[[frontend.route]]\nbackend = \"nope\"\npath_prefix = [\"/x\"]\n" + httpBackends + apiServer,
			[]string{`lb.toml:8: frontend "web": route #1: backend "nope" is not defined`}},
		{"route without condition", httpBase + "[[frontend.route]]\nbackend = \"api\"\n" + httpBackends + apiServer,
			[]string{`lb.toml:7: frontend "web": route #1: a route needs at least one condition`}},
		{"bad regex at its line", httpBase + "[[frontend.route]]\nbackend = \"api\"\npath_regex = \"^(/\"\n" + httpBackends + apiServer,
			[]string{`lb.toml:9: frontend "web": route #1: path_regex "^(/": is not a valid regular expression`}},
		{"bad host element at its line", httpBase + "[[frontend.route]]\nbackend = \"api\"\nhost = [\n  \"a.com\",\n  \"a.com:80\",\n]\n" + httpBackends + apiServer,
			[]string{`lb.toml:11: frontend "web": route #1: host "a.com:80": has a port`}},
		{"header rule on a framing header", httpBase + "[[frontend.header]]\naction = \"set\"\nname = \"Content-Length\"\nvalue = \"1\"\n" + httpBackends + apiServer,
			[]string{`lb.toml:9: frontend "web": header rule #1: name "Content-Length"`}},
		{"unknown variable", httpBase + "[[frontend.header]]\naction = \"set\"\nname = \"X-A\"\nvalue = \"%[srv]\"\n" + httpBackends + apiServer,
			[]string{`lb.toml:10: frontend "web": header rule #1: value "%[srv]": has unknown variable`}},
		{"mode mismatch", httpBase + strings.Replace(httpBackends, "name = \"app\"\n", "name = \"app\"\nmode = \"tcp\"\n", 1) + apiServer,
			[]string{`lb.toml:6: frontend "web": default_backend "app" is in mode "tcp" but this frontend is in mode "http"`}},
		{"http keys in tcp mode", strings.Replace(httpBase, `mode = "http"`, `mode = "tcp"`, 1) + "[frontend.http]\nforwarded = true\n" + httpBackends + "cookie = \"X\"\n" + apiServer,
			[]string{`lb.toml:7: frontend "web": http needs mode = "http"`, `lb.toml:17: backend "api": cookie needs mode = "http"`}},
		{"hash in tcp mode", strings.Replace(httpBase, `mode = "http"`, `mode = "tcp"`, 1) + httpBackends + "balance = \"hash\"\n" + apiServer,
			[]string{`lb.toml:15: backend "api": balance "hash" needs mode = "http"`}},
		{"bad hash key", httpBase + httpBackends + "balance = \"hash\"\nhash_key = \"ip\"\n" + apiServer,
			[]string{`lb.toml:16: backend "api": hash_key "ip" is not valid`}},
		{"limits", httpBase + "[frontend.http]\nmax_header_bytes = 10\nmax_headers = 0\nmax_body_bytes = -1\nrequest_id_header = \"X Id\"\n" + httpBackends + apiServer,
			[]string{`lb.toml:8: frontend "web": max_header_bytes 10 is out of range`, `lb.toml:9: frontend "web": max_headers 0 is out of range`,
				`lb.toml:10: frontend "web": max_body_bytes -1 is negative`, `lb.toml:11: frontend "web": request_id_header "X Id" is not a valid header name`}},
		{"tls without files", httpBase + "[frontend.tls]\ncert = [{ cert_file = \"a.crt\" }]\nmin_version = \"1.4\"\nalpn = [\"spdy\"]\n" + httpBackends + apiServer,
			[]string{`lb.toml:8: frontend "web": tls: cert #1: key_file is required`, `lb.toml:9: frontend "web": tls: min_version "1.4" is not valid`,
				`lb.toml:10: frontend "web": tls: alpn "spdy" is not supported`}},
		{"backend tls keys without enabled", httpBase + httpBackends + "[backend.tls]\nca_file = \"ca.crt\"\n" + apiServer,
			[]string{`lb.toml:16: backend "api": tls.ca_file is set but tls.enabled is false`}},
		{"bad proto", httpBase + httpBackends + "proto = \"h3\"\n" + apiServer,
			[]string{`lb.toml:15: backend "api": proto "h3" is not an HTTP version lb speaks to servers: write "h1" (HTTP/1.1) or "h2" (HTTP/2)`}},
		{"proto h2 with send_proxy", httpBase + httpBackends + "proto = \"h2\"\nsend_proxy = \"v2\"\n" + apiServer,
			[]string{`lb.toml:16: backend "api": send_proxy cannot go with proto = "h2"`}},
		{"proto in tcp mode", strings.Replace(httpBase, `mode = "http"`, `mode = "tcp"`, 1) + httpBackends + "proto = \"h2\"\n" + apiServer,
			[]string{`lb.toml:15: backend "api": proto needs mode = "http"`}},
		{"timeouts", httpBase + "[frontend.timeout]\nhttp_request = \"0s\"\n" + httpBackends + "[backend.timeout]\nqueue = \"-1s\"\n" + apiServer,
			[]string{`lb.toml:8: frontend "web": timeout.http_request must be more than 0`, `lb.toml:18: backend "api": timeout.queue -1s is negative`}},
		{"negative queue in tcp mode", strings.Replace(httpBase, `mode = "http"`, `mode = "tcp"`, 1) + httpBackends + "[backend.timeout]\nqueue = \"-2s\"\n" + apiServer,
			[]string{`lb.toml:16: backend "api": timeout.queue -2s is negative`}},
		{"close_spread_time", "[global]\nclose_spread_time = \"2h\"\n" + httpBase + httpBackends + apiServer,
			[]string{`lb.toml:2: global: close_spread_time 2h0m0s is out of range`}},
		{"http_head_budget too small", "[global]\nlog_level = \"info\"\nhttp_head_budget = 65535\n" + httpBase + httpBackends + apiServer,
			[]string{`lb.toml:3: global: http_head_budget 65535 is out of range: use 0 (no limit) or 65536 bytes or more`}},
		{"http_head_budget negative", "[global]\nhttp_head_budget = -1\n" + httpBase + httpBackends + apiServer,
			[]string{`lb.toml:2: global: http_head_budget -1 is out of range`}},
		{"http_head_budget not a number", "[global]\nhttp_head_budget = \"32MiB\"\n" + httpBase + httpBackends + apiServer,
			[]string{`lb.toml:2: global: http_head_budget: expected an integer, found a string`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(Source{Name: "lb.toml", Data: []byte(tc.src)})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v, want Errors", err)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got := errs[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d = %q, want it to start with %q", i, got, w)
				}
			}
		})
	}
}
