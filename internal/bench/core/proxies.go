package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lb/internal/bench/benchutil"
)

// proxy is one of the two proxies compared.
type proxy struct {
	name    string // "lb" or "haproxy"
	label   string // as printed: "lb", "HAProxy"
	bin     string
	version string
	// missing is why it is not measured at all.
	missing string
}

// frontends are the addresses of a started proxy: HTTP mode and TCP mode
// in front of the HTTP backend, and TCP mode in front of the sink.
type frontends struct {
	http, tcp, bulk string
	stats           string // Prometheus metrics at /metrics
	// limited is HTTP mode with a per-client rate limit that every
	// request goes through (and none reaches): a table tracking the
	// client, a rule reading its request rate.
	limited string
	// https and httpsRSA are HTTP mode over TLS (h2 and http/1.1) in
	// front of the HTTP backend, with an ECDSA and an RSA certificate;
	// httpsBulk the same (ECDSA) in front of the server of bigBody
	// responses; httpsH2 the same in front of the HTTP/2 backend (h2c,
	// prior knowledge), spoken to in HTTP/2.
	https, httpsRSA, httpsBulk, httpsH2 string
	// httpsFwd is https again, sending the server the request headers lb
	// adds by default (HAProxy adds none unless told): X-Forwarded-For,
	// X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id.
	httpsFwd string
}

// all returns every address of fe.
func (fe frontends) all() []string {
	return []string{fe.http, fe.tcp, fe.bulk, fe.stats, fe.limited, fe.https, fe.httpsRSA, fe.httpsBulk, fe.httpsH2, fe.httpsFwd}
}

// instance is a started proxy.
type instance struct {
	p    *proxy
	proc *benchutil.Proc
	fe   frontends
}

// lbConfig is lb's configuration: a minimal lb.toml, lb's defaults for
// everything (timeouts, balancing, buffers), and no health checks, as
// HAProxy has none unless a server says `check`.
func lbConfig(fe frontends, backend, sink, big, h2c string, ec, rs certFiles) string {
	return fmt.Sprintf(`# bench-core: lb's defaults, no health checks (HAProxy's default).
[defaults.check]
type = "none"

[stats]
bind = %q

[[frontend]]
name = "http"
mode = "http"
bind = [%q]
default_backend = "http"

[[frontend]]
name = "limited"
mode = "http"
bind = [%q]
default_backend = "http"
track = ["per_client"]

[[frontend.rule]]
when = "abuser"
action = "deny"
status = 429

[[acl]]
name = "abuser"
table = "per_client"
figure = "http_req_rate"
above = 1000000000

[[table]]
name = "per_client"
period = "10s"

[[frontend]]
name = "tcp"
bind = [%q]
default_backend = "tcp"

[[frontend]]
name = "bulk"
bind = [%q]
default_backend = "sink"

[[backend]]
name = "http"
mode = "http"

[[backend.server]]
name = "s1"
address = %q

[[backend]]
name = "tcp"

[[backend.server]]
name = "s1"
address = %q

[[backend]]
name = "sink"

[[backend.server]]
name = "s1"
address = %q

%s%s%s
[[backend]]
name = "big"
mode = "http"

[[backend.server]]
name = "s1"
address = %q
%s
[[backend]]
name = "h2"
mode = "http"
proto = "h2"

[[backend.server]]
name = "s1"
address = %q
`, fe.stats, fe.http, fe.limited, fe.tcp, fe.bulk, backend, backend, sink,
		lbTLSFrontend("https", fe.https, "http", ec), lbTLSFrontend("https-rsa", fe.httpsRSA, "http", rs),
		lbTLSFrontend("https-bulk", fe.httpsBulk, "big", ec), big, lbTLSFrontend("https-h2", fe.httpsH2, "h2", ec)+
			lbTLSFrontend("https-fwd", fe.httpsFwd, "http", ec), h2c)
}

// lbTLSFrontend is an HTTP-mode frontend of lb over TLS with cert.
func lbTLSFrontend(name, bind, backend string, cert certFiles) string {
	return fmt.Sprintf(`
[[frontend]]
name = %q
mode = "http"
bind = [%q]
default_backend = %q

[frontend.tls]
cert = [{ cert_file = %q, key_file = %q }]
`, name, bind, backend, cert.cert, cert.key)
}

// haproxyConfig is HAProxy's equivalent: one thread, the timeouts lb has
// by default, nothing tuned (no maxconn: HAProxy derives it from the file
// limit), no logs, no checks.
func haproxyConfig(fe frontends, backend, sink, big, h2c string, ec, rs certFiles) string {
	return fmt.Sprintf(`# bench-core: one thread, lb's default timeouts, nothing tuned.
global
    nbthread 1

defaults
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout http-request 10s
    timeout http-keep-alive 15s

frontend http
    mode http
    bind %s
    default_backend http

backend http
    mode http
    server s1 %s

frontend limited
    mode http
    bind %s
    stick-table type ip size 100k expire 60s store http_req_rate(10s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
    default_backend http

frontend tcp
    mode tcp
    bind %s
    default_backend tcp

backend tcp
    mode tcp
    server s1 %s

frontend bulk
    mode tcp
    bind %s
    default_backend sink

backend sink
    mode tcp
    server s1 %s

frontend stats
    mode http
    bind %s
    http-request use-service prometheus-exporter if { path /metrics }

%s%s%s
backend big
    mode http
    server s1 %s
%s
backend h2
    mode http
    server s1 %s proto h2
`, fe.http, backend, fe.limited, fe.tcp, backend, fe.bulk, sink, fe.stats,
		haproxyTLSFrontend("https", fe.https, "http", ec), haproxyTLSFrontend("https-rsa", fe.httpsRSA, "http", rs),
		haproxyTLSFrontend("https-bulk", fe.httpsBulk, "big", ec), big, haproxyTLSFrontend("https-h2", fe.httpsH2, "h2", ec)+
			haproxyTLSFrontend("https-fwd", fe.httpsFwd, "http", ec)+haproxyForwardHeaders, h2c)
}

// haproxyForwardHeaders makes an HAProxy frontend send the server what lb
// sends by default: X-Forwarded-For (option forwardfor),
// X-Forwarded-Proto, X-Forwarded-Host and a request id of 16 hex digits in
// X-Request-Id, each the way an HAProxy operator would write it.
const haproxyForwardHeaders = `    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    unique-id-format %[rand(4294967295),hex]
    unique-id-header X-Request-Id
`

// haproxyTLSFrontend is an HTTP-mode frontend of HAProxy over TLS with
// cert, offering h2 and http/1.1 as lb does.
func haproxyTLSFrontend(name, bind, backend string, cert certFiles) string {
	return fmt.Sprintf(`
frontend %s
    mode http
    bind %s ssl crt %s alpn h2,http/1.1
    default_backend %s
`, name, bind, cert.crt, backend)
}

// spec is how p is started, pinned to cpus, with its configuration in
// cfg: lb with GOMAXPROCS=1 and -q (errors only: HAProxy logs nothing
// without a log line), HAProxy in the foreground (-db).
func (p *proxy) spec(name, cfg, cpus, dir string) benchutil.Spec {
	if p.name == "lb" {
		return benchutil.Spec{Name: name, Bin: p.bin, Args: []string{"-f", cfg, "-q"}, Env: []string{"GOMAXPROCS=1"}, CPUs: cpus, Dir: dir}
	}
	return benchutil.Spec{Name: name, Bin: p.bin, Args: []string{"-f", cfg, "-db"}, CPUs: cpus, Dir: dir}
}

// command is p's command line as the report shows it.
func (p *proxy) command(cpus string) string {
	return p.spec(p.name, "CFG", cpus, "").Command()
}

// startProxy starts a fresh p on free ports, and waits until it accepts
// on every frontend and has served one request through each of the two
// in front of the HTTP backend. The caller stops it.
func (r *runner) startProxy(ctx context.Context, p *proxy) (*instance, error) {
	ports, err := benchutil.FreePorts(10)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	fe := frontends{http: addr(0), tcp: addr(1), bulk: addr(2), stats: addr(3), limited: addr(4),
		https: addr(5), httpsRSA: addr(6), httpsBulk: addr(7), httpsH2: addr(8), httpsFwd: addr(9)}
	r.seq++
	name := fmt.Sprintf("%s-%02d", p.name, r.seq)
	cfg := filepath.Join(r.dir, name+".cfg")
	text := haproxyConfig(fe, r.backendAddr, r.sinkAddr, r.bigAddr, r.h2cAddr, r.ecdsa, r.rsa)
	if p.name == "lb" {
		cfg = filepath.Join(r.dir, name+".toml")
		text = lbConfig(fe, r.backendAddr, r.sinkAddr, r.bigAddr, r.h2cAddr, r.ecdsa, r.rsa)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("%s: write its configuration: %w", p.label, err)
	}
	proc, err := benchutil.StartProc(p.spec(name, cfg, r.o.proxyCPU, r.dir))
	if err != nil {
		return nil, err
	}
	r.reg.Add(proc)
	in := &instance{p: p, proc: proc, fe: fe}
	for _, addr := range fe.all() {
		if err := proc.WaitReady(ctx, addr); err != nil {
			r.stopProxy(in)
			return nil, err
		}
	}
	for _, addr := range []string{fe.http, fe.tcp, fe.limited} {
		if err := benchutil.Probe(ctx, addr, r.o.body); err != nil {
			r.stopProxy(in)
			return nil, fmt.Errorf("%s accepts on %s but a first request failed: %w; its output (%s):\n%s",
				p.label, addr, err, proc.LogPath, benchutil.Indent(proc.LogTail(2048)))
		}
	}
	return in, nil
}

// stopProxy stops in, and notes it if it would not stop.
func (r *runner) stopProxy(in *instance) {
	if err := in.proc.Stop(); err != nil {
		r.res.note("%s: %v", in.p.label, err)
	}
}

// alive fails if in's process has exited.
func (in *instance) alive(when string) error {
	if gone, how := in.proc.Exited(); gone {
		return in.proc.ExitError(how, when)
	}
	return nil
}

// errorLines returns the first n lines of in's log (of its first 64 KiB)
// that mention an error, for the report: why connections were refused, say.
func (in *instance) errorLines(n int) []string {
	f, err := os.Open(in.proc.LogPath)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	var out []string
	for line := range strings.Lines(string(b)) {
		l := strings.ToLower(line)
		if strings.Contains(l, "error") || strings.Contains(l, "too many") || strings.Contains(l, "alert") {
			out = append(out, strings.TrimSpace(line))
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// settleTime is the pause after a proxy's start before its resident memory
// and descriptors are read.
const settleTime = 300 * time.Millisecond
