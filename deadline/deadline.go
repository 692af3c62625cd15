// Package deadline makes a connection's read or write deadlines cheap to
// keep: a deadline is set d + d/Slack ahead, and not set again while it
// was set less than d/Slack ago, which still leaves at least d. So a
// timeout of d fires between d and d + d/Slack after the last activity,
// and a busy connection skips most of the runtime's timer work (and clock
// reads) that a deadline per read or write costs.
package deadline

import (
	"net"
	"time"
)

// Slack is the share of d by which a deadline may be late.
const Slack = 8

// Lazy is one direction's deadline of Conn, D ahead of the last activity;
// D <= 0 or a nil Conn means none. At is when the deadline was last set
// (zero: not yet), kept by a caller that hands the connection on.
type Lazy struct {
	Conn net.Conn
	D    time.Duration
	At   time.Time
}

// Due returns the deadline to set now, or false when the one set is
// recent enough.
func (l *Lazy) Due() (time.Time, bool) {
	if l.D <= 0 || l.Conn == nil {
		return time.Time{}, false
	}
	if !l.At.IsZero() && time.Since(l.At) < l.D/Slack {
		// time.Since reads the monotonic clock alone: half of
		// time.Now's cost, on every read and write that sets nothing.
		return time.Time{}, false
	}
	return l.DueAt(time.Now())
}

// DueAt is Due at now.
func (l *Lazy) DueAt(now time.Time) (time.Time, bool) {
	if l.D <= 0 || l.Conn == nil {
		return time.Time{}, false
	}
	if now.Sub(l.At) < l.D/Slack {
		return time.Time{}, false
	}
	l.At = now
	return now.Add(l.D + l.D/Slack), true
}

// SetWrite sets Conn's write deadline when it is due.
func (l *Lazy) SetWrite() {
	if at, ok := l.Due(); ok {
		_ = l.Conn.SetWriteDeadline(at)
	}
}

// SetRead sets Conn's read deadline when it is due.
func (l *Lazy) SetRead() {
	if at, ok := l.Due(); ok {
		_ = l.Conn.SetReadDeadline(at)
	}
}
