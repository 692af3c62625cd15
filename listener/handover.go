package listener

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MaxHandover is the most listeners Send and Receive move in one message
// (the kernel takes at most 253 descriptors per message).
const MaxHandover = 200

// maxHeader bounds the size of a handover message's header.
const maxHeader = 1 << 20

// handoverVersion is the version of the handover message format.
const handoverVersion = 1

// Named is a listening socket and the configured bind address it serves.
type Named struct {
	// Bind is the address as the configuration writes it, which tells the
	// receiver what the listener is for.
	Bind string
	// Listener is the socket.
	Listener *net.TCPListener
}

// handoverHeader is the JSON header of a handover message. Listeners[i]
// describes the i-th descriptor of the message.
type handoverHeader struct {
	Version   int             `json:"version"`
	Listeners []handoverEntry `json:"listeners"`
}

// handoverEntry describes one listener of a handover message.
type handoverEntry struct {
	Bind string `json:"bind"`
}

// Send hands copies of the listening sockets lns to the process at the other
// end of c, a SOCK_STREAM unix socket, in one message: a 4-byte big-endian
// length, then a JSON header naming each Bind, with the descriptors attached
// (SCM_RIGHTS) in the same order. Receive reads it.
//
// The copies are the same sockets: both processes can accept on them, and
// the queues survive as long as either keeps them open. The sender's own
// listeners are left as they are (Send duplicates their descriptors and
// closes the duplicates once sent). At most MaxHandover listeners fit.
func Send(c *net.UnixConn, lns []Named) error {
	if len(lns) > MaxHandover {
		return fmt.Errorf("handover: %d listeners, at most %d fit in one message", len(lns), MaxHandover)
	}
	hdr := handoverHeader{Version: handoverVersion, Listeners: make([]handoverEntry, 0, len(lns))}
	fds := make([]int, 0, len(lns))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, n := range lns {
		if n.Listener == nil {
			return fmt.Errorf("handover: listener %s: nil *net.TCPListener", n.Bind)
		}
		var dup int
		err := control(n.Listener, "fcntl F_DUPFD_CLOEXEC", func(fd int) error {
			var err error
			dup, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return fmt.Errorf("handover: listener %s: %w", n.Bind, err)
		}
		fds = append(fds, dup)
		hdr.Listeners = append(hdr.Listeners, handoverEntry{Bind: n.Bind})
	}
	body, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("handover: encode header: %w", err)
	}
	if len(body) > maxHeader {
		return fmt.Errorf("handover: header of %d bytes, at most %d allowed", len(body), maxHeader)
	}
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	msg = append(msg, body...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(msg, oob, nil)
	if err == nil && n < len(msg) {
		// A stream socket may take part of the bytes; the descriptors
		// went with that part.
		_, err = c.Write(msg[n:])
	}
	if err != nil {
		return fmt.Errorf("handover: send %d listeners: %w", len(fds), err)
	}
	return nil
}

// Receive reads one message written by Send from c and returns the
// listeners in the order they were sent. It reads exactly the message's
// bytes, so c can carry more traffic afterwards. On error, every descriptor
// received is closed.
func Receive(c *net.UnixConn) ([]Named, error) {
	prefix := make([]byte, 4)
	oob := make([]byte, unix.CmsgSpace(MaxHandover*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(prefix, oob)
	fds, rightsErr := parseRights(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	switch {
	case err != nil:
		return nil, fmt.Errorf("handover: receive: %w", err)
	case rightsErr != nil:
		return nil, fmt.Errorf("handover: receive: %w", rightsErr)
	case flags&unix.MSG_CTRUNC != 0:
		return nil, fmt.Errorf("handover: receive: more than %d descriptors sent, or the process ran out of descriptors", MaxHandover)
	case flags&unix.MSG_TRUNC != 0:
		return nil, errors.New("handover: receive: message truncated (is the unix socket SOCK_STREAM?)")
	case n == 0:
		return nil, fmt.Errorf("handover: receive: %w", io.ErrUnexpectedEOF)
	}
	if _, err := io.ReadFull(c, prefix[n:]); err != nil {
		return nil, fmt.Errorf("handover: receive header length: %w", unexpectedEOF(err))
	}
	size := binary.BigEndian.Uint32(prefix)
	if size > maxHeader {
		return nil, fmt.Errorf("handover: header of %d bytes, at most %d allowed", size, maxHeader)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, fmt.Errorf("handover: receive header: %w", unexpectedEOF(err))
	}
	var hdr handoverHeader
	if err := json.Unmarshal(body, &hdr); err != nil {
		return nil, fmt.Errorf("handover: decode header: %w", err)
	}
	if hdr.Version != handoverVersion {
		return nil, fmt.Errorf("handover: message version %d, this lb reads version %d", hdr.Version, handoverVersion)
	}
	if len(hdr.Listeners) != len(fds) {
		return nil, fmt.Errorf("handover: header names %d listeners but %d descriptors came", len(hdr.Listeners), len(fds))
	}

	out := make([]Named, 0, len(fds))
	for i, fd := range fds {
		fds[i] = -1 // fileListener owns it now
		ln, err := fileListener(fd, hdr.Listeners[i].Bind)
		if err != nil {
			for _, n := range out {
				n.Listener.Close()
			}
			return nil, fmt.Errorf("handover: listener %s: %w", hdr.Listeners[i].Bind, err)
		}
		out = append(out, Named{Bind: hdr.Listeners[i].Bind, Listener: ln})
	}
	return out, nil
}

// parseRights returns every descriptor passed in the control messages oob,
// as many as it can read even when it also returns an error.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// fileListener turns a received descriptor into a *net.TCPListener. It
// takes ownership of fd: fd is closed whatever happens.
func fileListener(fd int, name string) (*net.TCPListener, error) {
	if err := checkListening(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net.FileListener works on a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	ln, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("got a %T, want a *net.TCPListener", l)
	}
	return ln, nil
}

// checkListening makes sure fd is a TCP socket in LISTEN state.
func checkListening(fd int) error {
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	}
	if proto != unix.IPPROTO_TCP {
		return fmt.Errorf("descriptor is not a TCP socket (protocol %d)", proto)
	}
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)
	}
	if accepting == 0 {
		return errors.New("descriptor is not a listening socket")
	}
	return nil
}

// unexpectedEOF turns io.EOF, which means the message ended early here,
// into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
