package proxy

import (
	"errors"
	"fmt"
	"net"
	"time"

	"lb/balancer"
	"lb/proxyproto"
	"lb/stats"
	"lb/table"
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
	// QueueTimeout is how long a connection waits for a slot when every
	// server that could take it is full; 0 means it is closed at once.
	QueueTimeout time.Duration
	// Observer, when set, hears how each connection to a server went: the
	// passive health check.
	Observer Observer
	// Counts are the backend's counters.
	Counts stats.Backend
	// SendProxy is the PROXY protocol version lb sends to the servers
	// before anything else: 0 (none), 1 or 2.
	SendProxy int
	// Stick, when set, keeps each client on the server it got first: the
	// table's entry of the client's key names the server (TCP mode keys
	// by the client's address).
	Stick *table.Table
}

// WriteProxyHeader sends the PROXY protocol header of h to a server just
// connected, within the connect timeout.
func (b *Backend) WriteProxyHeader(c *net.TCPConn, h proxyproto.Header) error {
	var buf [256]byte
	var hdr []byte
	if b.SendProxy == 1 {
		hdr = proxyproto.AppendV1(buf[:0], h)
	} else {
		hdr = proxyproto.AppendV2(buf[:0], h)
	}
	if b.ConnectTimeout > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(b.ConnectTimeout))
		defer c.SetWriteDeadline(time.Time{})
	}
	if _, err := c.Write(hdr); err != nil {
		return fmt.Errorf("sending the PROXY protocol header: %w", err)
	}
	return nil
}

// Observer hears the outcome of real traffic to a server: nil for a
// connection that worked, the error of one that failed to connect, was
// reset or timed out on the server side. It must not block.
type Observer interface {
	ObserveConn(s *balancer.Server, err error)
}

// Errors an Observer hears for failures after connecting: the server's
// connection failed (a reset, a cut response), or the server side stayed
// idle too long.
var (
	ErrServerReset   = errors.New("server connection failed")
	ErrServerTimeout = errors.New("server timed out")
)

// Observe reports to the Observer, if any.
func (b *Backend) Observe(s *balancer.Server, err error) {
	if b.Observer != nil {
		b.Observer.ObserveConn(s, err)
	}
}

// Name returns the backend's name.
func (b *Backend) Name() string { return b.Pool.Name }

// Dial connects to one server within the connect timeout.
func (b *Backend) Dial(s *balancer.Server) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: b.ConnectTimeout}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
