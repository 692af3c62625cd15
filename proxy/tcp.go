package proxy

import (
	"time"

	"github.com/rs/zerolog"
)

// TCP is the ConnHandler of a TCP-mode frontend: it connects each client to
// a server of Backend and copies bytes both ways until either side is done,
// then logs one line. Set its fields before the frontend serves.
type TCP struct {
	// Name is the frontend's name, as logs give it.
	Name string
	// Backend takes the connections.
	Backend *Backend
	// ClientTimeout is how long the client side may stay idle; 0 means no
	// limit.
	ClientTimeout time.Duration
	// Log receives one line per connection. The zero value logs nothing.
	Log zerolog.Logger
}

// ServeConn proxies one client connection: it connects it and moves its
// bytes, and returns once the connection has ended or is at rest (parked);
// the session closes it and calls c.Done when it ends.
func (t *TCP) ServeConn(c *Conn) {
	newSession(t, c).run()
}
