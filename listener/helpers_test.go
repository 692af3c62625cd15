package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain fails the run if a goroutine started by this package's code or
// tests outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(3 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to wait for every goroutine running this
// package's code to end, and returns the stacks of those left.
func leakedGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "lb/listener.") && !strings.Contains(g, "lb/listener.TestMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bindT binds addr and closes the listener when the test ends.
func bindT(t *testing.T, addr string) *net.TCPListener {
	t.Helper()
	ln, err := Bind(context.Background(), addr)
	if err != nil {
		t.Fatalf("Bind(%q): %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// portOf returns ln's port as a string.
func portOf(ln net.Listener) string {
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// dialN opens n connections to addr one after the other and closes them
// when the test ends. Nobody needs to accept them: the kernel completes the
// handshakes into an accept queue.
func dialN(t *testing.T, addr string, n int) []*net.TCPConn {
	t.Helper()
	conns := make([]*net.TCPConn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.SetLinger(0)
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 2 * time.Second}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s (#%d): %v", addr, i, err)
		}
		conns = append(conns, c.(*net.TCPConn))
	}
	return conns
}

// waitQueueLen waits up to two seconds for ln's accept queue to hold want
// connections: the kernel may add the last ones a moment after the client's
// connect returns.
func waitQueueLen(t *testing.T, ln *net.TCPListener, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := QueueLen(ln)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener %s: accept queue holds %d connections, want %d", ln.Addr(), got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sockoptInt reads an integer socket option of ln.
func sockoptInt(t *testing.T, ln *net.TCPListener, level, opt int) int {
	t.Helper()
	var v int
	err := control(ln, "getsockopt", func(fd int) error {
		var err error
		v, err = unix.GetsockoptInt(fd, level, opt)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// hasIPv6 reports whether the loopback interface has ::1.
func hasIPv6() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// generation plays one lb process in the tests: an accept loop on a
// listener that answers every connection with the byte 'x'.
type generation struct {
	ln   *net.TCPListener
	done chan struct{}
	// accepted, when set, records the client address of every connection
	// accepted.
	accepted *sync.Map
}

// startGeneration starts accepting on ln.
func startGeneration(ln *net.TCPListener) *generation {
	return startGenerationLogged(ln, nil)
}

// startGenerationLogged starts accepting on ln, recording the client
// addresses in accepted.
func startGenerationLogged(ln *net.TCPListener, accepted *sync.Map) *generation {
	g := &generation{ln: ln, done: make(chan struct{}), accepted: accepted}
	go g.serve()
	return g
}

// serve accepts until the listener is closed.
func (g *generation) serve() {
	defer close(g.done)
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		if g.accepted != nil {
			g.accepted.Store(c.RemoteAddr().String(), true)
		}
		c.Write([]byte{'x'})
		c.Close()
	}
}

// stop closes the listener and waits for the accept loop to end.
func (g *generation) stop() {
	g.ln.Close()
	<-g.done
}

// fetch dials addr, reads the one byte a generation answers and closes the
// connection with a reset, so that no TIME_WAIT state is left behind to
// use up local ports.
func fetch(d *net.Dialer, addr string) error {
	_, err := fetchFrom(d, addr)
	return err
}

// fetchFrom is fetch that also returns the connection's local address, once
// it was connected.
func fetchFrom(d *net.Dialer, addr string) (local string, err error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	local = c.LocalAddr().String()
	return local, readX(c.(*net.TCPConn))
}

// readX reads the one byte a generation answers on tc, and closes it.
func readX(tc *net.TCPConn) error {
	defer func() {
		tc.SetLinger(0)
		tc.Close()
	}()
	tc.SetDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		return err
	}
	if b[0] != 'x' {
		return fmt.Errorf("read %q, want 'x'", b[0])
	}
	return nil
}
