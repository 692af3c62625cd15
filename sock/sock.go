// Package sock reads and writes lb's non-blocking sockets with raw
// syscalls, which the Go runtime does not track.
//
// A syscall the runtime tracks (syscall.Syscall, as net.Conn's Read and
// Write make) marks the goroutine's P as in a syscall, and the runtime's
// monitor hands the P to another thread when the call lasts over about
// 20µs. On a non-blocking socket a read or write never waits, but a write
// on loopback or a fast network runs the receiver's TCP stack inline and
// often lasts that long: on one core, that costs a context switch or two
// per request, a fifth of lb's CPU per request in TCP mode. A raw syscall
// keeps the P: the call returns as fast, and nothing else needed the P
// meanwhile. Waiting is still Go's poller's (syscall.RawConn), so no
// thread ever blocks.
package sock

import (
	"errors"
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads from fd, a non-blocking socket, with a raw recvfrom(2),
// retrying on EINTR.
//
// recvfrom(2) and sendto(2), as HAProxy uses, rather than read(2) and
// write(2): on a socket they skip the file layer that read and write go
// through (the file position lock, the permission and notification
// hooks), about 1% of lb's CPU per proxied request.
func Read(fd int, p []byte) (int, error) { return rw(unix.SYS_RECVFROM, fd, p, 0) }

// Write writes to fd, a non-blocking socket, with a raw sendto(2),
// retrying on EINTR. It may write less than p (then the socket is full).
// A peer that is gone is unix.EPIPE, never a SIGPIPE (MSG_NOSIGNAL).
func Write(fd int, p []byte) (int, error) { return rw(unix.SYS_SENDTO, fd, p, unix.MSG_NOSIGNAL) }

// rw is recvfrom(2) or sendto(2), as trap says, without addresses.
func rw(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), flags, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}

// WriteAll writes p to fd, a non-blocking socket, until all of it is
// written, fd is full (unix.EAGAIN, returned as it is) or a write fails;
// n says what was written. A short write alone is not a full socket: a
// signal can end a write early, and Go's poller never reports room in a
// socket that was never full, so a caller that waited for room then would
// wait for nothing.
func WriteAll(fd int, p []byte) (n int, err error) {
	for n < len(p) {
		m, err := Write(fd, p[n:])
		n += m
		switch {
		case err != nil:
			return n, err
		case m == 0:
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}

// SpliceAll splices n bytes from in to out as WriteAll writes them: until
// all went, out is full (unix.EAGAIN) or a splice fails. A splice to a
// socket returns early, with part of the bytes, when a signal is pending
// (Go preempts goroutines with SIGURG).
func SpliceAll(in, out, n int) (done int, err error) {
	for done < n {
		m, err := Splice(in, out, n-done)
		done += m
		switch {
		case err != nil:
			return done, err
		case m == 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// Splice moves up to n bytes from in to out with splice(2), one of them a
// pipe, without blocking on the pipe (SPLICE_F_NONBLOCK) and moving pages
// where it can (SPLICE_F_MOVE), with a raw syscall, retrying on EINTR.
func Splice(in, out, n int) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}

// Conn is a TCP connection whose Read and Write make raw syscalls (see
// the package documentation); everything else is its *net.TCPConn's:
// deadlines, Close, CloseWrite, addresses. Its methods allocate nothing.
// Use Conn only where a byte stream is read or written through a buffer;
// where bytes go from socket to socket, pass the *net.TCPConn itself, so
// that they can be spliced.
type Conn struct {
	*net.TCPConn
	rc                                  syscall.RawConn
	onRead, onWrite, onSendRead, onHold func(fd uintptr) bool
	// A read and a write may run at once (a request body goes up while
	// the response comes down): each has its own state.
	rp, wp     []byte // what Read fills, what Write writes
	rn, wn     int    // bytes read, written of wp
	rerr, werr error  // the syscalls' errors
	// deferNext makes the next Write keep its bytes in pend, for the
	// next Read to send (DeferWrite); perr is the error of sending them.
	deferNext bool
	pend      []byte
	perr      error
	// hold is the function Hold runs; held says it runs (Read does not
	// wait then), on the socket hfd; drained says the last read within
	// it emptied the socket.
	hold    func() bool
	held    bool
	hfd     int
	drained bool
}

// New returns a Conn over c.
func New(c *net.TCPConn) (*Conn, error) {
	s := &Conn{}
	if err := s.Reset(c); err != nil {
		return nil, err
	}
	return s, nil
}

// Reset makes s a Conn over c (nil: over nothing), so that a Conn kept in
// a pool serves connection after connection.
func (s *Conn) Reset(c *net.TCPConn) error {
	if s.onRead == nil {
		s.onRead, s.onWrite, s.onSendRead, s.onHold = s.readSys, s.writeSys, s.sendReadSys, s.holdSys
	}
	s.TCPConn, s.rc = c, nil
	s.deferNext, s.pend, s.perr = false, nil, nil
	s.hold, s.held, s.drained = nil, false, false
	if c == nil {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	s.rc = rc
	return nil
}

// Read reads as net.Conn's Read does: io.EOF at the peer's end, the
// RawConn's error (a deadline that passed, a closed connection) as it is,
// and a syscall's error wrapped in a *net.OpError.
func (s *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.held {
		return s.readHeld(p)
	}
	s.rp, s.rn, s.rerr = p, 0, nil
	var err error
	if s.pend != nil {
		err = s.sendRead()
	} else {
		err = s.rc.Read(s.onRead)
	}
	s.rp = nil
	switch {
	case err != nil:
		return 0, err
	case s.perr != nil:
		err, s.perr = s.opError("write", s.perr), nil
		return 0, err
	case s.rerr != nil:
		return 0, s.opError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

func (s *Conn) readSys(fd uintptr) bool {
	n, err := Read(int(fd), s.rp)
	if err == unix.EAGAIN {
		return false
	}
	s.rn, s.rerr = n, err
	return true
}

// ErrWouldBlock is what Read returns within Hold when the socket has
// nothing to read yet.
var ErrWouldBlock = errors.New("sock: nothing to read yet")

// Hold runs fn within one read operation of Go's poller on the socket: at
// once, then each time the socket becomes readable, until fn reports true
// (done) or the wait fails (the read deadline passed, the connection was
// closed): Hold returns the wait's error then. Within fn, Read does not
// wait: it returns ErrWouldBlock when the socket has nothing, and fn
// returns false to wait for more. Writes may wait as usual.
//
// Go's poller forgets the socket's readiness when a read operation begins,
// so a connection that reads, answers and reads again makes a read that
// finds nothing before each wait. Within one operation it forgets nothing:
// once a read inside fn emptied the socket (Drained), every byte that
// arrives later wakes the wait, and fn may wait without reading first. A
// request and its response then cost a read and a write on this socket,
// as in HAProxy. fn must not call Hold, nor Read from another goroutine.
func (s *Conn) Hold(fn func() bool) error {
	s.hold, s.drained = fn, false
	err := s.rc.Read(s.onHold)
	s.hold, s.held = nil, false
	return err
}

func (s *Conn) holdSys(fd uintptr) bool {
	s.held, s.hfd = true, int(fd)
	done := s.hold()
	s.held = false
	return done
}

// Drained reports whether the last Read within Hold emptied the socket:
// it returned less than it was asked for, or nothing yet.
func (s *Conn) Drained() bool { return s.drained }

// readHeld is Read within Hold.
func (s *Conn) readHeld(p []byte) (int, error) {
	n, err := Read(s.hfd, p)
	switch {
	case err == unix.EAGAIN:
		s.drained = true
		return 0, ErrWouldBlock
	case err != nil:
		s.drained = false
		return 0, s.opError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	s.drained = n < len(p)
	return n, nil
}

// DeferWrite(true) makes the next Write (the last of a request, whose
// answer the next Read waits for) return at once, keeping its bytes, which
// must not change until then, for that Read to send: the Read writes them
// and waits for the answer in one go, so Go's poller needs no read that
// finds nothing yet between the two. DeferWrite(false) ends a deferral no
// Write took. Only one goroutine may write while a deferral is on, and
// none while the bytes wait.
func (s *Conn) DeferWrite(on bool) { s.deferNext = on }

// Pending reports whether a deferred Write's bytes wait for a Read.
func (s *Conn) Pending() bool { return s.pend != nil }

// sendRead is a Read after a deferred Write: it sends the bytes in the
// Read's own wait (sendReadSys). When the peer takes part of them only,
// the rest goes with an ordinary Write, and the read follows.
func (s *Conn) sendRead() error {
	err := s.rc.Read(s.onSendRead)
	if err != nil || s.pend == nil || s.perr != nil {
		s.pend = nil
		return err
	}
	rest := s.pend
	s.pend = nil
	if _, err := s.Write(rest); err != nil {
		return err
	}
	return s.rc.Read(s.onRead)
}

// sendReadSys writes the deferred bytes, then waits (false) for the
// answer without reading first: the Read began before the bytes went, so
// the poller records the answer's arrival. Later calls read.
func (s *Conn) sendReadSys(fd uintptr) bool {
	if s.pend == nil {
		return s.readSys(fd)
	}
	n, err := WriteAll(int(fd), s.pend)
	s.pend = s.pend[n:]
	switch {
	case err == unix.EAGAIN:
		return true // sendRead writes the rest
	case err != nil:
		s.perr = err
		return true
	}
	s.pend = nil
	return false
}

// Write writes all of p, waiting as long as the peer takes nothing (up to
// the write deadline), or keeps p for the next Read after DeferWrite.
func (s *Conn) Write(p []byte) (int, error) {
	if s.deferNext {
		s.deferNext = false
		if len(p) > 0 && s.pend == nil {
			s.pend = p
			return len(p), nil
		}
	}
	if s.pend != nil {
		// Bytes kept for a Read go first.
		rest := s.pend
		s.pend = nil
		if _, err := s.Write(rest); err != nil {
			return 0, err
		}
	}
	s.wp, s.wn, s.werr = p, 0, nil
	var err error
	for s.wn < len(p) && s.werr == nil && err == nil {
		err = s.rc.Write(s.onWrite)
	}
	n := s.wn
	s.wp = nil
	switch {
	case err != nil:
		return n, err
	case s.werr != nil:
		return n, s.opError("write", s.werr)
	}
	return n, nil
}

// writeSys writes what is left of wp; false waits until the peer takes
// more.
func (s *Conn) writeSys(fd uintptr) bool {
	n, err := WriteAll(int(fd), s.wp[s.wn:])
	s.wn += n
	if err == unix.EAGAIN {
		return false
	}
	s.werr = err
	return true
}

// opError wraps a syscall's error as net.Conn's do, so that callers that
// look for a *net.OpError, or for the errno with errors.Is, find it.
func (s *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// Bare returns the *net.TCPConn under c when c is a Conn, else c: what to
// copy from socket to socket, so that the bytes can be spliced.
func Bare(c net.Conn) net.Conn {
	if s, ok := c.(*Conn); ok {
		return s.TCPConn
	}
	return c
}
