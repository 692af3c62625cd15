package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleConns is how many connections TestTCPIdleConnections holds through
// lb: 16,000 of lb's descriptors, under this machine's limit of 20,000;
// the test process holds as many again (its clients and its backend).
const idleConns = 8000

// fdCount returns how many descriptors process pid has open.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestTCPIdleConnections holds 8,000 TCP connections through lb under a
// limit of 20,000 descriptors: every one is served and echoes, lb holds 2
// descriptors for each (the client's and the server's: no pipe at rest),
// and a few KiB of memory; after a quiet while every connection still
// echoes (it woke from being parked).
func TestTCPIdleConnections(t *testing.T) {
	var lim [2]uint64
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				f := strings.Fields(l)
				lim[0], _ = strconv.ParseUint(f[3], 10, 64)
				lim[1], _ = strconv.ParseUint(f[4], 10, 64)
			}
		}
	}
	if lim[0] < 2*idleConns+1000 {
		t.Skipf("this process may open %d files; the test needs %d", lim[0], 2*idleConns+1000)
	}
	s := startBufferedServer(t, "s")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// lb without the race detector, whose memory would swamp lb's own.
	p := startProc(t, nil, memLB(t), "-f", writeConfig(t, config(port, "", serverLine(s.name, s.addr(), ""))))
	p.waitOutput(t, `"message":"lb started"`)
	pid := p.cmd.Process.Pid
	rss0, fds0 := vmRSS(t, pid), fdCount(t, pid)

	conns := make([]net.Conn, idleConns)
	readers := make([]*bufio.Reader, idleConns)
	var wg sync.WaitGroup
	errs := make(chan error, idleConns)
	const dialers = 16
	for d := range dialers {
		wg.Go(func() {
			for i := d; i < idleConns; i += dialers {
				c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
				if err != nil {
					errs <- fmt.Errorf("connection %d (the test holds %d descriptors): %w", i, fdCount(t, os.Getpid()), err)
					return
				}
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReaderSize(c, 64)
				if line, err := br.ReadString('\n'); err != nil || line != "s\n" {
					errs <- fmt.Errorf("connection %d: greeting %q, %v", i, line, err)
					c.Close()
					return
				}
				conns[i], readers[i] = c, br
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	echo := func(round string) {
		t.Helper()
		for d := range dialers {
			wg.Go(func() {
				for i := d; i < idleConns; i += dialers {
					msg := fmt.Sprintf("%s-%d\n", round, i)
					_ = conns[i].SetDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.WriteString(conns[i], msg); err != nil {
						errs <- fmt.Errorf("%s: connection %d: %w", round, i, err)
						return
					}
					if line, err := readers[i].ReadString('\n'); err != nil || line != msg {
						errs <- fmt.Errorf("%s: connection %d: echoed %q, %v", round, i, line, err)
						return
					}
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	echo("first")
	// Every connection at rest: parked, with nothing but its sockets.
	time.Sleep(2 * time.Second)
	rss, fds := vmRSS(t, pid), fdCount(t, pid)
	perConn := float64(rss-rss0) / 1024 / idleConns
	t.Logf("%d idle connections: %.2f fds and %.1f KiB each (lb's RSS %d -> %d KiB)", idleConns, float64(fds-fds0)/idleConns, perConn, rss0>>10, rss>>10)
	if d := fds - fds0; d > 2*idleConns+50 {
		t.Errorf("lb holds %d more descriptors for %d idle connections: more than 2 each (a splice pipe kept at rest?)", d, idleConns)
	}
	// HAProxy holds 3.3 KiB for each such connection (make bench-core);
	// lb used to hold 9-10 KiB and 6 descriptors.
	if perConn > 8 {
		t.Errorf("lb holds %.1f KiB for each idle connection, want at most 8", perConn)
	}
	echo("second")
}

// startBufferedServer is startServer whose echo copies through a buffer:
// io.Copy between two *net.TCPConn would splice, and Go's splice holds a
// pipe (two more descriptors) for every connection waiting for bytes,
// which 8,000 connections in this process cannot afford.
func startBufferedServer(t *testing.T, name string) *server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{name: name, ln: ln}
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.wg.Go(func() {
				defer c.Close()
				if _, err := io.WriteString(c, s.name+"\n"); err != nil {
					return
				}
				buf := make([]byte, 512)
				_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
			})
		}
	})
	t.Cleanup(s.close)
	return s
}
