package provision

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/config"
	"lb/health"
	"lb/httpproxy"
	"lb/proxy"
)

// fakeResolver answers from a fixed table.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

var resolver = fakeResolver{
	"db.internal": {netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("10.0.0.5")},
}

// mixed has a TCP and an HTTP frontend, declared in another order than
// their backends, which they name.
const mixed = `[[frontend]]
name = "web"
mode = "http"
bind = ["127.0.0.1:8080"]
default_backend = "app"
[[frontend.route]]
backend = "api"
path_prefix = ["/api/"]
[[frontend.header]]
action = "set"
name = "X-Proxy"
value = "lb"
[[frontend.header]]
action = "delete"
on = "response"
name = "Server"

[[frontend]]
name = "raw"
bind = ["127.0.0.1:8081"]
default_backend = "db"
[frontend.timeout]
client = "7s"

[[backend]]
name = "db"
retries = 2
[backend.check]
type = "none"
[[backend.server]]
name = "d1"
address = "db.internal:5432"

[[backend]]
name = "api"
mode = "http"
balance = "hash"
hash_key = "header:X-User"
[backend.check]
type = "none"
[[backend.server]]
name = "a1"
address = "10.0.2.1:80"

[[backend]]
name = "app"
mode = "http"
[backend.check]
type = "http"
path = "/health"
interval = "3s"
expect = ["2xx", "301"]
[[backend.server]]
name = "s1"
address = "10.0.1.1:80"
[[backend.server]]
name = "s2"
address = "10.0.1.2:80"
check = { port = 9090, type = "tcp" }
`

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(config.Source{Name: "lb.toml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBuildWiresByName: each frontend gets the handler of its mode, and
// every reference to a backend lands on the backend of that name.
func TestBuildWiresByName(t *testing.T) {
	p, err := Build(context.Background(), parse(t, mixed), resolver, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	backends := map[string]*proxy.Backend{}
	for _, b := range p.Backends {
		backends[b.Name()] = b
	}
	if len(p.Frontends) != 2 || p.Frontends[0].Name != "web" || p.Frontends[1].Name != "raw" {
		t.Fatalf("frontends %v", p.Frontends)
	}

	web := p.Frontends[0]
	h, ok := web.Handler.(*httpproxy.Frontend)
	if !ok {
		t.Fatalf("frontend web's handler is %T, want *httpproxy.Frontend", web.Handler)
	}
	if web.Backend != backends["app"] || h.Default.Backend != backends["app"] {
		t.Errorf("frontend web: default backend %s, handler's %s, want app", web.Backend.Name(), h.Default.Name())
	}
	if len(h.Targets) != 1 || h.Targets[0].Backend != backends["api"] || h.Routes == nil {
		t.Errorf("frontend web: route targets %v, want api", h.Targets)
	}
	if want := (httpproxy.HashKey{Kind: httpproxy.HashHeader, Name: "X-User"}); h.Targets[0].Hash != want {
		t.Errorf("backend api hashes %+v, want %+v", h.Targets[0].Hash, want)
	}
	if len(h.ReqRules) != 1 || len(h.RespRules) != 1 || !h.RespRules[0].Response() {
		t.Errorf("frontend web: header rules %v on requests and %v on responses, want one of each", h.ReqRules, h.RespRules)
	}
	if h.Default.Hash.Kind != httpproxy.HashClient {
		t.Errorf("backend app hashes %+v, want the client's address", h.Default.Hash)
	}

	raw := p.Frontends[1]
	tcp, ok := raw.Handler.(*proxy.TCP)
	if !ok {
		t.Fatalf("frontend raw's handler is %T, want *proxy.TCP", raw.Handler)
	}
	if raw.Backend != backends["db"] || tcp.Backend != backends["db"] || tcp.Name != "raw" || tcp.ClientTimeout != 7*time.Second {
		t.Errorf("frontend raw: handler %+v", tcp)
	}
	db := backends["db"]
	if db.Retries != 2 || db.Pool.Servers[0].Addr != "10.0.0.5:5432" {
		t.Errorf("backend db: retries %d, server at %s", db.Retries, db.Pool.Servers[0].Addr)
	}
}

// TestBuildChecks: the checks' settings come resolved and parsed.
func TestBuildChecks(t *testing.T) {
	p, err := Build(context.Background(), parse(t, mixed), resolver, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]health.Settings{}
	for _, c := range p.Checks {
		if c.Backend.Name() != "app" || c.Backend.Pool.Lookup(c.Server.Name) != c.Server {
			t.Errorf("check of %s/%s", c.Backend.Name(), c.Server.Name)
		}
		got[c.Server.Name] = c.Settings
	}
	s1 := health.Settings{
		Type: health.TypeHTTP, Interval: 3 * time.Second, FastInterval: 3 * time.Second, DownInterval: 3 * time.Second,
		Timeout: 3 * time.Second, Rise: 2, Fall: 3, Addr: "10.0.1.1:80", Method: "GET", Path: "/health",
		Expect: [][2]int{{200, 299}, {301, 301}}, OnError: health.OnErrorMarkDown,
	}
	s2 := s1
	s2.Type, s2.Addr = health.TypeTCP, "10.0.1.2:9090"
	want := map[string]health.Settings{"s1": s1, "s2": s2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("check settings\n got %+v\nwant %+v", got, want)
	}
}

// TestBuildErrors: what only the build finds is reported at the line of
// the setting.
func TestBuildErrors(t *testing.T) {
	src := strings.Replace(mixed, "db.internal", "nowhere.internal", 1)
	_, err := Build(context.Background(), parse(t, src), resolver, zerolog.Nop())
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("Build = %v, want one config error", err)
	}
	if want := `lb.toml:32: backend "db": server "d1": cannot resolve "nowhere.internal": no such host`; errs[0].Error() != want {
		t.Errorf("error %q, want %q", errs[0].Error(), want)
	}
}

// TestBuildNeedsValidated: a configuration that no Validate accepted is
// refused, rather than served without what Validate compiles; once
// validated, it builds.
func TestBuildNeedsValidated(t *testing.T) {
	cfg := parse(t, mixed)
	bad := config.Config{Global: cfg.Global, Defaults: cfg.Defaults, Frontends: cfg.Frontends, Backends: cfg.Backends}
	if _, err := Build(context.Background(), &bad, resolver, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "not validated") {
		t.Fatalf("Build of a configuration never validated = %v, want an error", err)
	}
	if err := bad.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), &bad, resolver, zerolog.Nop()); err != nil {
		t.Fatalf("Build after Validate: %v", err)
	}
}
