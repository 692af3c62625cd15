package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lb/park"
	"lb/proxyproto"
	"lb/sock"
)

// A TCP session's two directions are flows. A flow moves its source's
// bytes to its destination while they come: a small payload through a
// pooled buffer (one read, one write); a bulk transfer, once a read fills
// the buffer, through a pooled pipe with splice(2), which moves the bytes
// without copying them through lb. When its source has been quiet for
// ParkAfter, the flow parks it (package park) and its goroutine ends, so a
// connection at rest holds no goroutine, no buffer and no pipe. The
// source's next bytes, its close, or the session's idle deadline wake the
// flow in a new goroutine.
//
// The flows work on the bare sockets through syscall.RawConn, with raw
// syscalls (package sock): Go's poller does the waiting, no syscall blocks
// a thread, and none hands the flow's P to another thread.

// ParkAfter is how long a connection waits for more bytes in a goroutine
// of its own before it is parked: long enough that a busy connection (a
// request every few milliseconds) never pays for parking, short enough
// that an idle one soon holds nothing. HTTP connections wait as long.
const ParkAfter = 50 * time.Millisecond

// parkAfter is ParkAfter, which tests shorten.
var parkAfter = ParkAfter

// flowBufSize is the buffer a flow reads small payloads into; a read that
// fills it switches the flow to splice for the rest of the burst.
const flowBufSize = 16 << 10

var flowBufs = sync.Pool{New: func() any { b := make([]byte, flowBufSize); return &b }}

// Poller parks the idle connections of the whole process.
var Poller park.Poller

// errIdle is a flow whose source stayed quiet for parkAfter.
var errIdle = errors.New("idle")

// flow is one direction of a session: from's bytes, read from src,
// written to dst.
type flow struct {
	s        *session
	from     side
	src, dst *net.TCPConn
	rsrc     syscall.RawConn
	rdst     syscall.RawConn

	// The callbacks of rsrc.Read and rdst.Write, made once and kept with
	// the pooled session (they are bound to the flow), so that moving
	// bytes allocates nothing; their results go in the fields below.
	onRead, onWrite, onFill, onDrain func(fd uintptr) bool
	onWriteNow                       func(fd uintptr)
	allWritten, allDrained           func() bool

	buf      *[]byte // the buffer a payload is in, from flowBufs
	n, off   int     // bytes in buf, and written of them
	pipe     *pipe   // the pipe of a bulk transfer, from pipes
	dry, eof bool    // a fill found src empty, at its end
	waited   bool    // a write found dst full
	relayed  bool    // the payload in buf was counted, and written up to off, within the read (relay)
	guard    bool    // the first bytes may not be a PROXY protocol header (an untrusted client's)
	err      error   // the syscall error of the last callback

	readDue   int64     // the read deadline set last, as session.since
	writeDue  time.Time // the write deadline set last
	writeWait time.Duration
}

// bind prepares f to move from's bytes of s.
func (f *flow) bind(s *session, from side, src, dst *net.TCPConn) error {
	f.s, f.from, f.src, f.dst = s, from, src, dst
	var err error
	if f.rsrc, err = src.SyscallConn(); err != nil {
		return err
	}
	if f.rdst, err = dst.SyscallConn(); err != nil {
		return err
	}
	if f.onRead == nil {
		f.onRead, f.onWrite, f.onWriteNow, f.onFill, f.onDrain = f.readSys, f.writeSys, f.writeNowSys, f.fillSys, f.drainSys
		f.allWritten, f.allDrained = f.written, f.drained
	}
	f.writeWait = s.timeouts[from.other()]
	f.guard = from == clientSide && s.conn.info != nil && s.conn.info.RefuseProxy
	return nil
}

// reset empties f for the next session, keeping its callbacks.
func (f *flow) reset() {
	*f = flow{onRead: f.onRead, onWrite: f.onWrite, onWriteNow: f.onWriteNow, onFill: f.onFill, onDrain: f.onDrain,
		allWritten: f.allWritten, allDrained: f.allDrained}
}

// run moves bytes until the flow ends or parks.
func (f *flow) run() {
	Busy(1)
	defer Busy(-1)
	for {
		err := f.pass()
		switch {
		case err == nil:
		case err == errIdle:
			if f.park() {
				return
			}
		case err == io.EOF:
			// The source closed its side: so does the flow, towards the
			// destination; the other flow may go on.
			f.s.end.CompareAndSwap(uint32(EndNone), uint32(f.from.closed()))
			_ = f.dst.CloseWrite()
			f.s.flowDone()
			return
		default:
			f.s.abort(f.failure(err))
			f.s.flowDone()
			return
		}
	}
}

// failure is the end that err, which stopped the flow, gives the session:
// the destination's timeout or failure, or the source's failure.
func (f *flow) failure(err error) End {
	var we writeError
	switch {
	case err == errProxyRefused:
		f.s.conn.f.Counts.ProxyErrors.Add(1)
		return EndProxyRefused
	case errors.As(err, &we) && isDeadline(we.err):
		return f.from.other().timeout()
	case errors.As(err, &we):
		return f.from.other().failed()
	}
	return f.from.failed()
}

// writeError is an error of the destination.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// pass waits up to parkAfter for the source, and moves what it has. It
// returns errIdle when nothing came, io.EOF at the source's end, a
// writeError for the destination's errors. Small payloads that the
// destination takes at once are relayed within the read (see relay): pass
// returns for what relay could not finish, the end, a bulk transfer or an
// error.
func (f *flow) pass() error {
	f.armRead()
	f.err = nil
	if err := f.rsrc.Read(f.onRead); err != nil {
		f.putBuf()
		if isDeadline(err) {
			return errIdle
		}
		return err
	}
	switch {
	case f.err != nil:
		f.putBuf()
		return f.err
	case f.n == 0:
		f.putBuf()
		return io.EOF
	}
	n := f.n
	if f.relayed {
		f.relayed = false // counted, and written up to f.off
	} else {
		f.s.moved(f.from, n)
		f.off = 0
	}
	err := f.drain(f.onWrite, f.allWritten)
	f.putBuf()
	if err == nil && n == flowBufSize {
		// The buffer filled: more is likely waiting. The rest of the
		// burst goes through a pipe.
		err = f.bulk()
	}
	return err
}

// armRead keeps a read deadline parkAfter ahead, which ends the wait for
// the source's next bytes. One deadline serves for a while: no timer change
// per pass. It must never be past when the flow reads, even to splice what
// is there: a read under a past deadline fails at once.
func (f *flow) armRead() { f.armReadAt(f.s.since()) }

// armReadAt is armRead at now, as session.since: one read of the monotonic
// clock, which a relay shares with session.moved.
func (f *flow) armReadAt(now int64) {
	if f.readDue-now < int64(parkAfter/2) {
		f.readDue = now + int64(parkAfter)
		_ = f.src.SetReadDeadline(f.s.start.Add(time.Duration(f.readDue)))
	}
}

// readSys reads what the source has into a buffer taken when bytes are
// there; it reports false (wait) when there is nothing yet.
func (f *flow) readSys(fd uintptr) bool {
	if f.buf == nil {
		f.buf = flowBufs.Get().(*[]byte)
	}
	n, err := sock.Read(int(fd), *f.buf)
	switch err {
	case unix.EAGAIN:
		// Nothing to read: the buffer goes back while the flow waits.
		f.putBuf()
		return false
	case nil:
		f.n = n
	default:
		f.n, f.err = 0, err
		return true
	}
	if f.guard && n > 0 {
		f.guard = false
		if proxyproto.HasSignature((*f.buf)[:n]) {
			f.n, f.err = 0, errProxyRefused
			return true
		}
	}
	if n == 0 || n == flowBufSize {
		return true // the end, or a bulk transfer: pass goes on
	}
	return !f.relay()
}

// relay writes the small payload just read to the destination from within
// the source's read, without waiting for the destination, and reports
// whether it took everything: then the flow goes on waiting for the source
// in the same read. A read that returned less than the buffer emptied the
// socket, and Go's poller records every arrival since the read began, so
// the flow needs no read that finds nothing before it waits: a request and
// its response cost a read and a write each way, as in HAProxy. When the
// destination takes less (or fails), the read ends and pass writes the
// rest (or meets the error again), with the write deadline.
func (f *flow) relay() bool {
	now := f.s.moved(f.from, f.n)
	f.off, f.relayed = 0, true
	if err := f.rdst.Control(f.onWriteNow); err != nil || f.err != nil || f.off < f.n {
		f.err = nil // the destination's: drain meets it again, as a writeError
		return false
	}
	f.relayed, f.n = false, 0
	f.putBuf()
	f.armReadAt(now)
	return true
}

func (f *flow) putBuf() {
	if f.buf != nil {
		flowBufs.Put(f.buf)
		f.buf = nil
	}
}

// writeSlack makes write deadlines cheap, as in package httpproxy: a
// deadline is set writeWait + writeWait/writeSlack ahead, and not again
// while at least writeWait of it is left, so a busy flow sets one every
// writeWait/writeSlack, not one per write.
const writeSlack = 8

// armWrite keeps a write deadline at least the destination's idle timeout
// ahead.
func (f *flow) armWrite() {
	if f.writeWait <= 0 {
		return
	}
	if now := time.Now(); f.writeDue.Sub(now) < f.writeWait {
		f.setWriteDue(now.Add(f.writeWait + f.writeWait/writeSlack))
	}
}

func (f *flow) setWriteDue(t time.Time) {
	f.writeDue = t
	_ = f.dst.SetWriteDeadline(t)
}

// stalled reports whether err, which ended a write, means the session
// timed out: the destination took nothing for its idle timeout, and no
// byte moved the other way either. When bytes moved, the deadline moves to
// the session's idle timeout after them, and the write goes on.
func (f *flow) stalled(err error) bool {
	if !isDeadline(err) {
		return true
	}
	last := f.s.last.Load()
	if f.s.since()-last >= int64(f.writeWait) {
		return true
	}
	f.setWriteDue(f.s.start.Add(time.Duration(last) + f.writeWait + f.writeWait/writeSlack))
	return false
}

// drain writes to the destination with cb until done reports that all
// is written.
func (f *flow) drain(cb func(fd uintptr) bool, done func() bool) error {
	f.armWrite()
	f.waited = false
	for !done() {
		f.err = nil
		if err := f.rdst.Write(cb); err != nil {
			if f.stalled(err) {
				return writeError{err}
			}
			continue
		}
		if f.err != nil {
			return writeError{f.err}
		}
	}
	return nil
}

// wrote records n bytes written by a write that waited for the
// destination, or did not write everything: a destination that takes
// bytes is not idle.
func (f *flow) wrote(n int, all bool) {
	if n > 0 && (f.waited || !all) {
		f.s.last.Store(f.s.since())
	}
}

func (f *flow) written() bool { return f.off == f.n }
func (f *flow) drained() bool { return f.pipe.held == 0 }

// writeSys writes what is left of the buffer; false waits until the
// destination takes more.
func (f *flow) writeSys(fd uintptr) bool {
	n, err := sock.WriteAll(int(fd), (*f.buf)[f.off:f.n])
	f.off += n
	f.wrote(n, f.off == f.n)
	return f.settle(err)
}

// writeNowSys writes what the destination takes of the buffer now, and
// never waits: through RawConn.Control, which holds the descriptor as a
// write would but takes no write lock and resets no readiness (only this
// flow writes to its destination, and it waits elsewhere).
func (f *flow) writeNowSys(fd uintptr) { f.writeSys(fd) }

// bulk moves a burst through a pipe until the source runs dry (or ends),
// then gives the pipe back.
func (f *flow) bulk() error {
	p, err := pipes.get()
	if err != nil {
		return nil // no pipe (out of descriptors): the buffer carries on
	}
	f.pipe = p
	err = f.pump()
	pipes.put(p)
	f.pipe = nil
	return err
}

// pump fills the pipe from the source and drains it to the destination
// until the source is dry or at its end.
func (f *flow) pump() error {
	p := f.pipe
	for {
		f.dry, f.eof, f.err = false, false, nil
		f.armRead()
		if err := f.rsrc.Read(f.onFill); err != nil {
			return err
		}
		if f.err != nil {
			return f.err
		}
		if n := p.held; n > 0 {
			f.s.moved(f.from, n)
			if err := f.drain(f.onDrain, f.allDrained); err != nil {
				return err
			}
		}
		switch {
		case f.eof:
			return io.EOF
		case f.dry:
			return nil
		}
	}
}

// fillSys splices what the source has into the pipe. It never waits: a
// source with nothing more is dry.
func (f *flow) fillSys(fd uintptr) bool {
	n, err := sock.Splice(int(fd), f.pipe.w, pipeSize-f.pipe.held)
	switch {
	case err == unix.EAGAIN:
		f.dry = true
	case err != nil:
		f.err = err
	case n == 0:
		f.eof = true
	default:
		f.pipe.held += n
	}
	return true
}

// drainSys splices the pipe's bytes to the destination; false waits until
// the destination takes more.
func (f *flow) drainSys(fd uintptr) bool {
	n, err := sock.SpliceAll(f.pipe.r, int(fd), f.pipe.held)
	f.pipe.held -= n
	f.wrote(n, f.pipe.held == 0)
	return f.settle(err)
}

// settle is what a write callback reports after err, the end of its
// writes: nil (all written) or an error end the wait; EAGAIN (the
// destination is full) waits until it takes more.
func (f *flow) settle(err error) bool {
	if err == unix.EAGAIN {
		f.waited = true
		return false
	}
	f.err = err
	return true
}

// park parks the source until it has bytes or the session's idle
// deadline. It reports false when the flow could not park and goes on in
// its goroutine.
func (f *flow) park() bool {
	s := f.s
	s.mu.Lock()
	if s.aborted.Load() {
		// The session is ending: the flow ends with it.
		s.mu.Unlock()
		s.flowDone()
		return true
	}
	pk, err := Poller.Park(f.src, s.idleDeadline(), f)
	if err == nil {
		s.parked[f.from] = pk
	}
	s.mu.Unlock()
	return err == nil
}

// Wake resumes a parked flow: it implements park.Waker.
func (f *flow) Wake(r park.Reason) {
	s := f.s
	s.mu.Lock()
	s.parked[f.from] = nil
	aborted := s.aborted.Load()
	s.mu.Unlock()
	switch {
	case aborted:
		s.flowDone()
		return
	case r == park.Expired:
		if sd, idle := s.idleSide(); idle {
			s.abort(sd.timeout())
			s.flowDone()
			return
		}
		// The other flow moved bytes meanwhile: park again, until the
		// session's new deadline.
		if f.park() {
			return
		}
	case r != park.Ready: // the poller closed: lb is exiting
		s.abort(f.from.failed())
		s.flowDone()
		return
	}
	f.run()
}
