package sock

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// An open *net.TCPConn costs the Go runtime more than its socket: a poll
// descriptor (512 bytes in Go 1.26, kept by the runtime for the next
// socket once the connection closes), the netFD, both addresses and a
// finalizer, about 0.9 KiB together. A connection that stays idle a long
// time need not keep them: Detach swaps the connection for its bare
// descriptor, and Attach makes a connection of it again when bytes come.
// A round trip costs a dozen syscalls (about 4µs), so only connections
// idle for a while are worth detaching.

// Detach returns a duplicate of c's descriptor and closes c: the socket
// stays open (the duplicate holds it), with all its state in the kernel,
// but the runtime forgets it. The caller owns the descriptor, and gives
// it to Attach or closes it (unix.Close). On an error c is left open.
func Detach(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("detach: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("detach: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("detach: dup: %w", derr)
	}
	if err := c.Close(); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("detach: %w", err)
	}
	return fd, nil
}

// errNotTCP is Attach of a descriptor that is not a TCP socket.
var errNotTCP = errors.New("attach: not a TCP socket")

// Attach makes a *net.TCPConn of fd, a descriptor that Detach returned,
// and closes fd: the connection holds a duplicate of its own. On an error
// fd is closed too, and the socket with it.
func Attach(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, errNotTCP
	}
	return tc, nil
}
