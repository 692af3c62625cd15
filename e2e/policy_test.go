package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lb/internal/testcert"
)

// lbDefaults begin the configurations of these tests: info logs, and
// timeouts short enough for a test, long enough for a busy machine.
const lbDefaults = "[global]\nlog_level = \"info\"\n[defaults.timeout]\nconnect = \"2s\"\nclient = \"10s\"\nserver = \"10s\"\n"

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (127.0.0.0/8 is all loopback on Linux), and that
// does not follow redirects.
func clientFrom(t *testing.T, ip string, keepAlive bool) *http.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// policyConfig is the traffic policy TestPolicyHTTPRules checks: named
// conditions, a table, request and response rules, conditional header
// rules and routes.
const policyConfig = `
[[acl]]
name = "admin_path"
path_prefix = ["/admin"]

[[acl]]
name = "office"
src = ["127.0.0.2", "10.0.0.0/8"]

[[acl]]
name = "old_host"
host = ["old.example"]

[[acl]]
name = "moved"
path = ["/moved"]

[[acl]]
name = "health"
path = ["/healthz"]
method = ["GET", "HEAD"]

[[acl]]
name = "v2"
query = ["v=2"]

[[acl]]
name = "beta"
cookie = ["beta=1"]

[[acl]]
name = "api"
path_prefix = ["/api/"]

[[acl]]
name = "boom"
path = ["/boom"]

[[acl]]
name = "server_error"
status = ["5xx"]

[[acl]]
name = "slow_path"
path = ["/tarpit"]

[[acl]]
name = "uploads"
method = ["PUT"]
header = ["X-Upload"]

[[frontend.rule]]
when = "admin_path and not office"
action = "deny"

[[frontend.rule]]
when = "old_host"
action = "redirect"
scheme = "https"
status = 301

[[frontend.rule]]
when = "moved"
action = "redirect"
prefix = "https://new.example"
status = 308

[[frontend.rule]]
when = "health"
action = "return"
body = "ok\n"

[[frontend.rule]]
when = "v2 or beta"
action = "use_backend"
backend = "app2"

[[frontend.rule]]
when = "slow_path"
action = "tarpit"
delay = "300ms"
status = 429

[[frontend.rule]]
when = "uploads and not office"
action = "deny"
status = 405
body = "no uploads from here\n"
content_type = "text/plain"

[[frontend.rule]]
on = "response"
when = "boom and server_error"
action = "deny"
status = 503
headers = ["Retry-After: 1"]

[[frontend.header]]
action = "set"
name = "X-Office"
value = "yes"
when = "office and api"

[[frontend.header]]
action = "set"
on = "response"
name = "X-Seen-Error"
value = "1"
when = "server_error"
`

// TestPolicyHTTPRules drives every kind of rule through a real lb: denies,
// allow lists, redirects, fixed responses, tarpits, use_backend by query
// and cookie, conditional header rules, and a response rule.
func TestPolicyHTTPRules(t *testing.T) {
	app := startHTTPBackendFunc(t, "app", func(b *httpBackend, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			w.WriteHeader(500)
			io.WriteString(w, "server trouble\n")
			return
		}
		b.echo(w, r)
	})
	app2 := startHTTPBackend(t, "app2")
	statsPort := freePort(t)
	backends := httpBackendTable("app", "", app) + httpBackendTable("app2", "", app2) +
		"[[table]]\nname = \"clients\"\n" + statsTable(statsPort, "")
	p, addr := startHTTPLB(t, "", "track = [\"clients\"]\n"+policyConfig, backends)
	defer p.stop(t)
	base := "http://" + addr
	office, other := clientFrom(t, "127.0.0.2", true), clientFrom(t, "127.0.0.3", true)

	for _, tc := range []struct {
		name     string
		c        *http.Client
		method   string
		path     string
		host     string
		header   map[string]string
		status   int
		server   string            // the backend that answered; "" when lb did
		want     map[string]string // response fields
		body     string            // the response body, when lb made it
		minDelay time.Duration
	}{
		{name: "deny admin", c: other, path: "/admin/users", status: 403, body: "lb: forbidden\n"},
		{name: "allow-listed admin", c: office, path: "/admin/users", status: 200, server: "app"},
		{name: "https redirect", c: other, path: "/a/b?c=d", host: "old.example:8080", status: 301,
			want: map[string]string{"Location": "https://old.example/a/b?c=d"}},
		{name: "prefix redirect", c: other, path: "/moved?x=1", status: 308,
			want: map[string]string{"Location": "https://new.example/moved?x=1"}},
		{name: "return", c: other, path: "/healthz", status: 200, body: "ok\n",
			want: map[string]string{"Content-Type": "text/plain; charset=utf-8"}},
		{name: "return only for its methods", c: other, method: "POST", path: "/healthz", status: 200, server: "app"},
		{name: "use_backend by query", c: other, path: "/x?a=1&v=2", status: 200, server: "app2"},
		{name: "use_backend by cookie", c: other, path: "/x", header: map[string]string{"Cookie": "a=b; beta=1"}, status: 200, server: "app2"},
		{name: "default backend", c: other, path: "/x?v=3", status: 200, server: "app"},
		{name: "tarpit", c: other, path: "/tarpit", status: 429, minDelay: 300 * time.Millisecond, body: "lb: too many requests\n"},
		{name: "deny with a body", c: other, method: "PUT", path: "/u", header: map[string]string{"X-Upload": "1"}, status: 405,
			body: "no uploads from here\n", want: map[string]string{"Content-Type": "text/plain"}},
		{name: "upload allowed", c: office, method: "PUT", path: "/u", header: map[string]string{"X-Upload": "1"}, status: 200, server: "app"},
		{name: "response deny", c: other, path: "/boom", status: 503, want: map[string]string{"Retry-After": "1"}, body: "lb: service unavailable\n"},
		{name: "response header rule, no error", c: other, path: "/fine", status: 200, server: "app", want: map[string]string{"X-Seen-Error": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			req := newRequest(t, method, base+tc.path, strings.NewReader(""))
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			began := time.Now()
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("X-Server"); got != tc.server {
				t.Errorf("answered by %q, want %q (body %q)", got, tc.server, body)
			}
			for k, v := range tc.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.server == "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if d := time.Since(began); d < tc.minDelay {
				t.Errorf("answered after %v, want at least %v", d, tc.minDelay)
			}
		})
	}

	// Conditional header rules: X-Office reaches the server only for the
	// office's API requests.
	for _, tc := range []struct {
		c    *http.Client
		path string
		want string
	}{{office, "/api/x", "yes"}, {office, "/web", ""}, {other, "/api/x", ""}} {
		_, e := getEcho(t, tc.c, newRequest(t, "GET", base+tc.path, nil))
		if got := e.Header.Get("X-Office"); got != tc.want {
			t.Errorf("%s: X-Office %q at the server, want %q", tc.path, got, tc.want)
		}
	}
	// A response rule's header set on the 5xx the server sent, when no
	// rule denied it.
	resp, err := other.Get(base + "/boom?keep")
	if err == nil {
		resp.Body.Close()
	}
	// (/boom with a query still matches path = ["/boom"]: the deny wins.)
	if err != nil || resp.StatusCode != 503 {
		t.Errorf("/boom?keep: %v %v", err, resp)
	}
	// The metrics count what the rules refused, and the table's keys.
	m, _, err := scrape(newHTTPClient(t), fmt.Sprintf("127.0.0.1:%d", statsPort))
	if err != nil {
		t.Fatal(err)
	}
	for series, least := range map[string]float64{
		`lb_frontend_denied_requests_total{frontend="web"}`:  3, // deny admin, tarpit, deny with a body
		`lb_frontend_denied_responses_total{frontend="web"}`: 2, // /boom twice
		`lb_table_entries{table="clients"}`:                  2, // 127.0.0.2 and 127.0.0.3
		`lb_table_size{table="clients"}`:                     100000,
	} {
		if m[series] < least || m[series] > least {
			t.Errorf("%s = %v, want %v", series, m[series], least)
		}
	}
	var doc struct {
		Tables []struct {
			Table  string             `json:"table"`
			Values map[string]float64 `json:"values"`
		} `json:"tables"`
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats.json", statsPort))
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || len(doc.Tables) != 1 || doc.Tables[0].Table != "clients" || doc.Tables[0].Values["entries"] != 2 {
		t.Errorf("stats.json tables: %+v (%v)", doc.Tables, err)
	}
	// The log names why each request ended.
	ends := map[string]int{}
	for _, l := range p.logLines(t, "request") {
		if e, ok := l["end"].(string); ok {
			ends[e]++
		}
	}
	for _, e := range []string{"denied", "redirect", "return", "tarpit"} {
		if ends[e] == 0 {
			t.Errorf("no request logged with end %q: %v", e, ends)
		}
	}
}

// rateLimitConfig limits each client address to 20 requests over 2 s
// (10/s), with 429 and Retry-After beyond.
const rateLimitConfig = `
track = ["per_client"]

[[frontend.rule]]
when = "too_fast"
action = "deny"
status = 429
headers = ["Retry-After: 2"]

[[acl]]
name = "too_fast"
table = "per_client"
figure = "http_req_rate"
above = 20

[[table]]
name = "per_client"
key = "src"
period = "2s"
size = 1000
`

// TestRateLimitSurvivesReloads runs an abusive client at ten times the
// limit and a polite one beside it, on a fixed cadence, while lb is
// reloaded 50 times: the polite client never gets a 429, and the
// abuser's share of 429s does not drop after the reloads, since every
// generation takes its predecessor's table over.
func TestRateLimitSurvivesReloads(t *testing.T) {
	app := startHTTPBackend(t, "app")
	d := newDaemons(t, "")
	d.writeConfig(daemonConfigMode(d.dir, d.port, "", "http", rateLimitConfig, serverLine("a", app.addr(), "")))
	d.mustLaunch()
	waitPort(t, d.port)
	base := "http://" + d.addr()

	type tally struct{ ok, limited, failed atomic.Int64 }
	var abuser, polite tally
	var firstErr atomic.Value
	// The abuser's outcomes per 500 ms slot, to see that no stretch of the
	// storm lets it through.
	var mu sync.Mutex
	slots := map[int][2]int{} // slot -> {ok, limited}
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := func(wg *sync.WaitGroup, c *http.Client, every time.Duration, tl *tally, record bool) {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; n < 5000; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			resp, err := c.Get(base + "/x")
			if err != nil {
				tl.failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			slot := int(time.Since(start) / (500 * time.Millisecond))
			switch resp.StatusCode {
			case 200:
				tl.ok.Add(1)
			case 429:
				tl.limited.Add(1)
				if resp.Header.Get("Retry-After") != "2" {
					firstErr.CompareAndSwap(nil, "429 without Retry-After: 2")
				}
			default:
				tl.failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
			}
			if record {
				mu.Lock()
				s := slots[slot]
				if resp.StatusCode == 200 {
					s[0]++
				} else {
					s[1]++
				}
				slots[slot] = s
				mu.Unlock()
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go run(&wg, clientFrom(t, "127.0.0.2", true), 10*time.Millisecond, &abuser, true)   // 100/s: 10x the limit
	go run(&wg, clientFrom(t, "127.0.0.3", true), 250*time.Millisecond, &polite, false) // 4/s
	time.Sleep(2500 * time.Millisecond)                                                 // a full period before the reloads
	const reloads = 50
	tick := time.NewTicker(150 * time.Millisecond)
	results := make(chan cmdResult, reloads)
	for range reloads {
		<-tick.C
		args := []string{"-f", d.cfg, "-p", d.pidFile, "-D", "-sf", fmt.Sprint(d.pid())}
		go func() { results <- runCmd(t, time.Minute, nil, append([]string{lbBin}, args...)...) }()
	}
	tick.Stop()
	for range reloads {
		if r := <-results; r.code != 0 {
			t.Errorf("a reload failed: %s", r)
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	for _, p := range logPids(t, d.log()) {
		d.seen[p] = true
	}
	t.Logf("abuser: %d ok, %d limited, %d failed; polite: %d ok, %d limited, %d failed",
		abuser.ok.Load(), abuser.limited.Load(), abuser.failed.Load(), polite.ok.Load(), polite.limited.Load(), polite.failed.Load())
	if v := firstErr.Load(); v != nil {
		t.Errorf("first problem: %v", v)
	}
	if n := polite.limited.Load(); n != 0 {
		t.Errorf("the polite client got %d 429s", n)
	}
	if polite.ok.Load() < 20 {
		t.Errorf("the polite client made only %d requests", polite.ok.Load())
	}
	if abuser.failed.Load() != 0 || polite.failed.Load() != 0 {
		t.Errorf("requests failed during the reloads: abuser %d, polite %d", abuser.failed.Load(), polite.failed.Load())
	}
	// At 10x the limit, about 9 in 10 are refused. A reload that forgot
	// the table would let the next 20 through: with a reload every
	// 150 ms (15 requests), nearly all would pass.
	total := abuser.ok.Load() + abuser.limited.Load()
	if share := float64(abuser.limited.Load()) / float64(total); total < 200 || share < 0.7 {
		t.Errorf("the abuser got %d 429s of %d requests (%.0f%%), want 70%% or more", abuser.limited.Load(), total, 100*share)
	}
	mu.Lock()
	defer mu.Unlock()
	for s, v := range slots {
		if s < 5 || v[0]+v[1] < 10 {
			continue // the first period fills the table; thin slots prove little
		}
		if share := float64(v[1]) / float64(v[0]+v[1]); share < 0.5 {
			t.Errorf("from %v to %v the abuser got 429 for %d of %d requests", time.Duration(s)*500*time.Millisecond, time.Duration(s+1)*500*time.Millisecond, v[1], v[0]+v[1])
		}
	}
	// The table, as the serving generation shows it.
	out := adminQuery(t, d.adminSock, "show table per_client")
	if !strings.Contains(out, `key="127.0.0.2"`) || !strings.Contains(out, `key="127.0.0.3"`) {
		t.Errorf("show table per_client:\n%s", out)
	}
	var reqs int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `key="127.0.0.2"`) {
			fmt.Sscanf(line[strings.Index(line, "http_req_cnt=")+len("http_req_cnt="):], "%d", &reqs)
		}
	}
	if int64(reqs) < total*8/10 {
		t.Errorf("the table counts %d requests of the abuser's %d: the reloads lost counts", reqs, total)
	}
}

// haproxyBin returns HAProxy's path, or skips (CI installs it).
func haproxyBin(t *testing.T) string {
	t.Helper()
	return lookTool(t, "haproxy", "haproxy")
}

// startHAProxy runs HAProxy in the foreground on cfg until the test ends.
func startHAProxy(t *testing.T, cfg string, ports ...int) {
	t.Helper()
	path := writeConfig(t, cfg)
	p := startProc(t, nil, haproxyBin(t), "-f", path, "-db")
	t.Cleanup(func() { p.stop(t) })
	for _, port := range ports {
		waitPort(t, port)
	}
}

// TestProxyProtocolWithHAProxy puts a real HAProxy on each side of lb: in
// front, sending PROXY protocol v2 to an lb that accepts it from it; behind,
// accepting PROXY protocol (v1 and v2) from lb, and answering with the
// client address it learned. The client's own address must come through
// both hops, in TCP and in HTTP mode.
func TestProxyProtocolWithHAProxy(t *testing.T) {
	bin := haproxyBin(t)
	_ = bin
	// HAProxy behind lb: it answers each request with the client address
	// the PROXY protocol header gave it.
	behind := freePort(t)
	behindTLS := freePort(t)
	startHAProxy(t, fmt.Sprintf(`global
    log stderr format raw local0 err
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend echo_src
    bind 127.0.0.1:%d accept-proxy
    http-request return status 200 content-type text/plain lf-string "%%[src] %%[dst_port] %%[ssl_fc]\n"
frontend echo_tlvs
    bind 127.0.0.1:%d accept-proxy
    http-request return status 200 content-type text/plain lf-string "%%[src] %%[fc_pp_authority] %%[ssl_fc]\n"
`, behind, behindTLS), behind, behindTLS)

	for _, mode := range []string{"http", "tcp"} {
		for _, version := range []string{"v1", "v2"} {
			t.Run(mode+"/"+version, func(t *testing.T) {
				// An HTTP check: it must send a header of its own too, or
				// HAProxy (accept-proxy) refuses it and the server is down.
				app := fmt.Sprintf("mode = %q\nsend_proxy = %q\n[backend.check]\ntype = \"http\"\ninterval = \"200ms\"\n%s", mode, version, serverLine("haproxy", fmt.Sprintf("127.0.0.1:%d", behind), ""))
				port := freePort(t)
				cfg := fmt.Sprintf(lbDefaults+`[[frontend]]
name = "web"
mode = %q
bind = ["127.0.0.1:%d"]
default_backend = "app"
[[backend]]
name = "app"
%s`, mode, port, app)
				p := startLB(t, "-f", writeConfig(t, cfg))
				defer p.stop(t)
				waitPort(t, port)
				for _, from := range []string{"127.0.0.4", "127.0.0.5"} {
					resp, err := clientFrom(t, from, false).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf("%s %d 0\n", from, port); string(body) != want {
						t.Errorf("HAProxy behind lb saw %q, want %q", body, want)
					}
				}
			})
		}
	}

	// An HTTPS frontend: v2 tells HAProxy the name the client asked for
	// (the authority TLV), and HTTP/2 clients' streams carry it too.
	t.Run("tls/v2", func(t *testing.T) {
		ca := testcert.NewCA(t)
		dir := t.TempDir()
		certFile, keyFile := ca.WriteLeaf(t, dir, "site", "site.test")
		port := freePort(t)
		cfg := fmt.Sprintf(lbDefaults+`[[frontend]]
name = "web"
mode = "http"
bind = ["127.0.0.1:%d"]
default_backend = "app"
[frontend.tls]
cert = [{ cert_file = %q, key_file = %q }]
[[backend]]
name = "app"
mode = "http"
send_proxy = "v2"
%s`, port, certFile, keyFile, serverLine("haproxy", fmt.Sprintf("127.0.0.1:%d", behindTLS), ""))
		p := startLB(t, "-f", writeConfig(t, cfg))
		defer p.stop(t)
		waitPort(t, port)
		for _, h2 := range []bool{false, true} {
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.10")}}
			tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: h2,
				TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "site.test"}}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(fmt.Sprintf("https://127.0.0.1:%d/", port))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if want := "127.0.0.10 site.test 0\n"; string(body) != want || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
				t.Errorf("HTTP/%d: HAProxy behind lb saw %q, want %q", resp.ProtoMajor, body, want)
			}
		}
	})

	// HAProxy in front of lb, sending PROXY protocol v2; lb accepts it
	// from 127.0.0.1 only, tracks the client in a table and sends v2 on
	// to the HAProxy behind it.
	app := startHTTPBackend(t, "app")
	lbPort, front := freePort(t), freePort(t)
	cfg := fmt.Sprintf(lbDefaults+`[[table]]
name = "clients"
[[frontend]]
name = "web"
mode = "http"
bind = ["127.0.0.1:%d"]
default_backend = "app"
accept_proxy = ["127.0.0.1/32"]
track = ["clients"]
[[backend]]
name = "app"
mode = "http"
%s`, lbPort, serverLine("a", app.addr(), ""))
	adminDir := t.TempDir()
	cfg = strings.Replace(cfg, "[global]\n", fmt.Sprintf("[global]\nadmin_socket = %q\n", adminDir+"/admin.sock"), 1)
	p := startLB(t, "-f", writeConfig(t, cfg))
	defer p.stop(t)
	waitPort(t, lbPort)
	startHAProxy(t, fmt.Sprintf(`defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
listen front
    bind 127.0.0.1:%d
    server lb 127.0.0.1:%d send-proxy-v2
`, front, lbPort), front)
	for _, from := range []string{"127.0.0.6", "127.0.0.7"} {
		_, e := getEcho(t, clientFrom(t, from, false), newRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/who", front), nil))
		if got := e.Header.Get("X-Forwarded-For"); got != from {
			t.Errorf("through HAProxy (send-proxy-v2) and lb: X-Forwarded-For %q, want %q", got, from)
		}
	}
	// lb logs HAProxy's clients, not HAProxy.
	p.waitOutput(t, `"client":"127.0.0.6:`)
	p.waitOutput(t, `"client":"127.0.0.7:`)
	if out := adminQuery(t, adminDir+"/admin.sock", "show table clients"); !strings.Contains(out, `key="127.0.0.6"`) {
		t.Errorf("the table keyed by src does not have HAProxy's client:\n%s", out)
	}

	// A trusted peer that sends no header: closed, and logged. A peer
	// not trusted that sends one: refused (HTTP: 400).
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lbPort))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("a trusted peer without a PROXY header got %q, want the connection closed", b)
	}
	c.Close()
	p.waitOutput(t, "without a valid PROXY protocol header")
	ud := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.8")}}
	c, err = ud.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lbPort))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
		t.Errorf("a PROXY header from a peer not in accept_proxy got %q, want a 400", b)
	}
	p.waitOutput(t, `"client":"127.0.0.8:`)
	if len(app.seen()) != 2 {
		t.Errorf("the server saw %v, want the two requests through HAProxy alone", app.seen())
	}
}

// TestProxyProtocolTCP checks lb's own PROXY protocol in TCP mode: a
// header from a peer not in accept_proxy is refused before any byte
// reaches a server; the v1 header lb sends says who the client is.
func TestProxyProtocolTCP(t *testing.T) {
	// A server that reports the first line it reads: the PROXY header.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			got.Add(1)
			go func() {
				defer c.Close()
				b := make([]byte, 256)
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, _ := c.Read(b)
				c.Write(b[:n])
			}()
		}
	}()
	port := freePort(t)
	cfg := fmt.Sprintf(lbDefaults+`[[frontend]]
name = "tcp"
bind = ["127.0.0.1:%d"]
default_backend = "app"
accept_proxy = ["10.1.2.3"]
[[backend]]
name = "app"
send_proxy = "v1"
%s`, port, serverLine("a", ln.Addr().String(), ""))
	p := startLB(t, "-f", writeConfig(t, cfg))
	defer p.stop(t)
	waitPort(t, port)
	// An untrusted client: lb's v1 header with its own address.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, 256)
	n, err := c.Read(line)
	c.Close()
	want := fmt.Sprintf("PROXY TCP4 127.0.0.9 127.0.0.1 %d %d\r\n", local.Port, port)
	if err != nil || string(line[:n]) != want {
		t.Errorf("the server read %q (%v), want %q", line[:n], err, want)
	}
	// The same client sending a PROXY header of its own: refused.
	before := got.Load()
	c, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if strings.Contains(string(b), "hello") || strings.Contains(string(b), "1.2.3.4") {
		t.Errorf("a PROXY header from an untrusted peer reached the server: %q", b)
	}
	_ = before
	p.waitOutput(t, `"end":"proxy_refused"`)
}

// TestTCPPolicy checks connection rules, use_backend by destination port
// and stickiness on a table in TCP mode, and that the stickiness outlives
// a reload.
func TestTCPPolicy(t *testing.T) {
	a, b, c := startServer(t, "a"), startServer(t, "b"), startServer(t, "c")
	d := newDaemons(t, "")
	port2 := freePort(t)
	frontend := fmt.Sprintf(`mode = "tcp"
bind = ["127.0.0.1:%d", "127.0.0.1:%d"]
track = ["by_src"]

[[frontend.rule]]
on = "connection"
when = "banned"
action = "deny"

[[frontend.rule]]
on = "connection"
when = "second_port"
action = "use_backend"
backend = "other"

[[acl]]
name = "banned"
src = ["127.0.0.66"]

[[acl]]
name = "second_port"
dst_port = [%d]

[[table]]
name = "by_src"

[[table]]
name = "sticky"

[[backend]]
name = "other"
mode = "tcp"
%s`, d.port, port2, port2, serverLine("c", c.addr(), ""))
	backend := "mode = \"tcp\"\nstick = \"sticky\"\n" + serverLine("a", a.addr(), "") + serverLine("b", b.addr(), "")
	cfg := daemonConfigMode(d.dir, d.port, "", "tcp", frontend, backend)
	// The frontend's bind comes from daemonConfigMode: drop its own line.
	cfg = strings.Replace(cfg, fmt.Sprintf("bind = [\"127.0.0.1:%d\"]\n", d.port), "", 1)
	d.writeConfig(cfg)
	d.mustLaunch()
	waitPort(t, d.port)
	first := map[string]string{}
	for _, from := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"} {
		first[from] = whoAnswers(t, d.addr(), from)
		for range 5 {
			if got := whoAnswers(t, d.addr(), from); got != first[from] {
				t.Errorf("client %s went to %s, then to %s: stickiness lost", from, first[from], got)
			}
		}
	}
	if n := len(map[string]bool{first["127.0.0.11"]: true, first["127.0.0.12"]: true, first["127.0.0.13"]: true, first["127.0.0.14"]: true}); n != 2 {
		t.Errorf("4 clients went to %d servers, want both (round robin for new clients): %v", n, first)
	}
	d.mustLaunch()
	for from, srv := range first {
		if got := whoAnswers(t, d.addr(), from); got != srv {
			t.Errorf("after a reload, client %s went to %s, not %s", from, got, srv)
		}
	}
	if got := whoAnswers(t, fmt.Sprintf("127.0.0.1:%d", port2), "127.0.0.11"); got != "c" {
		t.Errorf("the second port went to %q, want backend other's c", got)
	}
	// A banned client is reset: as it connects (the reset may come before
	// the dial returns), or on its first read.
	dd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.66")}}
	if conn, err := dd.Dial("tcp", d.addr()); err == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, _ := io.ReadAll(conn); len(b) != 0 {
			t.Errorf("a banned client got %q", b)
		}
		conn.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	out := adminQuery(t, d.adminSock, "show table sticky")
	for from, srv := range first {
		if !strings.Contains(out, fmt.Sprintf("key=%q", from)) || !strings.Contains(out, "server="+srv) {
			t.Errorf("show table sticky lacks %s -> %s:\n%s", from, srv, out)
		}
	}
	if out := adminQuery(t, d.adminSock, "show table by_src"); !strings.Contains(out, `key="127.0.0.66"`) {
		t.Errorf("the denied client is not counted in by_src:\n%s", out)
	}
	if out := adminQuery(t, d.adminSock, "clear table sticky 127.0.0.11"); !strings.Contains(out, "removed") {
		t.Errorf("clear table: %s", out)
	}
	if out := adminQuery(t, d.adminSock, "show table sticky 127.0.0.11"); strings.Contains(out, "key=") {
		t.Errorf("after clear table, the key is still there:\n%s", out)
	}
}

// TestTablesInStateFile checks that a stick table survives a stop and a
// start through state_file.
func TestTablesInStateFile(t *testing.T) {
	app := startHTTPBackend(t, "app")
	d := newDaemons(t, "")
	state := d.dir + "/state.json"
	cfg := daemonConfigMode(d.dir, d.port, fmt.Sprintf("state_file = %q", state), "http",
		"track = [\"per_client\"]\n[[table]]\nname = \"per_client\"\nperiod = \"60s\"\n", serverLine("a", app.addr(), ""))
	d.writeConfig(cfg)
	counts := func() int {
		out := adminQuery(t, d.adminSock, "show table per_client 127.0.0.21")
		var n int
		if i := strings.Index(out, "http_req_cnt="); i >= 0 {
			fmt.Sscanf(out[i+len("http_req_cnt="):], "%d", &n)
		}
		return n
	}
	c := clientFrom(t, "127.0.0.21", false)
	for round := 1; round <= 2; round++ {
		pid := d.mustLaunch()
		waitPort(t, d.port)
		for range 5 {
			resp, err := c.Get("http://" + d.addr() + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if n := counts(); n != 5*round {
			t.Errorf("start %d: the table counts %d requests, want %d", round, n, 5*round)
		}
		stopLBs(t, 15*time.Second, pid)
		d.writeConfig(cfg)
		// The next start has no old generation: it reads state_file.
		var doc struct {
			Tables []json.RawMessage `json:"tables"`
		}
		b, _ := os.ReadFile(state)
		if err := json.Unmarshal(b, &doc); err != nil || len(doc.Tables) != 1 {
			t.Fatalf("state file: %v, %d tables:\n%s", err, len(doc.Tables), b)
		}
	}
}

// TestSNIRouting routes TLS connections that lb does not terminate by the
// name in their ClientHello (HAProxy's req.ssl_sni in TCP mode): each
// client's handshake completes with the server of its name, whose
// certificate it verifies, so lb left every byte of the hello in place.
func TestSNIRouting(t *testing.T) {
	ca := testcert.NewCA(t)
	tlsServer := func(name string, names ...string) string {
		certPEM, keyPEM := ca.Leaf(t, names...)
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
		return startRawBackend(t, name, func(c net.Conn) {
			tc := tls.Server(c, cfg)
			_, _ = io.WriteString(tc, name+"\n")
			_, _ = io.Copy(io.Discard, tc)
		}).addr()
	}
	a := tlsServer("a", "a.test")
	b := tlsServer("b", "b.test", "x.b.test")
	port := freePort(t)
	cfg := fmt.Sprintf(lbDefaults+`[[acl]]
name = "to_b"
sni = ["b.test", "*.b.test"]
[[acl]]
name = "blocked"
sni = ["blocked.test"]
[[frontend]]
name = "tls"
bind = ["127.0.0.1:%d"]
default_backend = "a"
[[frontend.rule]]
on = "connection"
when = "blocked"
action = "deny"
[[frontend.rule]]
on = "connection"
when = "to_b"
action = "use_backend"
backend = "b"
[[backend]]
name = "a"
%s
[[backend]]
name = "b"
%s`, port, serverLine("a", a, ""), serverLine("b", b, ""))
	p := startLB(t, "-f", writeConfig(t, cfg))
	defer p.stop(t)
	waitPort(t, port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct{ name, want string }{
		{"a.test", "a"}, {"b.test", "b"}, {"X.B.Test", "b"}, {"blocked.test", ""},
	} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: tc.name, RootCAs: ca.Pool()})
		if tc.want == "" {
			if err == nil {
				c.Close()
				t.Errorf("%s: the handshake went through; want the connection denied", tc.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line := make([]byte, 2)
		_, err = io.ReadFull(c, line)
		c.Close()
		if err != nil || string(line) != tc.want+"\n" {
			t.Errorf("%s: answered by %q (%v), want %s", tc.name, line, err, tc.want)
		}
	}
	p.waitOutput(t, "connection denied")
	// A client whose first bytes are not a ClientHello goes to the
	// default backend at once, without waiting out the 5 s lb gives a
	// hello: server a's TLS stack answers it (an alert) and closes.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	io.WriteString(c, "\x16\x03\x01\x00\x05hello") // a handshake record, but not a client_hello
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(c)
	if d := time.Since(began); d > 4*time.Second {
		t.Errorf("a client that sent no ClientHello waited %v: lb waited for one", d)
	}
}

// TestSendProxyKeepsAConnectionPerClient: in HTTP mode a server
// connection that carries a client's PROXY protocol header serves that
// client's next requests too (never another client's), on the same server
// even with round robin, as a PROXY protocol receiver expects of a
// connection.
func TestSendProxyKeepsAConnectionPerClient(t *testing.T) {
	// Servers that read the header, then answer every request on the
	// connection with their name, the connection's number and the source
	// the header gave.
	type seen struct{ conns atomic.Int64 }
	serve := func(name string, s *seen) string {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n := s.conns.Add(1)
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(20 * time.Second))
					br := bufio.NewReader(c)
					line, err := br.ReadString('\n')
					if err != nil || !strings.HasPrefix(line, "PROXY TCP4 ") {
						return
					}
					src := strings.Fields(line)[2]
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						io.Copy(io.Discard, req.Body)
						body := fmt.Sprintf("%s %d %s", name, n, src)
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					}
				}()
			}
		}()
		return ln.Addr().String()
	}
	var sa, sb seen
	a, b := serve("a", &sa), serve("b", &sb)
	backends := fmt.Sprintf("[[backend]]\nname = \"app\"\nsend_proxy = \"v1\"\n%s%s", serverLine("a", a, ""), serverLine("b", b, ""))
	p, addr := startHTTPLB(t, "", "", backends)
	defer p.stop(t)
	for _, from := range []string{"127.0.0.31", "127.0.0.32"} {
		c := clientFrom(t, from, true)
		first := ""
		for i := range 5 {
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasSuffix(string(body), " "+from) {
				t.Fatalf("%s: request %d answered %q: another client's connection", from, i, body)
			}
			if i == 0 {
				first = string(body)
			} else if string(body) != first {
				t.Errorf("%s: request %d answered %q, the first %q: a new server connection", from, i, body, first)
			}
		}
	}
	if n := sa.conns.Load() + sb.conns.Load(); n != 2 {
		t.Errorf("%d server connections for 2 keep-alive clients of 5 requests each, want 2", n)
	}
}
