package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fdConfig is a TCP frontend with maxconn in front of backend.
func fdConfig(port int, backend string, maxconn int) string {
	return fmt.Sprintf(`
[[frontend]]
name = "echo"
bind = ["127.0.0.1:%d"]
default_backend = "app"
maxconn = %d

[[backend]]
name = "app"
[backend.check]
type = "none"

[[backend.server]]
name = "s1"
address = %q
`, port, maxconn, backend)
}

// withNofile is the argv that runs argv with a soft and hard file
// descriptor limit of n (lb raises the soft limit to the hard one).
func withNofile(n int, argv ...string) []string {
	return append([]string{"/bin/sh", "-c", `ulimit -n ` + strconv.Itoa(n) + ` && exec "$0" "$@"`}, argv...)
}

// fdConn is a client connection through lb to a server of startServer.
type fdConn struct {
	net.Conn
	n int // the order in which it was opened, from 1
}

// dialFD connects to addr: with lb in front, this succeeds as soon as the
// kernel completed the handshake, whether lb accepted it or not.
func dialFD(t *testing.T, addr string, n int) *fdConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connection %d: dial %s: %v (new connections must complete in the kernel's accept queue)", n, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &fdConn{Conn: c, n: n}
}

// greeting reads the server's name ("s1\n") within d: nil when it came,
// os.ErrDeadlineExceeded when nothing came (the connection waits), or what
// ended the connection (EOF, reset).
func (c *fdConn) greeting(d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 3)
	n, err := io.ReadFull(c, buf)
	switch {
	case err == nil && string(buf) == "s1\n":
		return nil
	case err == nil, n > 0:
		return fmt.Errorf("connection %d: read %q, want the server's name", c.n, buf[:n])
	}
	return err
}

// waits checks that c is still waiting: nothing arrives within d, and the
// connection is neither closed nor reset.
func (c *fdConn) waits(t *testing.T, d time.Duration, why string) {
	t.Helper()
	if err := c.greeting(d); !errors.Is(err, os.ErrDeadlineExceeded) {
		if err == nil {
			t.Errorf("connection %d was served %s, want it to wait in the accept queue", c.n, why)
		} else {
			t.Errorf("connection %d %s: %v, want it to wait in the accept queue, not closed or reset", c.n, why, err)
		}
	}
}

// echoes checks that c still carries bytes both ways.
func (c *fdConn) echoes(t *testing.T, why string) {
	t.Helper()
	msg := fmt.Sprintf("ping %d\n", c.n)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Errorf("established connection %d %s: write: %v", c.n, why, err)
		return
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Errorf("established connection %d %s: echo %q, %v; want %q", c.n, why, buf, err, msg)
	}
}

// stallLines returns lb's lines about its stalled accept loop: failed
// accepts, or accepts held back for want of descriptors.
func stallLines(t *testing.T, p *lbProc) []map[string]any {
	t.Helper()
	return append(logPrefixed(p, "accept failed"), logPrefixed(p, "out of file descriptors")...)
}

// logPrefixed returns lb's JSON log lines whose message starts with prefix.
func logPrefixed(p *lbProc, prefix string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if msg, _ := m["message"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// checkStallRate checks that lb said its accept loop stalled, with a count,
// at most about once a second over the stall, which began at start.
func checkStallRate(t *testing.T, p *lbProc, start time.Time, count string) {
	t.Helper()
	lines := stallLines(t, p)
	elapsed := time.Since(start)
	if len(lines) == 0 {
		t.Errorf("no \"accept failed\" or \"out of file descriptors\" line after %v of stall; output:\n%s", elapsed, p.stderr)
		return
	}
	if most := int(elapsed.Seconds()) + 1; len(lines) > most {
		t.Errorf("%d stall lines in %v, want at most %d (one a second):\n%s", len(lines), elapsed.Round(time.Millisecond), most, p.stderr)
	}
	for _, m := range lines {
		if n, ok := m[count].(float64); !ok || n < 0 {
			t.Errorf("stall line without a %q count: %v", count, m)
			break
		}
	}
}

// TestFDLimitTooLowForMaxConn starts lb with a file descriptor limit far too
// low for its maxconn: lb -c and the start-up log warn and say what to set,
// and once the limit's share for connections is spent, new connections
// wait in the accept queue (they connect, and are served once established
// ones close) instead of being reset, while established ones carry on.
func TestFDLimitTooLowForMaxConn(t *testing.T) {
	const limit = 80
	backend := startServer(t, "s1")
	port := freePort(t)
	cfg := writeConfig(t, fdConfig(port, backend.addr(), 1000))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	r := runCmd(t, 30*time.Second, nil, withNofile(limit, lbBin, "-c", "-f", cfg)...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "configuration is valid" {
		t.Errorf("lb -c with a limit too low: want exit 0 and \"configuration is valid\" (a warning, not an error); %v", r)
	}
	for _, want := range []string{"lb: warning: the file descriptor limit (80) is below what the configuration needs (2065",
		"LimitNOFILE=2065", `"ulimit -n 2065"`, `"docker run --ulimit nofile=2065:2065"`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("lb -c stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	p := startProc(t, nil, withNofile(limit, lbBin, "-f", cfg)...)
	p.waitOutput(t, `"message":"lb started"`)
	budget := -1
	if info := p.logLines(t, "file descriptors"); len(info) != 1 {
		t.Errorf("%d \"file descriptors\" start-up lines, want 1", len(info))
	} else {
		if info[0]["fd_limit"] != float64(limit) || info[0]["fd_need"] != 2065.0 {
			t.Errorf("start-up line: %v, want fd_limit %d, fd_need 2065", info[0], limit)
		}
		b, _ := info[0]["fd_budget"].(float64)
		budget = int(b)
	}
	warned := false
	for _, m := range logPrefixed(p, "file descriptor limit too low") {
		if m["level"] == "warn" {
			warned = true
			if fix, _ := m["fix"].(string); !strings.Contains(fix, "LimitNOFILE=2065") || !strings.Contains(fix, "ulimit -n 2065") ||
				!strings.Contains(fix, "--ulimit nofile=2065:2065") {
				t.Errorf("warning's fix: %q", fix)
			}
		}
	}
	if !warned {
		t.Errorf("no start-up warning that the limit is too low; output:\n%s", p.stderr)
	}

	// Open connections one at a time until one is not served: that one
	// and the next must wait, not be reset.
	var served []*fdConn
	var first *fdConn
	var start, dialed time.Time // start: when the last connection served was dialed
	for n := 1; n <= limit; n++ {
		start, dialed = dialed, time.Now()
		c := dialFD(t, addr, n)
		err := c.greeting(2 * time.Second)
		if err == nil {
			served = append(served, c)
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d, past what the limit covers (%d served): %v; want it to wait in the accept queue, not closed or reset",
				n, len(served), err)
		}
		first = c
		break
	}
	if first == nil {
		t.Fatalf("%d connections served with a file descriptor limit of %d", len(served), limit)
	}
	if budget > 0 && len(served) != budget/2 {
		t.Errorf("%d connections served, want %d: fd_budget %d, 2 descriptors each", len(served), budget/2, budget)
	}
	if len(served) < 3 {
		t.Fatalf("only %d connections served under a limit of %d", len(served), limit)
	}
	waiting := []*fdConn{first}
	for i := range 3 {
		waiting = append(waiting, dialFD(t, addr, first.n+1+i))
	}
	for _, c := range served {
		c.echoes(t, "while new ones wait")
	}
	for _, c := range waiting[1:] {
		c.waits(t, time.Second, "past the limit")
	}
	if d := time.Until(start.Add(4500 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
	checkStallRate(t, p, start, "queued")

	// Two established connections end: the first two waiting ones are
	// served, in order; the others still wait.
	served[0].Close()
	served[1].Close()
	for _, c := range waiting[:2] {
		if err := c.greeting(10 * time.Second); err != nil {
			t.Errorf("connection %d, waiting, once two established ones closed: %v; want it served", c.n, err)
			continue
		}
		c.echoes(t, "once served")
	}
	for _, c := range waiting[2:] {
		c.waits(t, time.Second, "while the limit is still spent")
	}
	for _, c := range served[2:] {
		c.echoes(t, "after the wait")
	}
	if n := len(p.logLines(t, "accepting again")); n == 0 {
		t.Errorf("no \"accepting again\" line once connections were accepted again")
	}
}

// TestFDLimitReachedAtRunTime lowers a running lb's file descriptor limit
// below what it holds, so that accept fails with EMFILE: new connections
// wait in the accept queue, established ones carry on, the log says so once
// a second with the number of failed accepts rather than once a failure,
// and once the limit is back, the waiting connections are served and one
// line says so.
func TestFDLimitReachedAtRunTime(t *testing.T) {
	backend := startServer(t, "s1")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startLB(t, "-f", writeConfig(t, fdConfig(port, backend.addr(), 100)))
	pid := p.cmd.Process.Pid
	var established []*fdConn
	for n := 1; n <= 2; n++ {
		c := dialFD(t, addr, n)
		if err := c.greeting(10 * time.Second); err != nil {
			t.Fatalf("connection %d: %v", n, err)
		}
		established = append(established, c)
	}

	// The lowest descriptor number lb does not use: as the soft limit,
	// no new descriptor fits under it.
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatalf("lb's file descriptor limit (prlimit): %v", err)
	}
	free := lowestFreeFD(t, pid)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free), Max: old.Max}, nil); err != nil {
		t.Skipf("cannot lower lb's file descriptor limit (prlimit): %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
				t.Errorf("restoring lb's file descriptor limit: %v", err)
			}
		}
	}
	t.Cleanup(restore)
	start := time.Now()
	var waiting []*fdConn
	for n := 3; n <= 5; n++ {
		waiting = append(waiting, dialFD(t, addr, n))
	}
	for _, c := range waiting {
		c.waits(t, 1500*time.Millisecond, "while lb is out of file descriptors")
	}
	for _, c := range established {
		c.echoes(t, "while lb is out of file descriptors")
	}
	if d := time.Until(start.Add(3500 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
	checkStallRate(t, p, start, "failed")
	failed := 0
	for _, m := range stallLines(t, p) {
		if !strings.HasPrefix(m["message"].(string), "accept failed: out of file descriptors") ||
			!strings.Contains(fmt.Sprint(m["error"]), "too many open files") || m["fd_limit"] != float64(free) {
			t.Errorf("accept failed line: %v; want EMFILE, the limit (%d) and what to do", m, free)
			break
		}
		n, _ := m["failed"].(float64)
		failed += int(n)
	}
	if lines := len(stallLines(t, p)); failed <= lines {
		t.Errorf("%d failed accepts counted in %d lines: lb retries several times a second, want more failures than lines", failed, lines)
	}

	restore()
	for _, c := range waiting {
		if err := c.greeting(10 * time.Second); err != nil {
			t.Errorf("connection %d, waiting, once the limit is back: %v; want it served", c.n, err)
		}
	}
	for _, c := range append(established, waiting...) {
		c.echoes(t, "once the limit is back")
	}
	again := p.logLines(t, "accepting again")
	if len(again) != 1 {
		t.Fatalf("%d \"accepting again\" lines, want 1:\n%s", len(again), p.stderr)
	}
	if s, _ := again[0]["stalled"].(float64); s < 3000 {
		t.Errorf("accepting again after a stall of %v ms, want at least 3000: %v", again[0]["stalled"], again[0])
	}
}

// lowestFreeFD returns the lowest descriptor number that pid does not use.
func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			used[n] = true
		}
	}
	n := 0
	for used[n] {
		n++
	}
	return n
}
