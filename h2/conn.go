package h2

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"lb/deadline"
	"lb/h1"
	"lb/headerblock"
	"lb/turn"
)

// conn is one HTTP/2 connection. Its reader goroutine (serve) reads and
// handles every frame; stream goroutines read request bodies and write
// responses. mu guards the streams and the flow-control state; wmu orders
// the writes of frames. A goroutine that holds mu never waits for wmu
// (writes to a slow client must not stop the streams' bookkeeping); one
// that holds wmu may take mu.
type conn struct {
	s      *Server
	nc     net.Conn
	raw    *net.TCPConn
	remote netip.AddrPort
	info   any // ServeConnAs's
	br     *bufio.Reader
	fr     *http2.Framer
	wg     sync.WaitGroup // the stream goroutines

	// hr reads the header blocks, in the reader goroutine.
	hr *headerblock.Reader
	// readAt is when the bytes in br were read, taken by the first stream
	// they start (zero until then): the streams of one read share one
	// clock reading. The reader goroutine's.
	readAt time.Time

	// Write side, guarded by wmu.
	wmu       sync.Mutex
	dirty     bool          // bw holds frames that flushLoop will flush
	writes    atomic.Uint32 // counts unlockWrite calls that left frames in bw
	flushReq  chan struct{}
	flushStop chan struct{} // closed by teardown: flushLoop ends
	flushDone chan struct{} // closed when flushLoop has ended
	bw        *bufio.Writer
	hw        headerblock.Writer // the header blocks
	werr      error              // the write side failed or was closed
	wdl       deadline.Lazy      // the write deadline, Server.Timeout (socketWriter)
	wMaxFrame int64              // the client's SETTINGS_MAX_FRAME_SIZE, for the writers
	scratch   []byte             // lower-case names

	mu          sync.Mutex
	streamsDone sync.Cond // on mu: a stream left streams, or lb is going away
	streams     map[uint32]*Stream
	lastID      uint32 // the highest stream id the client used
	goingAway   bool   // lb is going away: no new stream
	sentAway    bool   // lb sent GOAWAY
	ready       bool   // the prefaces were exchanged
	peerAway    bool   // the client sent GOAWAY
	closed      bool   // the connection is down
	sendWin     int64  // what lb may still send, all streams together
	initWin     int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    int64  // the client's SETTINGS_MAX_FRAME_SIZE
	recvWin     int64  // what the client may still send, all streams together
	recvCredit  int64  // bytes consumed that the client was not told of yet
	resets      [16]uint32
	nextReset   int // where noteReset writes next in resets
}

// Errors a stream's body or response sees.
var (
	// ErrStreamReset ends a stream that the client reset.
	ErrStreamReset = errors.New("the client reset the stream")
	// ErrConnLost ends a stream whose connection failed or closed.
	ErrConnLost = errors.New("the client connection is gone")
	// errAborted is a body read made to fail by AbortRead.
	errAborted = errors.New("request body aborted")
	// errStreamDone is a write after the stream ended.
	errStreamDone = errors.New("the stream has ended")
)

// connError is a connection error of RFC 9113 5.4.1: GOAWAY, then close.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string {
	return "HTTP/2 connection error " + e.code.String() + ": " + e.reason
}

// streamError is a stream error of RFC 9113 5.4.2: RST_STREAM.
type streamError struct {
	id    uint32
	code  http2.ErrCode
	cause error
}

func (e streamError) Error() string {
	return "HTTP/2 stream error " + e.code.String() + ": " + e.cause.Error()
}

func (c *conn) init() {
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetMaxReadFrameSize(readFrameSize)
	c.fr.SetReuseFrames()
	lim := withDefaults(c.s.Limits)
	// The decoder stops emitting fields past this (truncated, then lb
	// answers 431); ReadRequest applies the exact limits.
	c.hr = headerblock.NewReader(uint32(2*lim.MaxHeaderBytes + 32*lim.MaxHeaders))
	c.streams = make(map[uint32]*Stream)
	c.streamsDone.L = &c.mu
	c.wdl = deadline.Lazy{Conn: c.nc, D: c.s.Timeout}
	c.sendWin = 65535
	c.initWin = 65535
	c.maxFrame = readFrameSize
	c.wMaxFrame = readFrameSize
	c.recvWin = connWindow
	c.flushReq = make(chan struct{}, 1)
	c.flushStop = make(chan struct{})
	c.flushDone = make(chan struct{})
}

// preface is what an HTTP/2 client sends first.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// serve is the connection's reader: it reads and handles frames until
// the connection ends, then waits for the streams' goroutines.
func (c *conn) serve() {
	go c.flushLoop()
	defer c.teardown()
	if d := c.s.HandshakeTimeout; d > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(d))
	}
	if c.writeServerPreface() != nil {
		return
	}
	if !c.readClientPreface() {
		return
	}
	for {
		if c.br.Buffered() == 0 {
			c.readAt = time.Time{} // the next frame comes with a new read
		}
		err := c.readFrame()
		if se, ok := err.(http2.StreamError); ok {
			err = c.frameStreamError(se)
		}
		if err == nil {
			continue
		}
		var se streamError
		if errors.As(err, &se) {
			c.resetStream(se)
			continue
		}
		if code, ok := connErrorCode(err); ok {
			c.fail(code)
		} else if isTimeout(err) {
			c.timedOut()
		}
		return
	}
}

// isMalformed reports whether err is a *MalformedError. The target of
// errors.As escapes: declared here, it costs an allocation only when there
// is an error, not one per request.
func isMalformed(err error) bool {
	if err == nil {
		return false
	}
	var me *MalformedError
	return errors.As(err, &me)
}

// connErrorCode returns the error code of a connection error, lb's or the
// framer's; ok is false for other errors (the connection failed).
func connErrorCode(err error) (code http2.ErrCode, ok bool) {
	var ce connError
	var fce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		return ce.code, true
	case errors.Is(err, http2.ErrFrameTooLarge):
		return http2.ErrCodeFrameSize, true
	case errors.As(err, &fce):
		return http2.ErrCode(fce), true
	}
	return 0, false
}

// writeServerPreface sends lb's SETTINGS and opens the connection's
// receive window beyond the protocol's 64 KiB.
func (c *conn) writeServerPreface() error {
	lim := withDefaults(c.s.Limits)
	if !c.lockWrite() {
		return c.unlockWrite(nil)
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.s.maxStreams()},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(lim.MaxHeaderBytes + 32*lim.MaxHeaders)},
	)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connWindow-65535)
	}
	return c.unlockWrite(err)
}

// readClientPreface reads the client's preface and its first frame, which
// must be SETTINGS.
func (c *conn) readClientPreface() bool {
	var b [len(preface)]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return false
	}
	if string(b[:]) != preface {
		c.fail(http2.ErrCodeProtocol)
		return false
	}
	f, err := c.fr.ReadFrame()
	if err == nil {
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			err = c.onSettings(sf)
		} else {
			err = connError{http2.ErrCodeProtocol, "the first frame is not SETTINGS"}
		}
	}
	if err != nil {
		if code, ok := connErrorCode(err); ok {
			c.fail(code)
		}
		return false
	}
	c.mu.Lock()
	c.ready = true
	c.idleDeadline()
	c.mu.Unlock()
	return true
}

// readFrame reads and handles one frame: a HEADERS frame with the header
// block it starts, read by c.hr (headerblock.Reader.ReadHeaders) rather
// than the framer, which would make a frame of it (an allocation per
// request); the others through the framer.
func (c *conn) readFrame() error {
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return err
	}
	if fh.Type != http2.FrameHeaders {
		f, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			return err
		}
		return c.process(f)
	}
	// ReadRequest and ReadTrailer judge the fields, not the reader.
	h, err := c.hr.ReadHeaders(c.fr, c.br, fh)
	if err != nil {
		var be *headerblock.Error
		if errors.As(err, &be) {
			return connError{be.Code, be.Error()}
		}
		return err
	}
	return c.onHeaders(h)
}

// process handles one frame read by the framer.
func (c *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.ContinuationFrame:
		// The framer lets one through only after a HEADERS frame
		// without END_HEADERS, and the reader reads those.
		return connError{http2.ErrCodeProtocol, "CONTINUATION out of a header block"}
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return c.writeControl(func() error { return c.fr.WritePing(true, f.Data) })
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return streamError{f.StreamID, http2.ErrCodeProtocol, errors.New("stream depends on itself")}
		}
		return nil
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.peerAway = true
		idle := len(c.streams) == 0
		c.mu.Unlock()
		if idle {
			return connError{http2.ErrCodeNo, "the client went away"}
		}
		return nil
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	}
	return nil // unknown frame types are ignored
}

// frameStreamError handles a stream error the framer found in a frame: a
// WINDOW_UPDATE of 0 on a stream (HEADERS frames are c.hr's).
func (c *conn) frameStreamError(se http2.StreamError) error {
	cause := se.Cause
	if cause == nil {
		cause = c.fr.ErrorDetail()
	}
	if cause == nil {
		cause = errors.New(se.Code.String())
	}
	return streamError{se.StreamID, se.Code, cause}
}

// onSettings applies the client's settings, in order, and acknowledges
// them. A setting may appear more than once: the last one wins, each
// applied in turn (RFC 9113 6.5.3).
func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	// The settings are applied with the write side held, so that the
	// ACK goes out before any frame they allow (a stream's DATA that a
	// larger window lets through): wmu, then mu, never the other way.
	writable := c.lockWrite()
	c.mu.Lock()
	err := f.ForeachSetting(c.applySetting)
	maxFrame := c.maxFrame
	c.mu.Unlock()
	if err != nil || !writable {
		_ = c.unlockWrite(nil)
		return err
	}
	c.wMaxFrame = maxFrame
	return c.unlockWrite(c.fr.WriteSettingsAck())
}

// applySetting applies one setting; c.mu is held.
func (c *conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return connError{http2.ErrCode(ce), "invalid " + s.String()}
		}
		return connError{http2.ErrCodeProtocol, "invalid " + s.String()}
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		delta := int64(s.Val) - c.initWin
		c.initWin = int64(s.Val)
		for _, st := range c.streams {
			st.sendWin += delta
			if st.sendWin > maxWindow {
				return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window"}
			}
			if delta > 0 {
				notify(st.sendWake)
			}
		}
	case http2.SettingMaxFrameSize:
		c.maxFrame = int64(s.Val)
	}
	return nil
}

// maxWindow is the largest flow-control window (RFC 9113 6.9.1).
const maxWindow = 1<<31 - 1

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWin += inc
		if c.sendWin > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
		}
		for _, st := range c.streams {
			if st.wantSend {
				notify(st.sendWake)
			}
		}
		return nil
	}
	if f.StreamID > c.lastID {
		return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
	}
	st := c.streams[f.StreamID]
	if st == nil || st.reset {
		return nil
	}
	st.sendWin += inc
	if st.sendWin > maxWindow {
		return streamError{f.StreamID, http2.ErrCodeFlowControl, errors.New("stream window over 2^31-1")}
	}
	notify(st.sendWake)
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID > c.lastID {
		return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
	}
	if st := c.streams[f.StreamID]; st != nil && !st.reset {
		st.resetLocked(ErrStreamReset)
	}
	return nil
}

// onHeaders opens a stream, or ends one with its trailer section; the
// fields of f's header block are in c.hr.
func (c *conn) onHeaders(f headerblock.Headers) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "HEADERS on an even stream id"}
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		err := c.onTrailers(st, f)
		c.mu.Unlock()
		return err
	}
	if id <= c.lastID {
		ignore := c.lbReset(id)
		c.mu.Unlock()
		if ignore {
			return nil // trailers sent before the client learnt of lb's reset
		}
		return connError{http2.ErrCodeProtocol, "HEADERS on a closed stream or a stream id that went down"}
	}
	c.lastID = id
	limit := c.s.maxStreams()
	open, finishing := c.openStreamsLocked()
	for open < limit && finishing >= limit && !c.goingAway && !c.peerAway {
		// A limit's worth of handlers are finishing streams closed for
		// the client: lb waits for them rather than refuse a stream the
		// client was free to open (REFUSED_STREAM, which h2load, for one,
		// counts as a failed request).
		c.streamsDone.Wait()
		open, finishing = c.openStreamsLocked()
	}
	refuse := c.goingAway || c.peerAway || open >= limit
	c.mu.Unlock()
	if f.HasPriority && f.StreamDep == id {
		return streamError{id, http2.ErrCodeProtocol, errors.New("stream depends on itself")}
	}
	if refuse {
		return streamError{id, http2.ErrCodeRefusedStream, errors.New("stream refused")}
	}
	st := newStream(c, id)
	var err error
	if c.hr.Truncated {
		err = errTooLarge
		st.req.Reset()
	} else {
		st.declared, err = ReadRequest(&st.req, c.hr.Fields, f.EndStream, c.s.Limits)
	}
	if isMalformed(err) {
		st.err = err
		st.resetLocked(err)
		c.startStream(st)
		return streamError{id, http2.ErrCodeProtocol, err}
	}
	st.err = err
	st.recvEnd = f.EndStream
	c.mu.Lock()
	if len(c.streams) == 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.streams[id] = st
	c.mu.Unlock()
	c.startStream(st)
	return nil
}

// onTrailers ends st with the trailer section in f (c.hr); c.mu is held.
func (c *conn) onTrailers(st *Stream, f headerblock.Headers) error {
	switch {
	case st.reset && st.resetErr != ErrStreamReset && st.resetErr != errStreamDone:
		return nil // lb reset it: what the client sent meanwhile is ignored
	case st.recvEnd && st.sentEnd:
		// Closed both ways, though its handler has not returned yet.
		return connError{http2.ErrCodeStreamClosed, "HEADERS on a closed stream"}
	case st.reset || st.recvEnd:
		return streamError{st.id, http2.ErrCodeStreamClosed, errors.New("HEADERS on a half-closed stream")}
	case !f.EndStream:
		return streamError{st.id, http2.ErrCodeProtocol, malformed("trailer section that does not end the stream")}
	case c.hr.Truncated:
		return streamError{st.id, http2.ErrCodeProtocol, malformed("trailer section over the limits")}
	}
	if err := ReadTrailer(&st.trailer, c.hr.Fields, c.s.Limits); err != nil {
		return streamError{st.id, http2.ErrCodeProtocol, err}
	}
	if st.declared >= 0 && st.recvd != st.declared {
		return streamError{st.id, http2.ErrCodeProtocol, malformed("body shorter than its content-length")}
	}
	st.hasTrailer = true
	st.recvEnd = true
	notify(st.recvWake)
	return nil
}

// onData adds a DATA frame's payload to its stream's body.
func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	if id > c.lastID {
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
	}
	if n > c.recvWin {
		c.mu.Unlock()
		return connError{http2.ErrCodeFlowControl, "DATA over the connection's window"}
	}
	c.recvWin -= n
	st := c.streams[id]
	var err error
	switch {
	case st == nil || st.reset:
		// A closed stream: the bytes still count against the
		// connection's window, given back at once. What comes on a
		// stream lb reset is ignored (RFC 9113 5.4.2).
		c.credit(nil, n)
		if (st == nil && !c.lbReset(id)) || (st != nil && st.resetErr == ErrStreamReset) {
			err = streamError{id, http2.ErrCodeStreamClosed, errors.New("DATA on a closed stream")}
		}
	case st.recvEnd:
		c.credit(nil, n)
		err = streamError{id, http2.ErrCodeStreamClosed, errors.New("DATA on a half-closed stream")}
	case n > st.recvWin:
		c.credit(nil, n)
		err = streamError{id, http2.ErrCodeFlowControl, errors.New("DATA over the stream's window")}
	case st.declared >= 0 && st.recvd+int64(len(data)) > st.declared:
		c.credit(nil, n)
		err = streamError{id, http2.ErrCodeProtocol, malformed("body longer than its content-length")}
	default:
		st.recvWin -= n
		st.recvd += int64(len(data))
		st.push(data)
		// Padding is never read: it is given back at once.
		c.credit(st, n-int64(len(data)))
		if f.StreamEnded() {
			if st.declared >= 0 && st.recvd != st.declared {
				err = streamError{id, http2.ErrCodeProtocol, malformed("body shorter than its content-length")}
			} else {
				st.recvEnd = true
			}
		}
		notify(st.recvWake)
	}
	sInc, cInc := c.takeCredit(st)
	c.mu.Unlock()
	c.sendWindowUpdates(id, sInc, cInc)
	return err
}

// credit records n bytes of st's body (nil: of no stream) as consumed;
// c.mu is held.
func (c *conn) credit(st *Stream, n int64) {
	c.recvCredit += n
	if st != nil {
		st.recvCredit += n
	}
}

// takeCredit returns the window increments worth sending now for st (nil:
// none) and for the connection, and counts them as sent; c.mu is held.
// Increments go out once a quarter of a window was consumed, so that a
// client streaming a body never waits for them.
func (c *conn) takeCredit(st *Stream) (stream, connection uint32) {
	if st != nil && !st.reset && !st.recvEnd && st.recvCredit >= streamWindow/4 {
		stream = uint32(st.recvCredit)
		st.recvWin += st.recvCredit
		st.recvCredit = 0
	}
	if c.recvCredit >= connWindow/4 {
		connection = uint32(c.recvCredit)
		c.recvWin += c.recvCredit
		c.recvCredit = 0
	}
	return stream, connection
}

// sendWindowUpdates sends the increments takeCredit returned.
func (c *conn) sendWindowUpdates(id uint32, stream, connection uint32) {
	if stream == 0 && connection == 0 {
		return
	}
	_ = c.writeControl(func() error {
		if connection > 0 {
			if err := c.fr.WriteWindowUpdate(0, connection); err != nil {
				return err
			}
		}
		if stream > 0 {
			return c.fr.WriteWindowUpdate(id, stream)
		}
		return nil
	})
}

// resetStream sends RST_STREAM for a stream error, and ends the stream
// if it runs.
func (c *conn) resetStream(se streamError) {
	c.mu.Lock()
	if st := c.streams[se.id]; st != nil && !st.reset {
		st.resetLocked(se.cause)
	} else if st == nil {
		c.noteReset(se.id)
	}
	c.mu.Unlock()
	_ = c.writeControl(func() error { return c.fr.WriteRSTStream(se.id, se.code) })
}

// noteReset remembers that lb reset stream id, which is not (or no longer)
// in c.streams: frames the client sent on it before it learnt of the reset
// are ignored (RFC 9113 5.4.2), not answered with another error; c.mu is
// held.
func (c *conn) noteReset(id uint32) {
	c.resets[c.nextReset%len(c.resets)] = id
	c.nextReset++
}

// lbReset reports whether lb reset stream id recently; c.mu is held.
func (c *conn) lbReset(id uint32) bool {
	for _, r := range c.resets {
		if r == id {
			return true
		}
	}
	return false
}

// openStreamsLocked counts the streams that count against the limit of
// concurrent streams (open), and those that do not while their handlers
// finish (finishing); c.mu is held. A stream whose response and request
// both ended is closed for the client (RFC 9113 5.1), which may open
// another at once, while its handler may still be finishing (releasing
// its server, logging): it does not count, but no more than a limit's
// worth of them run at once (onHeaders waits). A stream the client reset
// still counts until its handler returns, so that resetting streams (a
// "rapid reset" attack) cannot run more handlers at once than the limit.
func (c *conn) openStreamsLocked() (open, finishing uint32) {
	if n := uint32(len(c.streams)); n < c.s.maxStreams() {
		return n, 0
	}
	for _, st := range c.streams {
		if st.reset || !st.sentEnd || !st.recvEnd {
			open++
		} else {
			finishing++
		}
	}
	return open, finishing
}

// startStream runs a stream's handler, and endStream after it, on one of
// the Server's workers: a goroutine that serves one stream at a time.
func (c *conn) startStream(st *Stream) {
	c.wg.Add(1)
	c.s.workers.run(st)
}

// endStream retires a stream whose handler returned: a response left
// incomplete is reset (INTERNAL_ERROR), a request body still coming is
// refused once the response is complete (RST_STREAM NO_ERROR, RFC 9113
// 8.1), and what the stream held of the connection's window is given back.
func (c *conn) endStream(st *Stream) {
	var code http2.ErrCode
	rst := false
	c.mu.Lock()
	clientReset := st.reset && st.resetErr == ErrStreamReset
	switch {
	case st.reset:
	case !st.sentEnd:
		rst, code = true, http2.ErrCodeInternal
	case !st.recvEnd:
		rst, code = true, http2.ErrCodeNo
	}
	if !st.reset {
		st.resetLocked(errStreamDone)
	}
	var cInc uint32
	if !st.recvEnd && !clientReset {
		c.noteReset(st.id) // the client may still be sending on it
	}
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.streamsDone.Broadcast()
		c.credit(nil, st.drop())
		_, cInc = c.takeCredit(nil)
		if len(c.streams) == 0 {
			c.idleDeadline()
		}
	}
	c.mu.Unlock()
	if rst {
		_ = c.writeControl(func() error { return c.fr.WriteRSTStream(st.id, code) })
	}
	c.sendWindowUpdates(0, 0, cInc)
	st.release()
}

// idleDeadline sets the read deadline of a connection with no stream
// open: the idle timeout, or at once when it is going away; c.mu is held.
func (c *conn) idleDeadline() {
	switch {
	case c.goingAway || c.peerAway:
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	case c.s.IdleTimeout > 0:
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.IdleTimeout))
	default:
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// timedOut handles a read deadline: the handshake took too long, the
// connection stayed idle, or it is going away with no stream left.
func (c *conn) timedOut() {
	c.goAway(http2.ErrCodeNo)
	c.linger()
}

// goAway sends GOAWAY with code, naming the last stream lb took, unless
// it was sent before.
//
// The connection turns to going away, and GOAWAY is written, with the
// write side held throughout: whoever sees it going away (a stream that
// ends and lets the connection close, say) can only close it after the
// GOAWAY is out, never between the two.
func (c *conn) goAway(code http2.ErrCode) {
	writable := c.lockWrite()
	c.mu.Lock()
	c.goingAway = true
	c.streamsDone.Broadcast()
	sent := c.sentAway
	c.sentAway = true
	last := c.lastID
	c.mu.Unlock()
	var err error
	if writable && (!sent || code != http2.ErrCodeNo) {
		err = c.fr.WriteGoAway(last, code, nil)
	}
	_ = c.unlockWrite(err)
}

// shutdown sends GOAWAY: the streams open finish, new ones are refused,
// and the connection closes once none is left.
func (c *conn) shutdown() {
	c.mu.Lock()
	stop := c.goingAway || c.closed
	if !c.ready {
		// GOAWAY must not come before lb's SETTINGS: the reader sends
		// it once the prefaces are exchanged (idleDeadline).
		c.goingAway, stop = true, true
	}
	c.mu.Unlock()
	if stop {
		return
	}
	c.goAway(http2.ErrCodeNo)
	c.mu.Lock()
	if len(c.streams) == 0 {
		c.idleDeadline()
	}
	c.mu.Unlock()
}

// fail ends the connection with a connection error: GOAWAY with code.
func (c *conn) fail(code http2.ErrCode) {
	c.goAway(code)
	c.linger()
}

// linger closes lb's sending side, then reads and discards what the
// client still sends, for up to lingerTime, so that closing does not reset
// the connection before the client has read lb's last frames.
func (c *conn) linger() {
	c.wmu.Lock()
	if c.werr == nil {
		_ = c.bw.Flush()
		c.wdl.SetWrite() // after a long idle time, no frame may have set it
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.nc != net.Conn(c.raw) {
			_ = cw.CloseWrite() // TLS close_notify
		}
		if c.raw != nil {
			_ = c.raw.CloseWrite()
		}
		c.werr = net.ErrClosed
	}
	c.wmu.Unlock()
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
}

// teardown ends every stream still open, closes the connection and waits
// for the stream goroutines.
func (c *conn) teardown() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		if !st.reset {
			st.resetLocked(ErrConnLost)
		}
	}
	c.mu.Unlock()
	c.wmu.Lock()
	if c.werr == nil {
		if c.dirty {
			_ = c.bw.Flush() // the last frames written, which flushLoop may not have taken yet
		}
		c.werr = ErrConnLost
	}
	c.wmu.Unlock()
	close(c.flushStop)
	<-c.flushDone
	_ = c.nc.Close()
	c.wg.Wait()
}

// lockWrite takes the write side. It reports false when the write side
// has failed; call unlockWrite either way.
func (c *conn) lockWrite() bool {
	c.wmu.Lock()
	return c.werr == nil
}

// socketWriter is what bw writes to: the connection, each write within
// Server.Timeout. Frames go to bw under wmu, and reach the socket when
// flushLoop flushes them, or at once when one does not fit in bw: the
// deadline is checked there, on a write to the socket, not for each
// frame.
type socketWriter struct{ c *conn }

func (w socketWriter) Write(p []byte) (int, error) {
	w.c.wdl.SetWrite()
	return w.c.nc.Write(p)
}

// unlockWrite releases the write side after err, the outcome of writing
// frames to the buffer, and has flushLoop flush them. It returns the write
// side's error.
func (c *conn) unlockWrite(err error) error {
	if err == nil && c.werr == nil && c.bw.Buffered() > 0 {
		c.writes.Add(1)
		if !c.dirty {
			c.dirty = true
			notify(c.flushReq)
		}
	}
	return c.releaseWrite(err)
}

// releaseWrite releases the write side after err: an error closes the
// connection. It returns the write side's error.
func (c *conn) releaseWrite(err error) error {
	if err != nil && c.werr == nil {
		c.werr = err
		// The reader sees the connection close and ends every stream.
		_ = c.nc.Close()
	}
	err = c.werr
	c.wmu.Unlock()
	return err
}

// flushLoop flushes what the streams and the reader wrote, until teardown.
// It lets every goroutine that is ready to run go first, so that the
// frames they write go out together, in as few TLS records and syscalls as
// can be, as an event loop sends what one turn made ready: on one core, a
// flush per stream (HEADERS, DATA, END_STREAM each flushed apart, before)
// was about a third of lb's CPU per HTTP/2 request. It flushes once a
// turn of the scheduler went by without new frames (up to maxFlushTurns):
// the runtime's fairness sometimes runs it before the other goroutines
// that were ready, and a flush then would send part of what the turn
// makes (about 5% more TCP segments to clients, and as many more reads of
// their requests, which come as the responses went). A writer that then
// waits (for the server, for window) has its frames flushed first, since
// a goroutine that waits lets flushLoop run.
func (c *conn) flushLoop() {
	defer close(c.flushDone)
	for {
		select {
		case <-c.flushStop:
			return
		case <-c.flushReq:
		}
		turn.Settle(&c.writes, maxFlushTurns)
		if !c.lockWrite() {
			_ = c.releaseWrite(nil)
			continue
		}
		var err error
		if c.dirty {
			c.dirty = false
			err = c.bw.Flush()
		}
		_ = c.releaseWrite(err)
	}
}

// maxFlushTurns bounds the turns flushLoop waits for frames to stop
// coming (turn.Settle).
const maxFlushTurns = 4

// writeControl writes frames of the connection's own (SETTINGS ACK, PING
// ACK, WINDOW_UPDATE, RST_STREAM, GOAWAY).
func (c *conn) writeControl(write func() error) error {
	if !c.lockWrite() {
		return c.unlockWrite(nil)
	}
	return c.unlockWrite(write())
}

// notify wakes the goroutine waiting on ch, if any, or the next one to
// wait.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// errTooLarge is a request head over the limits: lb answers 431.
var errTooLarge = &h1.Error{Status: 431, Reason: "head larger than max_header_bytes"}
