package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lb/internal/testsock"
)

// TestDetachAttach: a detached connection's socket stays open (the peer
// sees no end), keeps what arrives meanwhile, and serves both ways once
// attached, with the same addresses; the detached *net.TCPConn is closed.
func TestDetachAttach(t *testing.T) {
	server, client := testsock.Pair(t)
	local, peer := server.LocalAddr().String(), server.RemoteAddr().String()
	fd, err := Detach(server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on the detached TCPConn: %v, want it closed", err)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// The peer sees no end while the socket is detached.
	_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read %d bytes, %v; want a timeout", n, err)
	}
	c, err := Attach(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if fd == fdOf(t, c) {
		t.Errorf("the attached connection holds descriptor %d, Detach's, want a copy", fd)
	}
	if c.LocalAddr().String() != local || c.RemoteAddr().String() != peer {
		t.Errorf("attached %s -> %s, want %s -> %s", c.LocalAddr(), c.RemoteAddr(), local, peer)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	// Closing the attached connection ends the socket: no copy is left.
	c.Close()
	if n, err := client.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("client read %d bytes, %v after the close; want EOF", n, err)
	}
}

// fdOf returns c's descriptor.
func fdOf(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// TestAttachNotASocket: Attach of a descriptor that is no TCP socket fails
// and closes it.
func TestAttachNotASocket(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if c, err := Attach(p[0]); err == nil {
		c.Close()
		t.Fatal("Attach of a pipe worked")
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the pipe's read end after Attach: %v, want it closed (EBADF)", err)
	}
}
