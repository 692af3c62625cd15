package e2e

// Tests of reload signals (README, "Signals").

import (
	"fmt"
	"os"
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
	dir := t.TempDir()
	sock, pidFile := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "lb.pid")
	port := freePort(t)
	p := startLB(t, "-p", pidFile, "-f", writeConfig(t, hfConfig(port, s, fmt.Sprintf("admin_socket = %q\nhandshake_grace = \"100ms\"", sock))))
	first := p.cmd.Process.Pid
	var second int
	t.Cleanup(func() { stopLBs(t, 15*time.Second, second) })
	waitPidFile(t, pidFile, 0, func() string { return p.stderr.String() })

	// The next generation waits for the reload lock (README, Reloads)
	// while another launch holds it: the test holds it for as long as it
	// needs.
	gate := hfHoldReloadLock(t, pidFile)
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
	// lb takes a signal within microseconds; the next generation waits for
	// the lock.
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

// hfHoldReloadLock takes the reload lock of pidFile, as a launch would,
// until the caller closes the file or the test ends.
func hfHoldReloadLock(t *testing.T, pidFile string) *os.File {
	t.Helper()
	path := filepath.Join(filepath.Dir(pidFile), "."+filepath.Base(pidFile)+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("reload lock %s: %v", path, err)
	}
	return f
}
