package httpproxy

import (
	"bufio"
	"errors"
	"io"
	"sync/atomic"

	"lb/deadline"
)

// timedReader reads r with a read deadline before each read: d bounds a
// stall, not the whole transfer. Once stop is set, reads fail: whoever
// sets it then sets a deadline in the past on c, which ends a read under
// way (a deadline is set before stop is looked at, so it cannot undo
// that).
type timedReader struct {
	r io.Reader
	deadline.Lazy
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
	t.SetRead()
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
	deadline.Lazy
	stop *atomic.Bool
}

// arm sets the write deadline, unless the one set is recent enough.
func (t *timedWriter) arm() { t.SetWrite() }

func (t *timedWriter) Write(p []byte) (int, error) {
	t.arm()
	if t.stop != nil && t.stop.Load() {
		return 0, errStopped
	}
	return t.w.Write(p)
}

// errStopped is the error of a body read or write that was stopped.
var errStopped = errors.New("stopped")
