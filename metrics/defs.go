// Package metrics shows a generation's counters: Prometheus exposition at
// /metrics and a JSON document at /stats.json on the stats listener. It
// reads the atomics the data path keeps (package stats) only when asked,
// and adds what the other generations counted (stats.Ledger), so that the
// counters never reset across reloads.
package metrics

import (
	"lb/balancer"
	"lb/proxy"
	"lb/stats"
)

// kind is a metric's type.
type kind int

const (
	counter kind = iota
	gauge
	histogram
)

// def is one metric of an object of type T: its name and help, and how to
// read it. A metric with a code label (HTTP status class) reads codes.
type def[T any] struct {
	name, help string
	kind       kind
	value      func(T) float64
	codes      func(T) *stats.Traffic
	hist       func(T) *stats.Histogram
	// snap is a histogram made at scrape time, such as the sum of a
	// backend's servers'.
	snap func(T) stats.HistogramSnapshot
}

// serversHist sums one histogram of every server of b.
func serversHist(b *proxy.Backend, h func(*balancer.Server) *stats.Histogram) stats.HistogramSnapshot {
	var out stats.HistogramSnapshot
	for _, s := range b.Pool.Servers {
		out.Add(h(s).Snapshot())
	}
	return out
}

// serversSum sums a figure of every server of b.
func serversSum(b *proxy.Backend, f func(*balancer.Server) float64) float64 {
	var n float64
	for _, s := range b.Pool.Servers {
		n += f(s)
	}
	return n
}

// server is what the server metrics read: the server and its health.
type server struct {
	be  *proxy.Backend
	srv *balancer.Server
	h   healthView
}

// healthView is what the metrics show of a server's health check.
type healthView struct {
	checked, up    bool
	checkSeconds   float64
	changedSeconds float64 // unix time of the last change; 0: none seen
}

var frontendDefs = []def[*proxy.Frontend]{
	{name: "lb_frontend_connections_current", help: "Connections being served.", kind: gauge,
		value: func(f *proxy.Frontend) float64 { return float64(f.Active()) }},
	{name: "lb_frontend_connections_total", help: "Connections accepted.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.Conns.Load()) }},
	{name: "lb_frontend_max_connections", help: "The frontend's maxconn: connections served at once.", kind: gauge,
		value: func(f *proxy.Frontend) float64 { return float64(f.MaxConn) }},
	{name: "lb_frontend_http_requests_total", help: "HTTP requests received.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.Requests.Load()) }},
	{name: "lb_frontend_http_responses_total", help: "HTTP responses sent, by status class.", kind: counter,
		codes: func(f *proxy.Frontend) *stats.Traffic { return &f.Counts.Traffic }},
	{name: "lb_frontend_bytes_in_total", help: "Bytes received from clients (HTTP: bodies).", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.BytesIn.Load()) }},
	{name: "lb_frontend_bytes_out_total", help: "Bytes sent to clients (HTTP: bodies).", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.BytesOut.Load()) }},
	{name: "lb_frontend_tls_handshakes_total", help: "TLS handshakes that succeeded.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.TLSHandshakes.Load()) }},
	{name: "lb_frontend_tls_resumed_total", help: "TLS handshakes that resumed a session (a ticket or a PSK).", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.TLSResumed.Load()) }},
	{name: "lb_frontend_tls_failed_total", help: "TLS handshakes that failed.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.TLSFailed.Load()) }},
	{name: "lb_frontend_denied_connections_total", help: "Connections that connection rules denied or tarpitted.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.DeniedConns.Load()) }},
	{name: "lb_frontend_denied_requests_total", help: "HTTP requests that request rules denied or tarpitted.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.DeniedReqs.Load()) }},
	{name: "lb_frontend_denied_responses_total", help: "HTTP responses that response rules denied.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.DeniedResps.Load()) }},
	{name: "lb_frontend_proxy_errors_total", help: "Connections closed for a missing or malformed PROXY protocol header from a trusted peer, or for one from another peer.", kind: counter,
		value: func(f *proxy.Frontend) float64 { return float64(f.Counts.ProxyErrors.Load()) }},
	{name: "lb_frontend_http_request_duration_seconds", help: "HTTP requests from their first byte to their end.", kind: histogram,
		hist: func(f *proxy.Frontend) *stats.Histogram { return &f.Counts.Duration }},
}

var backendDefs = []def[*proxy.Backend]{
	{name: "lb_backend_connections_current", help: "Connections (HTTP: requests) its servers hold now.", kind: gauge,
		value: func(b *proxy.Backend) float64 {
			return serversSum(b, func(s *balancer.Server) float64 { return float64(max(s.Active(), 0)) })
		}},
	{name: "lb_backend_connections_total", help: "Connections (HTTP: requests) given to its servers.", kind: counter,
		value: func(b *proxy.Backend) float64 {
			return serversSum(b, func(s *balancer.Server) float64 { return float64(s.Total()) })
		}},
	{name: "lb_backend_http_requests_total", help: "HTTP requests routed to the backend.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.Requests.Load()) }},
	{name: "lb_backend_http_responses_total", help: "HTTP responses to the backend's requests, by status class.", kind: counter,
		codes: func(b *proxy.Backend) *stats.Traffic { return &b.Counts.Traffic }},
	{name: "lb_backend_bytes_in_total", help: "Bytes sent to the backend's servers (HTTP: bodies).", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.BytesIn.Load()) }},
	{name: "lb_backend_bytes_out_total", help: "Bytes received from the backend's servers (HTTP: bodies).", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.BytesOut.Load()) }},
	{name: "lb_backend_connect_errors_total", help: "Failed connections to the backend's servers.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.ConnectErrors.Load()) }},
	{name: "lb_backend_response_errors_total", help: "Responses that failed or timed out on the server's side.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.ResponseErrors.Load()) }},
	{name: "lb_backend_retries_total", help: "Servers tried again after a failed connection.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.Retries.Load()) }},
	{name: "lb_backend_queue_current", help: "Clients waiting in the queue for a server.", kind: gauge,
		value: func(b *proxy.Backend) float64 { return float64(b.Pool.Queued()) }},
	{name: "lb_backend_queued_total", help: "Clients that waited in the queue.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.Queued.Load()) }},
	{name: "lb_backend_queue_timeouts_total", help: "Clients that left the queue without a server.", kind: counter,
		value: func(b *proxy.Backend) float64 { return float64(b.Counts.QueueTimeouts.Load()) }},
	{name: "lb_backend_queue_time_seconds", help: "Time spent in the queue.", kind: histogram,
		hist: func(b *proxy.Backend) *stats.Histogram { return &b.Counts.QueueTime }},
	{name: "lb_backend_connect_seconds", help: "Its servers' lb_server_connect_seconds, summed.", kind: histogram,
		snap: func(b *proxy.Backend) stats.HistogramSnapshot {
			return serversHist(b, func(s *balancer.Server) *stats.Histogram { return &s.Counts.Connect })
		}},
	{name: "lb_backend_first_byte_seconds", help: "Its servers' lb_server_first_byte_seconds, summed.", kind: histogram,
		snap: func(b *proxy.Backend) stats.HistogramSnapshot {
			return serversHist(b, func(s *balancer.Server) *stats.Histogram { return &s.Counts.FirstByte })
		}},
	{name: "lb_backend_response_seconds", help: "Its servers' lb_server_response_seconds, summed.", kind: histogram,
		snap: func(b *proxy.Backend) stats.HistogramSnapshot {
			return serversHist(b, func(s *balancer.Server) *stats.Histogram { return &s.Counts.Total })
		}},
	{name: "lb_backend_servers_up", help: "Servers up (passing their checks, or unchecked) and ready.", kind: gauge,
		value: func(b *proxy.Backend) float64 {
			n := 0
			for _, s := range b.Pool.Servers {
				if s.Up() && s.Admin() == balancer.AdminReady {
					n++
				}
			}
			return float64(n)
		}},
}

var serverDefs = []def[server]{
	{name: "lb_server_up", help: "1 when the server passes its health checks (or has none), else 0.", kind: gauge,
		value: func(s server) float64 { return b2f(s.srv.Up()) }},
	{name: "lb_server_ready", help: "1 when the operator's state is ready, 0 for drain or maint.", kind: gauge,
		value: func(s server) float64 { return b2f(s.srv.Admin() == balancer.AdminReady) }},
	{name: "lb_server_maint", help: "1 when the server is in maintenance.", kind: gauge,
		value: func(s server) float64 { return b2f(s.srv.Admin() == balancer.AdminMaint) }},
	{name: "lb_server_weight", help: "The weight in force (the runtime weight).", kind: gauge,
		value: func(s server) float64 { return float64(s.srv.RuntimeWeight()) }},
	{name: "lb_server_effective_weight", help: "The weight balanced by now: lower during slow start.", kind: gauge,
		value: func(s server) float64 { return float64(s.srv.EffectiveWeight()) }},
	{name: "lb_server_connections_current", help: "Connections (HTTP: requests) the server holds now.", kind: gauge,
		value: func(s server) float64 { return float64(max(s.srv.Active(), 0)) }},
	{name: "lb_server_connections_max", help: "The most connections (HTTP: requests) the server held at once, in this generation.", kind: gauge,
		value: func(s server) float64 { return float64(s.srv.MaxActive()) }},
	{name: "lb_server_connections_total", help: "Connections (HTTP: requests) given to the server.", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Total()) }},
	{name: "lb_server_http_requests_total", help: "HTTP requests that the server took.", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Counts.Requests.Load()) }},
	{name: "lb_server_http_responses_total", help: "HTTP responses from the server, by status class.", kind: counter,
		codes: func(s server) *stats.Traffic { return &s.srv.Counts.Traffic }},
	{name: "lb_server_bytes_in_total", help: "Bytes sent to the server (HTTP: bodies).", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Counts.BytesIn.Load()) }},
	{name: "lb_server_bytes_out_total", help: "Bytes received from the server (HTTP: bodies).", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Counts.BytesOut.Load()) }},
	{name: "lb_server_connect_errors_total", help: "Failed connections to the server.", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Stats().Errors) }},
	{name: "lb_server_response_errors_total", help: "Responses that failed or timed out on the server's side.", kind: counter,
		value: func(s server) float64 { return float64(s.srv.Counts.ResponseErrors.Load()) }},
	{name: "lb_server_check_duration_seconds", help: "How long the last health check took (0: no check yet).", kind: gauge,
		value: func(s server) float64 { return s.h.checkSeconds }},
	{name: "lb_server_last_change_timestamp_seconds", help: "When the server's health last changed (0: not seen by this lb).", kind: gauge,
		value: func(s server) float64 { return s.h.changedSeconds }},
	{name: "lb_server_connect_seconds", help: "Time to connect to the server, HTTP, for the requests that made a new connection (not those that took a pooled one).", kind: histogram,
		hist: func(s server) *stats.Histogram { return &s.srv.Counts.Connect }},
	{name: "lb_server_first_byte_seconds", help: "Time from the request sent to the response's first byte, HTTP.", kind: histogram,
		hist: func(s server) *stats.Histogram { return &s.srv.Counts.FirstByte }},
	{name: "lb_server_response_seconds", help: "Time from the request's first byte to the response's end, HTTP.", kind: histogram,
		hist: func(s server) *stats.Histogram { return &s.srv.Counts.Total }},
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
