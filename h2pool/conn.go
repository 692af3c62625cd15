package h2pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"lb/deadline"
	"lb/h1"
	"lb/headerblock"
	"lb/turn"
)

// A Conn is one HTTP/2 connection to a server, lb's own client side of
// the protocol on golang.org/x/net/http2's framer and HPACK: streams as
// state on the connection, one reader goroutine, frames written under one
// lock and flushed by the last writer waiting, so that the requests of a
// burst go out in as few writes as they can. net/http's client, which lb
// used first, cost 2.8x HAProxy's CPU per request (a goroutine per
// request, its stack growth, its maps and contexts); this one costs about
// what lb's HTTP/1.1 path does.
type Conn struct {
	nc     net.Conn
	scheme string // "https" over TLS, else "http": the requests' :scheme
	br     *bufio.Reader
	fr     *http2.Framer

	// hr reads the header blocks, in readLoop.
	hr *headerblock.Reader

	// The write side: frames go to bw under wmu, and flushLoop flushes
	// them (dirty says there are some to flush).
	wmu   sync.Mutex
	bw    *bufio.Writer
	hw    headerblock.Writer // the header blocks
	lower []byte             // a field name, lower-cased
	werr  error
	dirty bool
	// writes counts the writes that left frames in bw, for flushLoop's
	// turn.Settle.
	writes atomic.Uint32
	// opened is the last stream whose head was written to bw (wmu),
	// flushed the last whose head went to the socket, maybe in part
	// (mu): when the connection fails, the streams after it were never
	// sent.
	opened, flushed uint32
	flushReq        chan struct{}
	wdl             deadline.Lazy // the write deadline, Options.WriteTimeout (socketWriter, under wmu)
	stop            chan struct{} // closed when the connection fails

	mu      sync.Mutex
	cond    *sync.Cond // on mu: the send windows grew, or a stream ended
	streams map[uint32]*Stream
	nextID  uint32
	// active counts the streams open and the ones reserved (Reserve),
	// against maxStreams, the server's limit.
	active, reserved int
	maxStreams       uint32
	peerWindow       int32 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	sendWindow       int64 // what lb may send on the connection
	maxFrame         uint32
	recvCredit       int64 // bytes taken from the connection's window, not yet given back
	goingAway        bool
	err              error     // the connection failed or closed
	idleAt           time.Time // when active fell to 0
}

// Flow control and frames, lb's side.
const (
	// streamWindow is what lb lets a server send on a stream ahead of
	// the client reading it, connWindow on the connection.
	streamWindow = 256 << 10
	connWindow   = 4 << 20
	// initialWindow is the protocol's initial window (RFC 9113 6.9.2).
	initialWindow = 65535
	// maxInterims bounds the interim responses (1xx) waiting to be read.
	maxInterims = 16
	// defaultMaxStreams is the server's limit until its SETTINGS say.
	defaultMaxStreams = 100
	maxStreamID       = 1<<31 - 1
)

// Why a stream failed. ErrRefused and ErrGoAway say that the server did
// not process the request: it may go again on another connection.
var (
	ErrRefused = errors.New("the server refused the stream (REFUSED_STREAM)")
	ErrGoAway  = errors.New("the server's GOAWAY came before the stream, which it did not process")
	// ErrUnsent is a stream whose connection failed before its head was
	// written to the socket.
	ErrUnsent = errors.New("the connection failed before the request was sent")
	errClosed = errors.New("h2pool: the pool is closed")
	errNoSlot = errors.New("h2pool: the stream was not reserved")
	// errSendStopped is a request body write after the server, its
	// response whole, reset the stream.
	errSendStopped = errors.New("the server took the whole response as an answer and wants no more of the request body")
)

// StreamError is a stream the server reset, with its code.
type StreamError struct{ Code http2.ErrCode }

func (e *StreamError) Error() string { return "the server reset the stream: " + e.Code.String() }

// ConnError is a connection that failed under a stream.
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return "the HTTP/2 connection failed: " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// dial opens a connection: TCP (o.Dial), TLS with h2 by ALPN when o.TLS
// is set, the prefaces, and the server's first SETTINGS, all within ctx.
func dial(ctx context.Context, o *Options) (*Conn, error) {
	var nc net.Conn
	var err error
	if o.Dial != nil {
		nc, err = o.Dial(ctx)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", o.Addr)
	}
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if o.TLS != nil {
		tc := o.TLS.Clone()
		tc.NextProtos = []string{"h2"}
		t := tls.Client(nc, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		if p := t.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = nc.Close()
			return nil, fmt.Errorf("the server chose %q by ALPN, not h2: it does not speak HTTP/2 over TLS", p)
		}
		nc = t
	}
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	c := &Conn{nc: nc, scheme: scheme, flushReq: make(chan struct{}, 1), stop: make(chan struct{}), wdl: deadline.Lazy{Conn: nc, D: o.WriteTimeout}, streams: map[uint32]*Stream{}, nextID: 1, maxStreams: defaultMaxStreams,
		peerWindow: initialWindow, sendWindow: initialWindow, maxFrame: 16384}
	c.cond = sync.NewCond(&c.mu)
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.bw = bufio.NewWriterSize(socketWriter{c}, 16<<10)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames() // onData copies a DATA frame's bytes
	c.hr = headerblock.NewReader(maxHeaderList)
	if err := c.start(); err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go c.readLoop()
	go c.flushLoop()
	return c, nil
}

// start sends lb's preface and SETTINGS and reads the server's SETTINGS,
// which must come first (RFC 9113 3.4): its limits are known before the
// first request.
func (c *Conn) start() error {
	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		return err
	}
	if err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
	); err != nil {
		return err
	}
	if err := c.fr.WriteWindowUpdate(0, connWindow-initialWindow); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		return fmt.Errorf("reading the server's preface: %w", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return fmt.Errorf("the server's preface is %v, not SETTINGS: it does not speak HTTP/2", f.Header().Type)
	}
	if err := c.applySettings(sf); err != nil {
		return err
	}
	if err := c.fr.WriteSettingsAck(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// applySettings takes the server's settings in.
func (c *Conn) applySettings(f *http2.SettingsFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerWindow)
			c.peerWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
			}
			c.cond.Broadcast()
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
		}
		return nil
	})
}

// reserve takes a stream slot, if the connection has one.
func (c *Conn) reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usableLocked() || uint32(c.active) >= c.maxStreams || c.nextID+uint32(2*c.reserved) > maxStreamID {
		return false
	}
	c.active++
	c.reserved++
	return true
}

// Release gives back a slot reserved by Pool.Get that no request used.
func (c *Conn) Release() {
	c.mu.Lock()
	if c.reserved > 0 {
		c.reserved--
		c.activeDownLocked()
	}
	c.mu.Unlock()
}

// usableLocked says new streams may open; c.mu is held.
func (c *Conn) usableLocked() bool { return c.err == nil && !c.goingAway }

// activeDownLocked counts a stream slot free; c.mu is held.
func (c *Conn) activeDownLocked() {
	c.active--
	if c.active == 0 {
		c.idleAt = time.Now()
		if c.goingAway && c.err == nil {
			c.failLocked(ErrGoAway) // nothing left for it to carry
		}
	}
}

// broken reports whether the connection can carry no more requests.
func (c *Conn) broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.usableLocked()
}

// idleFor reports for how long the connection has carried nothing (0 when
// it carries requests).
func (c *Conn) idleFor(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active > 0 {
		return 0
	}
	return now.Sub(c.idleAt)
}

// Close ends the connection: GOAWAY, then the socket; its streams fail.
func (c *Conn) Close() {
	c.goAway(http2.ErrCodeNo)
	c.mu.Lock()
	c.failLocked(errClosed)
	c.mu.Unlock()
}

// failLocked ends the connection with err: every stream fails, the
// socket closes (which ends readLoop); c.mu is held.
func (c *Conn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	for id, st := range c.streams {
		if id > c.flushed {
			st.failLocked(ErrUnsent)
		} else {
			st.failLocked(&ConnError{err})
		}
	}
	c.cond.Broadcast()
	close(c.stop)
	_ = c.nc.Close()
}

// goAway writes GOAWAY with code, and flushes it at once: the connection
// closes next.
func (c *Conn) goAway(code http2.ErrCode) {
	_ = c.write(func() error {
		if err := c.fr.WriteGoAway(0, code, nil); err != nil {
			return err
		}
		c.dirty = false
		return c.bw.Flush()
	})
}

// write runs fn, which writes frames, under the write lock, and has
// flushLoop flush them.
func (c *Conn) write(fn func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	err := fn()
	if err == nil && c.bw.Buffered() > 0 {
		c.writes.Add(1)
		if !c.dirty {
			c.dirty = true
			notify(c.flushReq)
		}
	}
	if err != nil {
		c.failWriteLocked(err)
	}
	return err
}

// failWriteLocked fails the connection after a write failed; wmu is held.
func (c *Conn) failWriteLocked(err error) {
	c.werr = err
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

// socketWriter is what bw writes to: the connection, each write within
// the write timeout (bw writes a large frame straight through, not only
// when flushed).
type socketWriter struct{ c *Conn }

func (w socketWriter) Write(p []byte) (int, error) {
	c := w.c
	c.wdl.SetWrite()
	n, err := c.nc.Write(p)
	if n > 0 {
		// The heads written to bw so far have gone (a head cut short
		// cannot be processed: it counts as gone, never as unsent).
		c.mu.Lock()
		c.flushed = c.opened
		c.mu.Unlock()
	}
	return n, err
}

// maxFlushTurns bounds the turns flushLoop waits for writes to stop.
const maxFlushTurns = 4

// flushLoop flushes what writers left in bw: after letting the goroutines
// that are ready run first (turn.Settle), so that the requests of many
// streams go out in one write, as lb's HTTP/2 server does with its
// responses (h2's flushLoop). A request costs a goroutine switch more
// alone, and a syscall less in company.
func (c *Conn) flushLoop() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.flushReq:
		}
		turn.Settle(&c.writes, maxFlushTurns)
		c.wmu.Lock()
		if c.dirty && c.werr == nil {
			c.dirty = false
			if err := c.bw.Flush(); err != nil {
				c.failWriteLocked(err)
			}
		}
		c.wmu.Unlock()
	}
}

// readLoop reads the server's frames until the connection ends.
func (c *Conn) readLoop() {
	for {
		readErr, err := c.readFrame()
		if readErr != nil {
			var se http2.StreamError
			if errors.As(readErr, &se) {
				// A frame the framer refused on a stream (a
				// WINDOW_UPDATE of 0): that stream fails, the
				// connection goes on.
				c.resetStream(se.StreamID, http2.ErrCodeProtocol, &StreamError{Code: se.Code})
				continue
			}
			c.mu.Lock()
			c.failLocked(readErr)
			c.mu.Unlock()
			return
		}
		if err != nil {
			var code http2.ErrCode = http2.ErrCodeProtocol
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			c.goAway(code)
			c.mu.Lock()
			c.failLocked(err)
			c.mu.Unlock()
			return
		}
	}
}

// readFrame reads and handles one frame: a HEADERS frame with the header
// block it starts, read by c.hr (headerblock.Reader.ReadHeaders) rather
// than the framer, which would make a frame of it (an allocation per
// response); the others through the framer. readErr is a frame that could
// not be read (the connection is lost, or the framer refused it); err is
// the server's fault, which ends the connection with GOAWAY.
func (c *Conn) readFrame() (readErr, err error) {
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return err, nil
	}
	if fh.Type != http2.FrameHeaders {
		f, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			return err, nil
		}
		return nil, c.process(f)
	}
	// onHeaders judges the fields, not the reader.
	h, err := c.hr.ReadHeaders(c.fr, c.br, fh)
	if err != nil {
		if be := blockError(err); be != nil {
			return nil, be
		}
		return err, nil
	}
	c.onHeaders(h)
	return nil, nil
}

// blockError returns a header block's fault as the connection error it
// is: a *headerblock.Error, or the framer's on a CONTINUATION frame; nil
// for another error (the connection failed). The targets of errors.As
// escape: declared here, they cost an allocation only when there is an
// error, not one per frame.
func blockError(err error) error {
	var be *headerblock.Error
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &be):
		return http2.ConnectionError(be.Code)
	case errors.As(err, &ce):
		return ce
	}
	return nil
}

// process handles one frame read by the framer; an error ends the
// connection.
func (c *Conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.ContinuationFrame:
		// The framer lets one through only after a HEADERS frame
		// without END_HEADERS, and the reader reads those.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		code := f.ErrCode
		var err error = &StreamError{Code: code}
		if code == http2.ErrCodeRefusedStream {
			err = ErrRefused
		}
		c.mu.Lock()
		switch st := c.streams[f.StreamID]; {
		case st == nil:
		case st.recvEnd && st.err == nil:
			// The response is whole: the reset only stops the request
			// body (RFC 9113 8.1), whose upload fails; the response
			// is read to its end.
			st.sentEnd, st.sendStopped = true, true
			c.forgetLocked(st)
		default:
			st.failLocked(err)
			c.forgetLocked(st)
		}
		u := c.creditLocked(nil)
		c.mu.Unlock()
		c.send(u)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := c.applySettings(f); err != nil {
			return err
		}
		return c.write(func() error { return c.fr.WriteSettingsAck() })
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			return c.write(func() error { return c.fr.WritePing(true, data) })
		}
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goingAway = true
		for id, st := range c.streams {
			if id > f.LastStreamID {
				st.failLocked(ErrGoAway)
				c.forgetLocked(st)
			}
		}
		if c.active == 0 {
			c.failLocked(ErrGoAway)
		}
		c.mu.Unlock()
	case *http2.WindowUpdateFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID == 0 {
			c.sendWindow += int64(f.Increment)
			if c.sendWindow > maxStreamID {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		} else if st := c.streams[f.StreamID]; st != nil {
			st.sendWindow += int64(f.Increment)
		}
		c.cond.Broadcast()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is off
	}
	return nil
}

// maxHeaderList bounds the fields of a header block lb keeps (hpack's
// count: names, values and 32 bytes each): a response head over it fails
// its stream.
const maxHeaderList = 1 << 20

// splitFields checks the fields of a header block from the server and
// returns its :status ("" for none) and its regular fields: pseudo-headers
// first, :status only, once; names lower-case tokens; values free of
// control characters but HTAB (what HTTP/1.1 could not carry as it is).
func splitFields(fields []hpack.HeaderField, truncated bool) (status string, regular []hpack.HeaderField, err error) {
	if truncated {
		return "", nil, errors.New("the server's header block is over 1 MiB")
	}
	i := 0
	for ; i < len(fields) && strings.HasPrefix(fields[i].Name, ":"); i++ {
		if fields[i].Name != ":status" || status != "" {
			return "", nil, errors.New("the server sent pseudo-header " + fields[i].Name + " (again, or not one of a response)")
		}
		status = fields[i].Value
	}
	regular = fields[i:]
	for _, f := range regular {
		if strings.HasPrefix(f.Name, ":") {
			return "", nil, errors.New("the server sent pseudo-header " + f.Name + " after a regular field")
		}
		if !h1.ValidToken(f.Name) || strings.ToLower(f.Name) != f.Name {
			return "", nil, fmt.Errorf("the server sent a field named %q", f.Name)
		}
		if !h1.ValidValue(f.Value) {
			return "", nil, errors.New("the server sent a control character in the value of " + f.Name)
		}
	}
	return status, regular, nil
}

// onHeaders takes a response head, an interim one or a trailer section,
// its fields in c.hr.
func (c *Conn) onHeaders(f headerblock.Headers) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil || st.err != nil {
		return // a stream lb reset
	}
	status, regular, err := splitFields(c.hr.Fields, c.hr.Truncated)
	if err != nil {
		c.resetLocked(st, http2.ErrCodeProtocol, err)
		return
	}
	if st.headDone {
		if !f.EndStream {
			c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server's trailer section does not end the stream"))
			return
		}
		if status != "" {
			c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server's trailer section has a :status"))
			return
		}
		copyFields(&st.trailer, regular)
		st.hasTrailer = true
	} else {
		code, err := strconv.Atoi(status)
		switch {
		case err != nil || code < 100 || code > 999:
			c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server's response head has no valid :status"))
			return
		case code == 101:
			c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server answered 101 over HTTP/2"))
			return
		case code < 200:
			if f.EndStream {
				c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server's interim response ends the stream"))
				return
			}
			if len(st.interims) >= maxInterims {
				c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server sent too many interim responses"))
				return
			}
			var in interim
			in.status = code
			copyFields(&in.head, regular)
			st.interims = append(st.interims, in)
			notify(st.wake)
			return
		}
		st.status = code
		// The fields' strings stay as they are until ReadHead copies
		// them: one slice, rather than a head's storage, per stream.
		st.head = append(st.head[:0], regular...)
		for _, f := range regular {
			if f.Name == "content-length" {
				if n, err := strconv.ParseInt(f.Value, 10, 64); err == nil && n >= 0 {
					st.declared = n
				}
				break
			}
		}
		st.headDone = true
		st.headEnded = f.EndStream
	}
	if f.EndStream {
		st.endRecvLocked()
	}
	notify(st.wake)
}

// copyFields copies a head's fields into h, leaving out the
// connection-specific ones, which a server must not send in HTTP/2 and
// lb would not pass on.
func copyFields(h *h1.Head, fields []hpack.HeaderField) {
	h.Reset()
	for _, f := range fields {
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		}
		h.AddString(f.Name, f.Value)
	}
}

// onData takes a DATA frame's bytes into its stream's buffer.
func (c *Conn) onData(f *http2.DataFrame) error {
	var u windowUpdate
	defer func() { c.send(u) }()
	data := f.Data()
	n := int64(f.Header().Length) // padding counts against the windows too
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil || st.err != nil || !st.headDone {
		// A stream lb reset (or a protocol error): its bytes are given
		// back to the connection's window at once.
		c.recvCredit += n
		if st != nil && !st.headDone && st.err == nil {
			c.resetLocked(st, http2.ErrCodeProtocol, errors.New("the server sent DATA before its response head"))
		}
		u = c.creditLocked(nil)
		return nil
	}
	if st.recvWindow -= n; st.recvWindow < 0 {
		c.resetLocked(st, http2.ErrCodeFlowControl, errors.New("the server sent more than the stream's window"))
		return nil
	}
	st.buf = append(st.buf, data...)
	st.recvd += int64(len(data))
	c.recvCredit += n - int64(len(data)) // the padding, at once
	if f.StreamEnded() {
		st.endRecvLocked()
	}
	notify(st.wake)
	return nil
}

// endRecvLocked notes the server's END_STREAM, checking the body against
// its content-length; c.mu is held.
func (st *Stream) endRecvLocked() {
	st.recvEnd = true
	if st.declared >= 0 && st.recvd != st.declared && !st.headEnded && !st.isHead {
		st.failLocked(fmt.Errorf("the server's body is %d bytes, its content-length says %d", st.recvd, st.declared))
	}
	st.c.forgetLocked(st)
}

// windowUpdate is what lb gives back to the server's send windows: sInc
// on stream id, cInc on the connection.
type windowUpdate struct{ id, sInc, cInc uint32 }

// creditLocked returns what to give back to the server, once half a
// window's worth was read, of what lb took from the windows of st (nil:
// none) and of the connection; c.mu is held. The caller sends it
// (send) once it has let c.mu go: writes take wmu first.
func (c *Conn) creditLocked(st *Stream) windowUpdate {
	var u windowUpdate
	if st != nil && !st.recvEnd && st.err == nil && st.credit >= streamWindow/2 {
		u.id, u.sInc = st.id, uint32(st.credit)
		st.recvWindow += st.credit
		st.credit = 0
	}
	if c.recvCredit >= connWindow/2 {
		u.cInc = uint32(c.recvCredit)
		c.recvCredit = 0
	}
	return u
}

// send writes the WINDOW_UPDATE frames of u, if any.
func (c *Conn) send(u windowUpdate) {
	if u.sInc == 0 && u.cInc == 0 {
		return
	}
	id, sInc, cInc := u.id, u.sInc, u.cInc
	_ = c.write(func() error {
		if sInc > 0 {
			if err := c.fr.WriteWindowUpdate(id, sInc); err != nil {
				return err
			}
		}
		if cInc > 0 {
			return c.fr.WriteWindowUpdate(0, cInc)
		}
		return nil
	})
}

// resetLocked fails st with err and tells the server (RST_STREAM code);
// c.mu is held.
func (c *Conn) resetLocked(st *Stream, code http2.ErrCode, err error) {
	st.failLocked(err)
	if c.streams[st.id] == st {
		c.forgetLocked(st)
		id := st.id
		go func() { _ = c.write(func() error { return c.fr.WriteRSTStream(id, code) }) }()
	}
}

// resetStream is resetLocked by the stream's id.
func (c *Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[id]; st != nil {
		c.resetLocked(st, code, err)
	}
}

// forgetLocked drops st from the streams the connection carries once both
// sides ended it or it failed; c.mu is held.
func (c *Conn) forgetLocked(st *Stream) {
	if c.streams[st.id] != st || (st.err == nil && !(st.recvEnd && st.sentEnd)) {
		return
	}
	delete(c.streams, st.id)
	if st.err != nil {
		st.dropLocked()
	}
	c.activeDownLocked()
	c.cond.Broadcast()
}

// dropLocked gives the body bytes no one will read back to the
// connection's window; c.mu is held.
func (st *Stream) dropLocked() {
	st.c.recvCredit += int64(len(st.buf) - st.off)
	st.buf, st.off = nil, 0
}

// notify wakes the goroutine waiting on ch, if any, or the next to wait.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// interim is a 1xx response.
type interim struct {
	status int
	head   h1.Head
}

// A Stream is one request on a connection: Open sends its head, Write and
// CloseWrite its body, ReadHead, Read and Trailer take the response.
// Cancel ends it at any time. Write and CloseWrite may run in another
// goroutine than the reads.
type Stream struct {
	c    *Conn
	id   uint32
	wake chan struct{}

	// Guarded by c.mu.
	err        error
	status     int
	head       []hpack.HeaderField // the response head's regular fields
	headDone   bool
	headEnded  bool // the head ended the stream: no body, no trailer
	isHead     bool // a HEAD request: the content-length is not the body's
	interims   []interim
	trailer    h1.Head
	hasTrailer bool
	buf        []byte
	off        int
	recvd      int64
	declared   int64 // the response's content-length, -1: none
	recvEnd    bool
	sentEnd    bool
	// sendStopped says the server reset the stream after its whole
	// response: the request body goes no further.
	sendStopped bool
	recvWindow  int64
	credit      int64 // bytes read, not yet given back
	sendWindow  int64
}

// failLocked ends the stream with err, if it has not ended; c.mu is held.
func (st *Stream) failLocked(err error) {
	if st.err == nil {
		st.err = err
	}
	notify(st.wake)
}

// Open opens a stream for req, whose head goes out as it is but for the
// connection-specific fields: Host becomes :authority, the target :path.
// end says the request has no body. It takes the slot Pool.Get reserved.
func (c *Conn) Open(req *h1.Request, end bool) (*Stream, error) {
	st := &Stream{c: c, wake: make(chan struct{}, 1), declared: -1, recvWindow: streamWindow, sentEnd: end,
		isHead: string(req.Method) == "HEAD"}
	ran := false
	err := c.write(func() error {
		ran = true
		c.mu.Lock()
		if c.reserved == 0 {
			c.mu.Unlock()
			return errNoSlot
		}
		c.reserved--
		if !c.usableLocked() {
			c.activeDownLocked()
			err := ErrUnsent
			if c.goingAway {
				err = ErrGoAway
			}
			c.mu.Unlock()
			return &unsentError{err}
		}
		st.id = c.nextID
		c.nextID += 2
		st.sendWindow = int64(c.peerWindow)
		c.streams[st.id] = st
		c.mu.Unlock()
		c.opened = st.id
		return c.writeHead(st.id, req, end)
	})
	switch {
	case !ran:
		// The connection had failed already: the slot goes back, the
		// request may go elsewhere.
		c.Release()
		return nil, ErrUnsent
	case err == nil:
		return st, nil
	}
	return nil, openError(err)
}

// openError is what Open returns for err. The target of errors.As
// escapes: declared here, it costs an allocation only on an error.
func openError(err error) error {
	var ue *unsentError
	switch {
	case errors.As(err, &ue):
		return ue.err
	case errors.Is(err, errNoSlot):
		return err
	}
	return &ConnError{err}
}

// unsentError is a stream Open could not open: it left the write side
// alone.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }

// writeHead encodes req's head and writes it as HEADERS and CONTINUATION
// frames; wmu is held.
func (c *Conn) writeHead(id uint32, req *h1.Request, end bool) error {
	b := c.hw.Start()
	b = headerblock.AppendField(b, ":method", req.Method)
	b = headerblock.AppendField(b, ":scheme", c.scheme)
	if host := req.Host(); len(host) > 0 {
		b = headerblock.AppendField(b, ":authority", host)
	}
	b = headerblock.AppendField(b, ":path", req.Target)
	for _, f := range req.Fields {
		name := c.lowerName(f.Name)
		switch string(name) {
		case "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		case "te":
			if string(f.Value) != "trailers" {
				continue
			}
		}
		b = headerblock.AppendField(b, name, f.Value)
	}
	return c.writeBlock(id, b, end)
}

// lowerName returns name lower-cased, in c.lower.
func (c *Conn) lowerName(name []byte) []byte {
	b := c.lower[:0]
	for _, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	c.lower = b
	return b
}

// writeBlock writes the header block b (c.hw's) on stream id; wmu is
// held.
func (c *Conn) writeBlock(id uint32, b []byte, end bool) error {
	c.mu.Lock()
	max := int(c.maxFrame)
	c.mu.Unlock()
	return c.hw.Write(c.fr, id, b, end, max)
}

// Write sends p as DATA, as the stream's and the connection's send
// windows allow.
func (st *Stream) Write(p []byte) (int, error) {
	c := st.c
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		for st.err == nil && c.err == nil && !st.sendStopped && (st.sendWindow <= 0 || c.sendWindow <= 0) {
			c.cond.Wait()
		}
		if err := st.errLocked(); err != nil || st.sendStopped {
			c.mu.Unlock()
			if err == nil {
				err = errSendStopped
			}
			return written, err
		}
		n := int64(len(p))
		n = min(n, st.sendWindow, c.sendWindow, int64(c.maxFrame))
		st.sendWindow -= n
		c.sendWindow -= n
		c.mu.Unlock()
		chunk := p[:n]
		if err := c.write(func() error { return c.fr.WriteData(st.id, false, chunk) }); err != nil {
			return written, &ConnError{err}
		}
		written += int(n)
		p = p[n:]
	}
	return written, nil
}

// errLocked returns the stream's error, or the connection's; c.mu is held.
func (st *Stream) errLocked() error {
	switch {
	case st.err != nil:
		return st.err
	case st.c.err != nil:
		return &ConnError{st.c.err}
	}
	return nil
}

// CloseWrite ends the request's body: with the fields of trailer as its
// trailer section when it has some, else with an empty DATA frame.
func (st *Stream) CloseWrite(trailer *h1.Head) error {
	c := st.c
	c.mu.Lock()
	if err := st.errLocked(); err != nil || st.sentEnd {
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	err := c.write(func() error {
		if trailer != nil && len(trailer.Fields) > 0 {
			b := c.hw.Start()
			for _, f := range trailer.Fields {
				b = headerblock.AppendField(b, c.lowerName(f.Name), f.Value)
			}
			return c.writeBlock(st.id, b, true)
		}
		return c.fr.WriteData(st.id, true, nil)
	})
	if err != nil {
		return &ConnError{err}
	}
	c.mu.Lock()
	st.sentEnd = true
	c.forgetLocked(st)
	c.mu.Unlock()
	return nil
}

// ReadHead waits for the final response head and puts its status and
// fields in resp; interim responses (1xx) go to info first, as they come.
// ended says the head ended the stream (no body, no trailer).
func (st *Stream) ReadHead(resp *h1.Response, info func(status int, h *h1.Head) error) (ended bool, err error) {
	c := st.c
	for {
		c.mu.Lock()
		switch {
		case len(st.interims) > 0:
			in := st.interims[0]
			st.interims = st.interims[1:]
			c.mu.Unlock()
			if err := info(in.status, &in.head); err != nil {
				return false, err
			}
			continue
		case st.headDone:
			c.mu.Unlock()
			// The head does not change once done.
			resp.Minor, resp.Status, resp.KeepAlive = 1, st.status, true
			copyFields(&resp.Head, st.head)
			return st.headEnded, nil
		case st.err != nil:
			err := st.err
			c.mu.Unlock()
			return false, err
		}
		c.mu.Unlock()
		<-st.wake
	}
}

// Declared returns the response's content-length, -1 when it has none.
func (st *Stream) Declared() int64 { return st.declared }

// Read reads the response body.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := st.c
	for {
		c.mu.Lock()
		if st.off < len(st.buf) {
			n := copy(p, st.buf[st.off:])
			st.off += n
			if st.off == len(st.buf) {
				st.buf, st.off = st.buf[:0], 0
			}
			st.credit += int64(n)
			c.recvCredit += int64(n)
			u := c.creditLocked(st)
			c.mu.Unlock()
			c.send(u)
			return n, nil
		}
		err := st.err
		if err == nil && st.recvEnd {
			err = io.EOF
		}
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
		<-st.wake
	}
}

// Trailer returns the response's trailer section, once Read returned
// io.EOF; nil when there was none.
func (st *Stream) Trailer() *h1.Head {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.hasTrailer {
		return nil
	}
	return &st.trailer
}

// Cancel ends the stream with err unless both sides ended it: reads and
// writes under way fail, and the server gets RST_STREAM CANCEL.
func (st *Stream) Cancel(err error) {
	c := st.c
	c.mu.Lock()
	open := c.streams[st.id] == st
	st.failLocked(err)
	if open {
		c.forgetLocked(st)
	} else {
		st.dropLocked()
	}
	u := c.creditLocked(nil)
	c.mu.Unlock()
	if open {
		id := st.id
		_ = c.write(func() error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) })
	}
	c.send(u)
}
