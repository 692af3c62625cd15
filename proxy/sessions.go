package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
)

// The connections in flight, for the admin socket's "show sess": each
// frontend keeps its connections in a few lists, so that an accept and a
// close each take one short, rarely contended lock, and nothing else on
// the connection path does.

const sessShards = 16

// sessShard is one list of a frontend's connections.
type sessShard struct {
	mu   sync.Mutex
	head *Conn
}

// sessLinks are a Conn's place in its frontend's lists and what "show
// sess" says of it.
type sessLinks struct {
	shard      *sessShard
	prev, next *Conn
	since      int64 // unix nanoseconds: a time.Time would take 16 more bytes of every connection
	// peer is the socket's peer, kept apart from the socket, which a
	// detached connection (see Conn.Detach) has none of.
	peer    netip.AddrPort
	server  atomic.Pointer[balancer.Server]
	in, out atomic.Int64
}

// register adds c to f's lists.
func (f *Frontend) register(c *Conn) {
	sh := &f.sessions[f.nextShard.Add(1)%sessShards]
	c.links.shard, c.links.since = sh, time.Now().UnixNano()
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		c.links.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	sh.mu.Lock()
	c.links.next = sh.head
	if sh.head != nil {
		sh.head.links.prev = c
	}
	sh.head = c
	sh.mu.Unlock()
}

// unregister takes c out of its frontend's lists.
func (c *Conn) unregister() {
	sh := c.links.shard
	if sh == nil {
		return
	}
	sh.mu.Lock()
	if c.links.prev != nil {
		c.links.prev.links.next = c.links.next
	} else {
		sh.head = c.links.next
	}
	if c.links.next != nil {
		c.links.next.links.prev = c.links.prev
	}
	c.links.prev, c.links.next = nil, nil
	sh.mu.Unlock()
}

// SetServer says which server the connection is being served by now, or
// (HTTP) served its last request. It stores only a change: a keep-alive
// connection to one server stores once.
func (c *Conn) SetServer(s *balancer.Server) {
	if c.links.server.Load() != s {
		c.links.server.Store(s)
	}
}

// CountBytes adds bytes the connection moved, from the client (in) and to
// it (out), for "show sess".
func (c *Conn) CountBytes(in, out int64) {
	if in != 0 {
		c.links.in.Add(in)
	}
	if out != 0 {
		c.links.out.Add(out)
	}
}

// Session is a connection in flight, as "show sess" shows it.
type Session struct {
	Frontend string
	Client   netip.AddrPort // the socket's peer
	Server   string         // "" when none serves it now
	Since    time.Time
	In, Out  int64
}

// Sessions calls fn with each connection of the frontend in flight; fn
// must not block.
func (f *Frontend) Sessions(fn func(Session)) {
	for i := range f.sessions {
		sh := &f.sessions[i]
		sh.mu.Lock()
		for c := sh.head; c != nil; c = c.links.next {
			s := Session{Frontend: f.Name, Client: c.links.peer, Since: time.Unix(0, c.links.since), In: c.links.in.Load(), Out: c.links.out.Load()}
			if srv := c.links.server.Load(); srv != nil {
				s.Server = srv.Name
			}
			fn(s)
		}
		sh.mu.Unlock()
	}
}
