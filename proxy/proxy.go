package proxy

import (
	"crypto/tls"

	"lb/balancer"
	"lb/health"
	"lb/table"
	"lb/tlsconf"
)

// Proxy is every frontend and backend of one configuration, as package
// provision builds them.
type Proxy struct {
	Frontends []*Frontend
	Backends  []*Backend
	// Checks are the health checks of the servers that have one.
	Checks []Check
	// TLS are the TLS frontends' configurations, which share the session
	// ticket keys; TicketKeys are the keys of global.ticket_keys_file,
	// newest first, if it is set.
	TLS        []*tls.Config
	TicketKeys []tlsconf.TicketKey
	// Tables are the stick tables, in the configuration's order.
	Tables []*table.Table
}

// Check is one server's health check, its settings resolved.
type Check struct {
	Backend  *Backend
	Server   *balancer.Server
	Settings health.Settings
}
