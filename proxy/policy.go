package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"lb/proxyproto"
	"lb/rules"
	"lb/table"
	"lb/tlshello"
)

// A frontend's traffic policy, at the connection: the PROXY protocol
// header of trusted peers, the stick tables keyed by the client's address,
// and the connection rules. It runs in the connection's goroutine before
// the handler serves it, and only for frontends that have a Policy: the
// others pay nothing.

// KeyKind is what a stick table is keyed by.
type KeyKind uint8

// Key kinds. KeySrc tables count connections (and their requests); the
// others count the requests that carry the key.
const (
	KeySrc KeyKind = iota
	KeyHeader
	KeyCookie
	KeyURLParam
	KeyPath
)

// Track is a stick table a frontend counts its clients in, and the key.
type Track struct {
	Table *table.Table
	Kind  KeyKind
	// Name is the header, cookie or URL parameter of the key.
	Name string
}

// Policy is a frontend's traffic policy at the connection.
type Policy struct {
	// Trusted are the peers that send a PROXY protocol header (v1 or v2)
	// before anything else; nil accepts none. A connection from any other
	// peer that starts with one is refused.
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for a trusted peer's header.
	HeaderTimeout time.Duration
	// Tracks are the tables the frontend tracks, in the order of
	// rules.Subject.Tracked: those keyed by KeySrc count each connection.
	Tracks []Track
	// Rules are the connection rules.
	Rules []*rules.Rule
	// Backends are the backends of use_backend rules, by target (TCP
	// mode).
	Backends []*Backend
	// PeekSNI says a connection rule reads the TLS server name: lb waits
	// (up to HeaderTimeout) for the client's ClientHello and reads the
	// name from it, leaving the bytes for the server or the handshake.
	PeekSNI bool
}

// DefaultHeaderTimeout is how long a trusted peer has to send its PROXY
// protocol header when nothing else bounds it.
const DefaultHeaderTimeout = 5 * time.Second

// ConnInfo is what a frontend with a Policy learned of a connection.
type ConnInfo struct {
	// Client and Local are the connection's addresses, as a PROXY
	// protocol header gave them, else as the socket has them.
	Client, Local netip.AddrPort
	// Proxy is the PROXY protocol header, when Proxied.
	Proxy   proxyproto.Header
	Proxied bool
	// RefuseProxy says the peer is not trusted: a PROXY protocol header
	// from it is refused.
	RefuseProxy bool
	// SNI is the server name of the client's ClientHello, when the policy
	// peeked at it (PeekSNI).
	SNI string
	// Tracked are the connection's entries in the tables keyed by the
	// client's address, held until the connection ends.
	Tracked [rules.MaxTracked]rules.Track
	// Backend is the backend a use_backend connection rule chose (TCP
	// mode), nil when none did.
	Backend *Backend
}

// Info returns what the frontend's policy learned of c, nil when the
// frontend has none.
func (c *Conn) Info() *ConnInfo { return c.info }

// Client returns the client's address: a PROXY protocol header's, else the
// socket's peer.
func (c *Conn) Client() netip.AddrPort {
	if c.info != nil {
		return c.info.Client
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// Local returns the address the client connected to, IPv4 unmapped.
func (c *Conn) Local() netip.AddrPort {
	if c.info != nil {
		return c.info.Local
	}
	return localAddr(c.TCPConn)
}

func localAddr(c *net.TCPConn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// CountBytes counts bytes in and out in the connection's tracked entries.
func (ci *ConnInfo) CountBytes(in, out int64, now time.Time) {
	for i := range ci.Tracked {
		if e := ci.Tracked[i].Entry; e != nil {
			e.Bytes(in, out, now)
		}
	}
}

// end gives the tracked entries back.
func (ci *ConnInfo) end() {
	for i := range ci.Tracked {
		if e := ci.Tracked[i].Entry; e != nil {
			e.ConnClosed()
			e.Release()
			ci.Tracked[i].Entry = nil
		}
	}
}

// headerBufs are the buffers PROXY protocol headers are read into.
var headerBufs = sync.Pool{New: func() any { b := make([]byte, 600); return &b }}

// errProxyRefused is a PROXY protocol header from a peer not trusted to
// send one.
var errProxyRefused = errors.New("PROXY protocol header from a peer not listed in accept_proxy")

// admit applies the frontend's policy to a new connection. It reports
// whether the handler may serve it; when not, the connection is closed and
// done.
func (f *Frontend) admit(c *Conn) bool {
	p := f.Policy
	ci := &ConnInfo{Local: localAddr(c.TCPConn)}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ci.Client = a.AddrPort()
	}
	c.info = ci
	if len(p.Trusted) > 0 {
		if !trusted(p.Trusted, ci.Client.Addr()) {
			ci.RefuseProxy = true
		} else if err := ci.readHeader(c.TCPConn, p.HeaderTimeout); err != nil {
			f.Counts.ProxyErrors.Add(1)
			f.Log.Warn().Str("frontend", f.Name).Str("peer", ci.Client.String()).Err(err).
				Msg("closed a connection from a trusted peer without a valid PROXY protocol header")
			f.refuse(c)
			return false
		}
	}
	if p.PeekSNI {
		if !ci.peekSNI(c.TCPConn, p.HeaderTimeout) {
			f.refuse(c) // the client left before its ClientHello was whole
			return false
		}
	}
	now := time.Now()
	var key [64]byte
	for i, t := range p.Tracks {
		if t.Kind != KeySrc || i >= len(ci.Tracked) {
			continue
		}
		k := ci.Client.Addr().Unmap().AppendTo(key[:0])
		e := t.Table.Acquire(k, now)
		if e != nil {
			e.ConnOpened(now)
		}
		ci.Tracked[i] = rules.Track{Name: t.Table.Spec().Name, Entry: e}
	}
	if len(p.Rules) == 0 {
		return true
	}
	s := rules.Subject{Client: ci.Client, Local: ci.Local, SNI: ci.SNI, Tracked: ci.Tracked, Now: now}
	v := rules.Evaluate(p.Rules, &s)
	if v.Target >= 0 && v.Target < len(p.Backends) {
		ci.Backend = p.Backends[v.Target]
	}
	if v.Rule == nil || v.Rule.Action == rules.Allow {
		return true
	}
	f.Counts.DeniedConns.Add(1)
	if v.Rule.Action == rules.Tarpit {
		f.Log.Info().Str("frontend", f.Name).Str("client", ci.Client.String()).Stringer("rule", v.Rule).
			Dur("delay", v.Rule.Delay).Msg("connection tarpitted")
		tarpit(c.TCPConn, v.Rule.Delay)
	} else {
		f.Log.Info().Str("frontend", f.Name).Str("client", ci.Client.String()).Stringer("rule", v.Rule).
			Msg("connection denied")
	}
	f.refuse(c)
	return false
}

// refuse closes a connection the policy turned away.
func (f *Frontend) refuse(c *Conn) {
	_ = c.TCPConn.SetLinger(0)
	_ = c.Close()
	c.Done()
}

// tarpit holds a connection for d, or until the client goes.
func tarpit(c *net.TCPConn, d time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [512]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// trusted reports whether a is in one of ps.
func trusted(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// helloBufs are the buffers ClientHellos are peeked into.
var helloBufs = sync.Pool{New: func() any { b := make([]byte, tlshello.MinPeekBuf); return &b }}

// peekSNI reads the server name of the ClientHello the client sends first,
// leaving it in the socket. A client that sends something else, or nothing
// within timeout, has no name; it reports false only when the client went
// away.
func (ci *ConnInfo) peekSNI(c *net.TCPConn, timeout time.Duration) bool {
	err := firstBytes(c, timeout, &helloBufs, func(rc syscall.RawConn, buf []byte) (err error) {
		ci.SNI, err = tlshello.Peek(rc, buf)
		return err
	})
	return err == nil || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)
}

// readHeader reads the PROXY protocol header a trusted peer sends first.
func (ci *ConnInfo) readHeader(c *net.TCPConn, timeout time.Duration) error {
	var h proxyproto.Header
	err := firstBytes(c, timeout, &headerBufs, func(rc syscall.RawConn, buf []byte) (err error) {
		h, err = proxyproto.Read(rc, buf)
		return err
	})
	if err != nil {
		return err
	}
	ci.Proxy, ci.Proxied = h, true
	if !h.Local {
		ci.Client = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		ci.Local = netip.AddrPortFrom(h.Dest.Addr().Unmap(), h.Dest.Port())
	}
	return nil
}

// firstBytes runs read on what a client sends first, through c's RawConn
// with a buffer from bufs, within timeout (DefaultHeaderTimeout when 0).
func firstBytes(c *net.TCPConn, timeout time.Duration, bufs *sync.Pool, read func(rc syscall.RawConn, buf []byte) error) error {
	if timeout <= 0 {
		timeout = DefaultHeaderTimeout
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	bp := bufs.Get().(*[]byte)
	err = read(rc, *bp)
	bufs.Put(bp)
	_ = c.SetReadDeadline(time.Time{})
	return err
}
