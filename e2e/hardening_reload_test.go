package e2e

// Tests of reload signals (README, "Signals").

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// coalescedMsg is the line a generation logs when reload signals arrived
// while its successor was starting.
const coalescedMsg = "reload: more SIGHUP/SIGUSR2 signals arrived while the next generation was starting: coalesced into this reload " +
	"(signals: how many lb received, at least; if the configuration changed after the reload began, reload again)"

// A burst of SIGHUPs makes one reload: one successor takes over, and the
// signals that arrived while it started are reported in one line.
func TestReloadSignalBurstIsCoalesced(t *testing.T) {
	s := startServer(t, "s")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, hfConfig(port, s, fmt.Sprintf("admin_socket = %q\nhandshake_grace = \"100ms\"", sock))))
	first := p.cmd.Process.Pid
	var second int
	t.Cleanup(func() { stopLBs(t, 15*time.Second, second) })

	// The next generation waits to bind while another socket than the
	// serving one listens on the address (README, Reloads, step 2): this
	// one holds the reload in its start for as long as the test needs.
	gate := hfJoinGroup(t, port)
	// The first SIGHUP alone, then 49 more once lb says it is starting the
	// next generation: sent all at once, before lb took the first, the
	// kernel and Go would merge them and leave nothing to coalesce.
	const burst = 50
	if err := syscall.Kill(first, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, `"message":"reload: starting the next generation"`)
	for range burst - 1 {
		if err := syscall.Kill(first, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// lb takes a signal within microseconds; the next generation waits up
	// to 10 s for the gate.
	time.Sleep(2 * time.Second)
	gate.Close()
	waitGone(t, first, "the generation that got the SIGHUPs")

	info := adminQuery(t, sock, "show info")
	m := regexp.MustCompile(`pid: (\d+)\ngeneration: 2\n`).FindStringSubmatch(info)
	if m == nil || !strings.Contains(info, "state: serving\n") {
		t.Fatalf("after %d SIGHUPs, show info:\n%s\nlog:\n%s", burst, info, p.stderr)
	}
	second, _ = strconv.Atoi(m[1])
	if second == first || !isLB(second) {
		t.Fatalf("after %d SIGHUPs, the admin socket leads to pid %d (the first generation was %d)", burst, second, first)
	}
	expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	// The first generation has exited: every reload it started is logged.
	if starts := p.logLines(t, "reload: starting the next generation"); len(starts) != 1 {
		t.Errorf("%d reloads started, want 1:\n%s", len(starts), p.stderr)
	}
	if served := p.logLines(t, "reload: the next generation is serving"); len(served) != 1 || served[0]["new_pid"] != float64(second) {
		t.Errorf("want one line saying pid %d serves; got %v", second, served)
	}
	lines := p.logLines(t, coalescedMsg)
	if len(lines) != 1 {
		t.Fatalf("%d lines say signals were coalesced, want 1:\n%s", len(lines), p.stderr)
	}
	t.Logf("%d SIGHUPs sent, %v received while the next generation started", burst, lines[0]["signals"])
	if n, _ := lines[0]["signals"].(float64); n < 1 || n > burst-1 || lines[0]["pid"] != float64(first) {
		t.Errorf("coalesced line %v: want signals from 1 to %d, from pid %d", lines[0], burst-1, first)
	}
}

// hfJoinGroup listens on 127.0.0.1:port next to lb, in the same
// SO_REUSEPORT group, until the test ends or the caller closes it. lb
// steers every new connection to its own socket, so this one gets none.
func hfJoinGroup(t *testing.T, port int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	ln, err := lc.Listen(context.Background(), "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("joining lb's SO_REUSEPORT group on port %d: %v", port, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
