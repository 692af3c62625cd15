package httpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// slack makes deadlines cheap: a deadline is set d + d/slack ahead, and
// not set again while it was set less than d/slack ago, which still leaves
// at least d. So a timeout of d fires between d and d + d/slack after the
// last activity, and a busy connection skips most of the runtime's timer
// work (and clock reads) that a deadline per read or write costs.
const slack = 8

// lazyDeadline is one direction's deadline of c, d ahead of the last
// activity (see slack); d <= 0 or a nil c means none.
type lazyDeadline struct {
	c  net.Conn
	d  time.Duration
	at time.Time // when the deadline was last set
}

// due returns the deadline to set now, or false when the one set is
// recent enough.
func (l *lazyDeadline) due() (time.Time, bool) {
	if l.d <= 0 || l.c == nil {
		return time.Time{}, false
	}
	if !l.at.IsZero() && time.Since(l.at) < l.d/slack {
		// time.Since reads the monotonic clock alone: half of
		// time.Now's cost, on every read and write that sets nothing.
		return time.Time{}, false
	}
	return l.dueAt(time.Now())
}

// dueAt is due at now.
func (l *lazyDeadline) dueAt(now time.Time) (time.Time, bool) {
	if l.d <= 0 || l.c == nil {
		return time.Time{}, false
	}
	if now.Sub(l.at) < l.d/slack {
		return time.Time{}, false
	}
	l.at = now
	return now.Add(l.d + l.d/slack), true
}

// timedReader reads r with a read deadline before each read: d bounds a
// stall, not the whole transfer. Once stop is set, reads fail: whoever
// sets it then sets a deadline in the past on c, which ends a read under
// way (a deadline is set before stop is looked at, so it cannot undo
// that).
type timedReader struct {
	r io.Reader
	lazyDeadline
	stop *atomic.Bool
	// in, when set, is the buffer r reads through, and r reads nothing
	// more than in holds while it holds something (bufio.Reader.Read, or
	// an io.LimitedReader over it): such a read needs no deadline, nor
	// the clock read that deciding it takes.
	in *bufio.Reader
	// fresh says the deadline was just set, or leaves at least d: the
	// next arm has nothing to do.
	fresh bool
}

// arm sets the read deadline, unless the one set is recent enough.
func (t *timedReader) arm() {
	if t.fresh {
		t.fresh = false
		return
	}
	if at, ok := t.due(); ok {
		_ = t.c.SetReadDeadline(at)
	}
}

func (t *timedReader) Read(p []byte) (int, error) {
	if lr, ok := t.r.(*io.LimitedReader); ok && lr.N <= 0 {
		return 0, io.EOF // the end of a body of known length: no read
	}
	if t.in == nil || t.in.Buffered() == 0 {
		t.arm()
	}
	if t.stop != nil && t.stop.Load() {
		return 0, errStopped
	}
	return t.r.Read(p)
}

// timedWriter writes to w with a write deadline before each write, as
// timedReader reads.
type timedWriter struct {
	w io.Writer
	lazyDeadline
	stop *atomic.Bool
}

// arm sets the write deadline, unless the one set is recent enough.
func (t *timedWriter) arm() {
	if at, ok := t.due(); ok {
		_ = t.c.SetWriteDeadline(at)
	}
}

func (t *timedWriter) Write(p []byte) (int, error) {
	t.arm()
	if t.stop != nil && t.stop.Load() {
		return 0, errStopped
	}
	return t.w.Write(p)
}

// errStopped is the error of a body read or write that was stopped.
var errStopped = errors.New("stopped")
