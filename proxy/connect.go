package proxy

import (
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
)

// MaxRetries bounds Backend.Retries: the servers one client tries are kept
// in a fixed array (see Connecting), so that connecting never allocates.
const MaxRetries = 10

// Dialer makes the connection to one server for Connect, and keeps it: a
// TCP session dials a bare connection, an HTTP exchange takes one from its
// backend's pool of idle connections or dials a new one.
type Dialer interface {
	// DialServer connects to s, or returns why it could not.
	DialServer(s *balancer.Server) error
}

// A Doner is a client that may go away: Done returns a channel closed
// then.
type Doner interface{ Done() <-chan struct{} }

// Connecting is one client's way to a server of a backend: what Connect
// needs, and what it found. Set the fields before Connect; the zero value
// is a client without a hash key, stickiness or a way to give up. A
// Connecting serves one client: zero it before the next.
type Connecting struct {
	// Hash is the client's key for hashing algorithms (see
	// balancer.HashAddr).
	Hash uint64
	// Sticky, when set, is the server tried first, if it can take the
	// client: the one a persistence cookie named.
	Sticky *balancer.Server
	// Gone, when set, ends a wait in the queue once its Done channel
	// closes: the client has gone (an HTTP/2 stream reset). Connect asks
	// for the channel only when the client waits. Nil: never gone.
	Gone Doner

	// Server is the server connected, its slot taken: the caller releases
	// it. Nil when none could be.
	Server *balancer.Server
	// Attempts counts the servers dialed.
	Attempts int
	// Queued says the client waited in the queue for a server.
	Queued bool
	// Err is why the last dial failed; nil when none failed.
	Err error

	req   balancer.Request // kept here: a pick's Request escapes to the heap
	tried [2 * (MaxRetries + 1)]*balancer.Server
}

// Connect connects c's client to a server of b with d: c.Sticky first when
// it can take the client, else the server the balancer picks. When every
// server that could take the client is full, it waits in b's queue for up
// to b.QueueTimeout, or until c.Gone's channel is closed. After a failed dial, which
// it counts against the server, tells b's Observer and logs on log as
// "connect failed" (frontend names the client's frontend), it tries up to
// b.Retries more servers.
//
// It returns EndNone with c.Server connected, or why no server was:
// EndNoServer (none could take the client), EndQueueTimeout (none freed
// up in time, or c.Gone gone) or EndConnectFailed (every dial failed;
// c.Err says why the last one did). A dial that works is not observed
// here: the caller knows when the server has served the client well.
func (b *Backend) Connect(c *Connecting, d Dialer, frontend string, log *zerolog.Logger) End {
	req := &c.req
	req.Hash, req.Tried = c.Hash, c.tried[:0]
	for c.Attempts <= b.Retries {
		var srv *balancer.Server
		if c.Sticky != nil && c.Attempts == 0 && b.Pool.AcquireSticky(c.Sticky) {
			srv = c.Sticky
		} else {
			srv = b.Pool.Pick(req)
		}
		if srv == nil && c.Attempts == 0 && b.QueueTimeout > 0 && b.Pool.Available() {
			// Every server that could take it is full: wait in the queue.
			c.Queued = true
			b.Counts.Queued.Add(1)
			began := time.Now()
			var done <-chan struct{}
			if c.Gone != nil {
				done = c.Gone.Done()
			}
			srv = b.Pool.Wait(req, began.Add(b.QueueTimeout), done)
			b.Counts.QueueTime.Observe(time.Since(began))
			if srv == nil {
				b.Counts.QueueTimeouts.Add(1)
				return EndQueueTimeout
			}
		}
		if srv == nil {
			break
		}
		if c.Attempts++; c.Attempts > 1 {
			b.Counts.Retries.Add(1)
		}
		err := d.DialServer(srv)
		if err == nil {
			c.Server = srv
			return EndNone
		}
		b.Observe(srv, err)
		srv.CountError()
		b.Counts.ConnectErrors.Add(1)
		srv.Release()
		c.Err = err
		req.Tried = append(req.Tried, srv)
		log.Warn().Str("frontend", frontend).Str("backend", b.Name()).Str("server", srv.Name).
			Str("address", srv.Addr).Err(err).Int("attempt", c.Attempts).Msg("connect failed")
	}
	if c.Attempts == 0 {
		return EndNoServer
	}
	return EndConnectFailed
}
