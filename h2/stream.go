package h2

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"lb/h1"
	"lb/headerblock"
)

// Stream is one request and its response. The handler that ServeStream
// gives it to reads the request body with Read (and AbortRead, Trailer)
// while it writes the response with WriteHeader, Write and Close; those
// two sides may run in two goroutines. A Stream must not be used once
// ServeStream has returned.
type Stream struct {
	c        *conn
	id       uint32
	req      h1.Request
	err      error
	start    time.Time
	declared int64 // the request's content-length, -1: none

	// Guarded by c.mu.
	recvEnd    bool          // the client ended the stream
	reset      bool          // the stream is over: reset by either side, or the connection is gone
	resetErr   error         // why
	done       chan struct{} // Done's, made when first asked for (most streams never are)
	aborted    bool          // AbortRead
	sentEnd    bool          // lb ended the stream
	hasTrailer bool
	wantSend   bool // a writer waits for window
	wantRecv   bool // a reader waits for body bytes
	body       []*chunk
	buffered   int64 // bytes in body
	recvd      int64 // body bytes received
	recvWin    int64 // what the client may still send on the stream
	recvCredit int64 // bytes read that the client was not told of yet
	sendWin    int64 // what lb may still send on the stream
	trailer    h1.Head
	recvWake   chan struct{}
	sendWake   chan struct{}
	// watcher is told when the stream is reset (Watch).
	watcher DoneWatcher

	// The handler's own.
	headersSent bool
}

// chunk holds body bytes received and not yet read.
type chunk struct {
	b    [readFrameSize]byte
	r, w int
}

var (
	chunks  = sync.Pool{New: func() any { return new(chunk) }}
	streams = sync.Pool{New: func() any {
		return &Stream{recvWake: make(chan struct{}, 1), sendWake: make(chan struct{}, 1)}
	}}
)

// newStream returns a stream for id, its request storage reused. It runs
// in the reader goroutine, the only one to change c.initWin.
func newStream(c *conn, id uint32) *Stream {
	st := streams.Get().(*Stream)
	req, trailer, body := st.req, st.trailer, st.body[:0]
	recvWake, sendWake := st.recvWake, st.sendWake
	drain(recvWake)
	drain(sendWake)
	trailer.Reset()
	*st = Stream{c: c, id: id, req: req, trailer: trailer, body: body, recvWake: recvWake, sendWake: sendWake,
		start: c.readTime(), declared: -1, recvWin: streamWindow, sendWin: c.initWin}
	return st
}

// readTime returns when the bytes being read came (conn.readAt); it runs
// in the reader goroutine.
func (c *conn) readTime() time.Time {
	if c.readAt.IsZero() {
		c.readAt = time.Now()
	}
	return c.readAt
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// release puts a stream whose handler returned back in the pool.
func (st *Stream) release() {
	st.drop()
	st.c, st.err, st.resetErr, st.watcher = nil, nil, nil, nil
	streams.Put(st)
}

// Request returns the stream's request head, translated to HTTP/1.1 (see
// ReadRequest). Its Body says how the body comes: none, a length, or
// chunked for a body of unknown length.
func (st *Stream) Request() *h1.Request { return &st.req }

// Err returns why the request cannot be forwarded, or nil: a
// *MalformedError (the stream was reset, there is nothing to answer) or an
// *h1.Error (431: answer it).
func (st *Stream) Err() error { return st.err }

// Start returns when the request's HEADERS frame came.
func (st *Stream) Start() time.Time { return st.start }

// Done returns a channel closed when the stream is over before its
// response was complete: the client reset it, or the connection went.
func (st *Stream) Done() <-chan struct{} {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.done == nil {
		if st.reset {
			return closedChan
		}
		st.done = make(chan struct{})
	}
	return st.done
}

// Gone reports whether Done is closed, without making its channel.
func (st *Stream) Gone() bool {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return st.reset
}

// closedChan is Done's channel for a stream done before Done was called.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// A DoneWatcher is told when a stream is done (Stream.Watch).
type DoneWatcher interface{ StreamDone() }

// Watch has w told, in a goroutine of its own, when Done is closed (at
// once if it is): for a call made on the stream's behalf (a request to an
// HTTP/2 server), which it cancels when the client resets the stream,
// without a goroutine to wait on Done nor a context. One watcher at a
// time; Unwatch stops it.
func (st *Stream) Watch(w DoneWatcher) {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.reset {
		go w.StreamDone()
		return
	}
	st.watcher = w
}

// Unwatch stops the watcher before it is told, if it was not told yet.
func (st *Stream) Unwatch() {
	c := st.c
	c.mu.Lock()
	st.watcher = nil
	c.mu.Unlock()
}

// resetLocked ends the stream with err; c.mu is held, or the stream is not
// shared yet.
func (st *Stream) resetLocked(err error) {
	if !st.reset {
		if st.done != nil {
			close(st.done)
		}
		if w := st.watcher; w != nil {
			st.watcher = nil
			go w.StreamDone()
		}
	}
	st.reset, st.resetErr = true, err
	// Only a Read or a Write that waits needs the news; the others see
	// st.reset.
	if st.wantRecv {
		notify(st.recvWake)
	}
	if st.wantSend {
		notify(st.sendWake)
	}
}

// push appends body bytes received; c.mu is held.
func (st *Stream) push(data []byte) {
	st.buffered += int64(len(data))
	for len(data) > 0 {
		var ck *chunk
		if n := len(st.body); n > 0 && st.body[n-1].w < len(st.body[n-1].b) {
			ck = st.body[n-1]
		} else {
			ck = chunks.Get().(*chunk)
			ck.r, ck.w = 0, 0
			st.body = append(st.body, ck)
		}
		k := copy(ck.b[ck.w:], data)
		ck.w += k
		data = data[k:]
	}
}

// take moves buffered body bytes to p; c.mu is held.
func (st *Stream) take(p []byte) int {
	n := 0
	for n < len(p) && len(st.body) > 0 {
		ck := st.body[0]
		k := copy(p[n:], ck.b[ck.r:ck.w])
		ck.r += k
		n += k
		if ck.r == ck.w {
			chunks.Put(ck)
			copy(st.body, st.body[1:])
			st.body[len(st.body)-1] = nil
			st.body = st.body[:len(st.body)-1]
		}
	}
	st.buffered -= int64(n)
	return n
}

// drop discards the body bytes buffered and returns how many there were;
// c.mu is held, or the stream is no longer shared.
func (st *Stream) drop() int64 {
	n := st.buffered
	for i, ck := range st.body {
		chunks.Put(ck)
		st.body[i] = nil
	}
	st.body = st.body[:0]
	st.buffered = 0
	return n
}

// BodyState returns the body bytes received so far, and whether the
// client has ended the body (then they are the whole body, and a Trailer
// may have come).
func (st *Stream) BodyState() (received int64, complete bool) {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.recvd, st.recvEnd && !st.reset
}

// Read reads the request body. It waits up to the server's Timeout for
// bytes (then os.ErrDeadlineExceeded), returns io.EOF at the end of the
// body, ErrStreamReset or ErrConnLost when the client went, and a
// *MalformedError when the body does not match its content-length.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := st.c
	var t *time.Timer
	defer stopTimer(&t)
	c.mu.Lock()
	for {
		if st.buffered > 0 {
			n := st.take(p)
			c.credit(st, int64(n))
			sInc, cInc := c.takeCredit(st)
			c.mu.Unlock()
			c.sendWindowUpdates(st.id, sInc, cInc)
			return n, nil
		}
		var err error
		switch {
		case st.aborted:
			err = errAborted
		case st.reset:
			err = st.resetErr
		case st.recvEnd:
			err = io.EOF
		}
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		st.wantRecv = true
		c.mu.Unlock()
		ok := wait(st.recvWake, &t, c.s.Timeout)
		c.mu.Lock()
		st.wantRecv = false
		if !ok {
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// wait waits for a wake-up on ch, for up to d (0: for ever) since the
// first wait of the timer *t. It reports false when the time is up.
func wait(ch chan struct{}, t **time.Timer, d time.Duration) bool {
	if d <= 0 {
		<-ch
		return true
	}
	if *t == nil {
		*t = time.NewTimer(d)
	}
	select {
	case <-ch:
		return true
	case <-(*t).C:
		return false
	}
}

func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
	}
}

// AbortRead makes a Read under way, and every one after it, fail at once.
func (st *Stream) AbortRead() {
	st.c.mu.Lock()
	st.aborted = true
	notify(st.recvWake)
	st.c.mu.Unlock()
}

// Trailer returns the request's trailer section, once Read has returned
// io.EOF; nil when there was none.
func (st *Stream) Trailer() *h1.Head {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	if !st.hasTrailer {
		return nil
	}
	return &st.trailer
}

// WriteInformational sends an interim (1xx) response.
func (st *Stream) WriteInformational(status int, h *h1.Head) error {
	if st.headersSent {
		return errors.New("h2: interim response after the response")
	}
	return st.writeHeaders(status, h, false)
}

// WriteHeader sends the response head; end says the response has no body
// (the stream ends with it).
func (st *Stream) WriteHeader(status int, h *h1.Head, end bool) error {
	if st.headersSent {
		return errors.New("h2: response head written twice")
	}
	st.headersSent = true
	return st.writeHeaders(status, h, end)
}

// writeHeaders sends a header block: a response head (status > 0) or a
// trailer section.
func (st *Stream) writeHeaders(status int, h *h1.Head, end bool) error {
	c := st.c
	if err := st.usable(end); err != nil {
		return err
	}
	if !c.lockWrite() {
		return c.unlockWrite(nil)
	}
	return c.unlockWrite(c.writeHeaderBlock(st.id, status, h, end))
}

// usable returns why frames can no longer go on the stream, or nil. end
// says the frame to write ends the stream: the stream counts as ended from
// now on, before the frame is written, so that a client that answers the
// frame at once finds the stream closed (RFC 9113 5.1).
func (st *Stream) usable(end bool) error {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	switch {
	case st.reset:
		return st.resetErr
	case st.sentEnd:
		return errStreamDone
	}
	st.sentEnd = end
	return nil
}

// Write sends response body bytes, as the flow-control windows allow.
func (st *Stream) Write(p []byte) (int, error) {
	c := st.c
	if !st.headersSent {
		return 0, errors.New("h2: response body before its head")
	}
	written := 0
	for len(p) > 0 {
		n, err := st.reserve(len(p))
		if err != nil {
			return written, err
		}
		if !c.lockWrite() {
			return written, c.unlockWrite(nil)
		}
		if err := c.unlockWrite(c.fr.WriteData(st.id, false, p[:n])); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// reserve waits until some of n bytes may be sent on the stream, and takes
// that much of its window and of the connection's.
func (st *Stream) reserve(n int) (int, error) {
	c := st.c
	var t *time.Timer
	defer stopTimer(&t)
	c.mu.Lock()
	for {
		switch {
		case st.reset:
			err := st.resetErr
			c.mu.Unlock()
			return 0, err
		case st.sentEnd:
			c.mu.Unlock()
			return 0, errStreamDone
		}
		k := min(int64(n), st.sendWin, c.sendWin, c.maxFrame)
		if k > 0 {
			st.sendWin -= k
			c.sendWin -= k
			st.wantSend = false
			c.mu.Unlock()
			return int(k), nil
		}
		st.wantSend = true
		c.mu.Unlock()
		if !wait(st.sendWake, &t, c.s.Timeout) {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
	}
}

// Close ends the response: with the fields of trailer as its trailer
// section when there are some, else with an empty DATA frame.
func (st *Stream) Close(trailer *h1.Head) error {
	c := st.c
	if !st.headersSent {
		return errors.New("h2: response ended before its head")
	}
	c.mu.Lock()
	done := st.sentEnd
	c.mu.Unlock()
	if done {
		return nil
	}
	if trailer != nil && len(trailer.Fields) > 0 {
		return st.writeHeaders(0, trailer, true)
	}
	if err := st.usable(true); err != nil {
		return err
	}
	if !c.lockWrite() {
		return c.unlockWrite(nil)
	}
	return c.unlockWrite(c.fr.WriteData(st.id, true, nil))
}

// writeHeaderBlock encodes a header block (package headerblock) and
// writes it; wmu is held. status 0 makes a trailer section.
func (c *conn) writeHeaderBlock(id uint32, status int, h *h1.Head, end bool) error {
	block := c.hw.Start()
	if status > 0 {
		block = headerblock.AppendStatus(block, status)
	}
	if h != nil {
		for _, f := range h.Fields {
			if name, ok := c.responseName(f.Name); ok {
				block = headerblock.AppendField(block, name, f.Value)
			}
		}
	}
	return c.hw.Write(c.fr, id, block, end, int(c.wMaxFrame))
}

// responseName returns a field name as HTTP/2 writes it, in lower case, in
// c.scratch; ok is false for the fields HTTP/2 forbids (RFC 9113 8.2.2).
func (c *conn) responseName(name []byte) ([]byte, bool) {
	c.scratch = c.scratch[:0]
	for _, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		c.scratch = append(c.scratch, b)
	}
	switch string(c.scratch) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "":
		return nil, false
	}
	return c.scratch, true
}
