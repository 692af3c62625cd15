// Package h2 serves HTTP/2 client connections for lb's HTTP mode, on
// golang.org/x/net/http2's Framer and hpack: lb owns the connection's
// state (streams, flow control, GOAWAY), so that it can hold every request
// to the rules of lb's strict HTTP/1 parser before any of it reaches a
// server, and answer what it cannot forward with a stream error, as RFC
// 9113 requires, rather than with a response or a server's error.
//
// Each stream's request is translated into an HTTP/1.1 request head
// (ReadRequest) and handed to the Handler in a goroutine of its own. The
// handler reads the request body from the Stream and writes the response
// to it; the connection takes care of flow control both ways, of
// interleaving the streams' frames, and of ending the stream.
package h2

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"

	"lb/h1"
)

// Handler serves the streams of HTTP/2 connections.
type Handler interface {
	// ServeStream serves one stream; it is called in a goroutine of its
	// own, and the stream ends when it returns. A stream whose request
	// lb cannot forward comes with Err set: it was already reset (a
	// *MalformedError) or only needs an answer (an *h1.Error, 431).
	ServeStream(st *Stream)
}

// Settings lb advertises, and limits of its own.
const (
	// DefaultMaxStreams is the default of Server.MaxStreams (HAProxy's
	// default too).
	DefaultMaxStreams = 100
	// streamWindow is the receive window of each stream: how much of a
	// request body a client may send before lb has passed it on.
	streamWindow = 256 << 10
	// connWindow is the receive window of a connection, all streams
	// together.
	connWindow = 1 << 20
	// readFrameSize is the largest frame lb reads: the protocol's
	// default, which needs no setting, and HAProxy's.
	readFrameSize = 16 << 10
	// lingerTime bounds how long a closing connection is read from (and
	// what comes discarded) so that closing it does not reset it before
	// the client has read the last frames.
	lingerTime = time.Second
	// bufSize is the size of a connection's read and write buffers.
	bufSize = 16<<10 + 9
)

// Server holds what a frontend's HTTP/2 connections share. Set its fields
// before the first ServeConn; the zero value of each takes a default.
type Server struct {
	// Handler serves the streams.
	Handler Handler
	// Limits bound each request head (and trailer section), counted as
	// its HTTP/1.1 form would be; over them lb answers 431.
	Limits h1.Limits
	// MaxStreams bounds the streams a client may have open at once;
	// 0 means DefaultMaxStreams.
	MaxStreams uint32
	// HandshakeTimeout bounds the wait for the client's connection
	// preface and first SETTINGS; 0 means none.
	HandshakeTimeout time.Duration
	// IdleTimeout is how long a connection with no stream open is kept;
	// 0 means for ever.
	IdleTimeout time.Duration
	// Timeout bounds each wait on the client while a stream is served:
	// for more of the request body, and for flow-control window to send
	// the response (a client that does not read); 0 means none.
	Timeout time.Duration

	mu      sync.Mutex
	shut    bool
	conns   map[*conn]struct{}
	workers workers
}

func (s *Server) maxStreams() uint32 {
	if s.MaxStreams == 0 {
		return DefaultMaxStreams
	}
	return s.MaxStreams
}

// ServeConn serves one connection that negotiated h2 until it ends, then
// closes it. raw is the TCP connection under nc (a TLS connection), used
// to close lb's sending side gracefully; it may be nil when nc is raw.
// After Shutdown, a new connection is told to go away at once: its client
// sends its requests again on a new connection.
func (s *Server) ServeConn(nc net.Conn, raw *net.TCPConn) {
	s.ServeConnAs(nc, raw, netip.AddrPort{}, nil)
}

// ServeConnAs is ServeConn for a connection whose client is remote (from a
// PROXY protocol header; the zero value: the socket's peer), with info,
// which its streams' Info returns.
func (s *Server) ServeConnAs(nc net.Conn, raw *net.TCPConn, remote netip.AddrPort, info any) {
	c := newConn(s, nc, raw)
	if remote.IsValid() {
		c.remote = remote
	}
	c.info = info
	s.mu.Lock()
	if s.shut {
		c.goingAway = true
	} else {
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	c.serve()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown tells every client to go away (GOAWAY): the streams it opened
// finish, then its connection closes; new streams are refused, and so are
// new connections.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.shut = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	s.workers.stop()
}

func newConn(s *Server, nc net.Conn, raw *net.TCPConn) *conn {
	c := &conn{s: s, nc: nc, raw: raw}
	if raw != nil {
		if a, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
			c.remote = a.AddrPort()
		}
	} else if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = a.AddrPort()
	}
	c.br = bufio.NewReaderSize(nc, bufSize)
	c.bw = bufio.NewWriterSize(socketWriter{c}, bufSize)
	c.init()
	return c
}

// RemoteAddr returns the address of the stream's client.
func (st *Stream) RemoteAddr() netip.AddrPort { return st.c.remote }

// Info returns what ServeConnAs was given with the stream's connection.
func (st *Stream) Info() any { return st.c.info }

// IsTLS reports whether the stream's connection is TLS (else cleartext
// HTTP/2, h2c).
func (st *Stream) IsTLS() bool {
	_, ok := st.c.nc.(*tls.Conn)
	return ok
}

// TLS returns the TLS state of the stream's connection; false when the
// connection is not TLS.
func (st *Stream) TLS() (tls.ConnectionState, bool) {
	if tc, ok := st.c.nc.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}
