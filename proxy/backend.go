package proxy

import (
	"net"
	"time"

	"lb/balancer"
)

// Backend is a pool of servers and the way to connect to them.
type Backend struct {
	// Pool picks the server of each connection.
	Pool *balancer.Pool
	// Retries is how many more servers a connection tries after a failed
	// connect.
	Retries int
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration
	// ServerTimeout is how long the server side may stay idle; 0 means no
	// limit.
	ServerTimeout time.Duration
}

// Name returns the backend's name.
func (b *Backend) Name() string { return b.Pool.Name }

// dial connects to one server within the connect timeout.
func (b *Backend) dial(s *balancer.Server) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: b.ConnectTimeout}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
