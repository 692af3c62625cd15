package main

import (
	"fmt"
	"strings"

	"lb/internal/bench/benchutil"
)

// lbConfig is lb's configuration: HTTP mode, one frontend on port, one
// round-robin backend with every server, no health checks.
func lbConfig(port int, backends []*benchutil.HTTPBackend) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
log_level = "error"

[defaults]
mode = "http"

[defaults.timeout]
connect = "5s"
client = "30s"
server = "30s"

[[frontend]]
name = "bench"
bind = ["127.0.0.1:%d"]
default_backend = "app"

[[backend]]
name = "app"
balance = "roundrobin"

[backend.check]
type = "none"
`, port)
	for _, be := range backends {
		fmt.Fprintf(&b, "\n[[backend.server]]\nname = %q\naddress = %q\n", be.Name, be.Addr())
	}
	return b.String()
}

// haproxyConfig is HAProxy's equivalent of lbConfig: mode http with its
// defaults (http-keep-alive, http-reuse safe), no logs, no health checks,
// and X-Forwarded-For added as lb adds it. threads > 0 sets nbthread;
// otherwise HAProxy starts one thread per CPU.
func haproxyConfig(port int, backends []*benchutil.HTTPBackend, threads int) string {
	var b strings.Builder
	b.WriteString("global\n")
	if threads > 0 {
		fmt.Fprintf(&b, "    nbthread %d\n", threads)
	}
	fmt.Fprintf(&b, `
defaults
    mode http
    option http-keep-alive
    http-reuse safe
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:%d
    default_backend app

backend app
    balance roundrobin
`, port)
	for _, be := range backends {
		fmt.Fprintf(&b, "    server %s %s\n", be.Name, be.Addr())
	}
	return b.String()
}
