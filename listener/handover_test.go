package listener

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a SOCK_STREAM unix socket pair.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// acceptWithin accepts one connection on ln or fails after two seconds.
func acceptWithin(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(2 * time.Second))
	defer ln.SetDeadline(time.Time{})
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept on %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestHandover(t *testing.T) {
	a := bindT(t, "127.0.0.1:0")
	b := bindT(t, "127.0.0.1:0")
	queued := dialN(t, a.Addr().String(), 1)[0]
	waitQueueLen(t, a, 1)

	sender, receiver := socketPair(t)
	sent := []Named{{Bind: "127.0.0.1:" + portOf(a), Listener: a}, {Bind: ":" + portOf(b), Listener: b}}
	errc := make(chan error, 1)
	go func() { errc <- Send(sender, sent) }()
	got, err := Receive(receiver)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		t.Cleanup(func() { n.Listener.Close() })
	}
	if len(got) != len(sent) {
		t.Fatalf("received %d listeners, want %d", len(got), len(sent))
	}
	for i := range sent {
		if got[i].Bind != sent[i].Bind || got[i].Listener.Addr().String() != sent[i].Listener.Addr().String() {
			t.Errorf("listener %d: received %s on %s, want %s on %s", i,
				got[i].Bind, got[i].Listener.Addr(), sent[i].Bind, sent[i].Listener.Addr())
		}
	}

	// The receiver's copy is the same socket: it accepts what was queued.
	c := acceptWithin(t, got[0].Listener)
	if c.RemoteAddr().String() != queued.LocalAddr().String() {
		t.Errorf("received listener accepted %s, want the queued %s", c.RemoteAddr(), queued.LocalAddr())
	}

	// The sender's listener is untouched: still non-blocking (deadlines
	// work) and accepting.
	if flags := fcntlFlags(t, a); flags&unix.O_NONBLOCK == 0 {
		t.Error("the sender's listener lost O_NONBLOCK")
	}
	dialN(t, a.Addr().String(), 1)
	acceptWithin(t, a)

	// Once the sender closes its listener, the receiver's goes on.
	a.Close()
	dialN(t, got[0].Listener.Addr().String(), 1)
	acceptWithin(t, got[0].Listener)
	dialN(t, got[1].Listener.Addr().String(), 1)
	acceptWithin(t, got[1].Listener)
}

// fcntlFlags returns the file status flags of ln's descriptor.
func fcntlFlags(t *testing.T, ln *net.TCPListener) int {
	t.Helper()
	var flags int
	err := control(ln, "fcntl F_GETFL", func(fd int) error {
		var err error
		flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

func TestHandoverOverUnixListenerKeepsStream(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	path := filepath.Join(t.TempDir(), "admin.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()

	errc := make(chan error, 1)
	go func() {
		c, err := ul.AcceptUnix()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		if err := Send(c, []Named{{Bind: "main", Listener: ln}}); err != nil {
			errc <- err
			return
		}
		_, err = c.Write([]byte("after\n"))
		errc <- err
	}()

	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := Receive(c)
	if err != nil {
		t.Fatal(err)
	}
	defer got[0].Listener.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "after\n" {
		t.Errorf("after the handover read %q, %v; want %q", line, err, "after\n")
	}
	if len(got) != 1 || got[0].Bind != "main" {
		t.Fatalf("received %+v", got)
	}
}

func TestHandoverEmpty(t *testing.T) {
	sender, receiver := socketPair(t)
	if err := Send(sender, nil); err != nil {
		t.Fatal(err)
	}
	got, err := Receive(receiver)
	if err != nil || len(got) != 0 {
		t.Fatalf("Receive = %v, %v; want no listeners", got, err)
	}
}

func TestSendTooMany(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	sender, _ := socketPair(t)
	lns := make([]Named, MaxHandover+1)
	for i := range lns {
		lns[i] = Named{Bind: fmt.Sprint(i), Listener: ln}
	}
	err := Send(sender, lns)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxHandover)) {
		t.Fatalf("Send of %d listeners: %v, want an error naming the limit", len(lns), err)
	}
}

// sendRaw writes a handover message with any header and descriptors.
func sendRaw(t *testing.T, c *net.UnixConn, header string, fds ...int) {
	t.Helper()
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(header)))
	msg = append(msg, header...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(msg, oob, nil); err != nil {
		t.Fatal(err)
	}
}

// listenerFD returns a duplicate of ln's descriptor, closed when the test
// ends.
func listenerFD(t *testing.T, ln interface {
	File() (*os.File, error)
}) int {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

func TestReceiveRejects(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	conn := dialN(t, ln.Addr().String(), 1)[0]
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	tests := []struct {
		name   string
		header string
		fds    []int
		want   string
	}{
		{"count mismatch", `{"version":1,"listeners":[{"bind":"a"},{"bind":"b"}]}`, []int{listenerFD(t, ln)}, "names 2 listeners but 1 descriptors"},
		{"connection", `{"version":1,"listeners":[{"bind":"a"}]}`, []int{listenerFD(t, conn)}, "not a listening socket"},
		{"udp", `{"version":1,"listeners":[{"bind":"a"}]}`, []int{listenerFD(t, udp)}, "not a TCP socket"},
		{"version", `{"version":2,"listeners":[]}`, nil, "version 2"},
		{"json", `{"version":`, nil, "decode header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sender, receiver := socketPair(t)
			before := openFDs(t)
			sendRaw(t, sender, tt.header, tt.fds...)
			got, err := Receive(receiver)
			if err == nil {
				t.Fatalf("Receive = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Receive: %v, want an error about %q", err, tt.want)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after the failed Receive, %d before", after, before)
			}
		})
	}
}

func TestReceiveEOF(t *testing.T) {
	sender, receiver := socketPair(t)
	sender.Close()
	if got, err := Receive(receiver); err == nil {
		t.Fatalf("Receive from a closed peer = %+v", got)
	}
}
