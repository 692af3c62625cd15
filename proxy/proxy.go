package proxy

import (
	"lb/balancer"
	"lb/health"
)

// Proxy is every frontend and backend of one configuration, as package
// provision builds them.
type Proxy struct {
	Frontends []*Frontend
	Backends  []*Backend
	// Checks are the health checks of the servers that have one.
	Checks []Check
}

// Check is one server's health check, its settings resolved.
type Check struct {
	Backend  *Backend
	Server   *balancer.Server
	Settings health.Settings
}
