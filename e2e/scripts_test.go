package e2e

// Tests of the operator scripts in scripts/: each runs the script for real,
// with the lb binary under test, on loopback in front of real backends.
// Helpers used only here are prefixed with scr; those shared with the
// other test files of the package are in main_test.go.

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// scrPath returns the absolute path of scripts/name.
func scrPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "scripts", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// scrSetup is one lb installation in a temporary directory: its live
// configuration, pid file, admin socket and (optionally) log file.
type scrSetup struct {
	dir, config, pidFile, admin, logFile string
	port                                 int
	addr                                 string
}

// newScrSetup makes a setup. With logFile, lb logs to a file, where a
// daemon's data race reports go too once it lets its stderr go; the file
// is checked for data races when the test ends.
func newScrSetup(t *testing.T, logFile bool) *scrSetup {
	t.Helper()
	dir := t.TempDir()
	s := &scrSetup{
		dir:     dir,
		config:  filepath.Join(dir, "lb.toml"),
		pidFile: filepath.Join(dir, "lb.pid"),
		admin:   filepath.Join(dir, "admin.sock"),
		port:    freePort(t),
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	if logFile {
		s.logFile = filepath.Join(dir, "lb.log")
		t.Cleanup(func() {
			b, _ := os.ReadFile(s.logFile)
			checkRace(t, s.logFile, string(b))
		})
	}
	return s
}

// text is a configuration with one frontend on s.port in front of backend.
func (s *scrSetup) text(backend *server) string {
	logLine := ""
	if s.logFile != "" {
		logLine = fmt.Sprintf("log_file = %q\n", s.logFile)
	}
	return fmt.Sprintf(`[global]
pid_file = %q
admin_socket = %q
%shandshake_grace = "100ms"
hard_stop_after = "1m"

[defaults.timeout]
connect = "2s"

[[frontend]]
name = "web"
bind = [%q]
default_backend = "app"

[[backend]]
name = "app"

[[backend.server]]
name = %q
address = %q
`, s.pidFile, s.admin, logLine, s.addr, backend.name, backend.addr())
}

// write replaces the live configuration atomically.
func (s *scrSetup) write(t *testing.T, text string) {
	t.Helper()
	tmp := s.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.config); err != nil {
		t.Fatal(err)
	}
}

// live returns the live configuration.
func (s *scrSetup) live(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// env is the environment for the scripts: LB_BIN, LB_CONFIG and LB_PIDFILE
// point at this setup, then extra.
func (s *scrSetup) env(extra ...string) []string {
	env := append(os.Environ(), "LB_BIN="+lbBin, "LB_CONFIG="+s.config, "LB_PIDFILE="+s.pidFile)
	return append(env, extra...)
}

// pid returns the pid in the pid file, or 0.
func (s *scrSetup) pid() int { return readPid(s.pidFile) }

// waitPid waits up to 20 s for the pid file to name a live process other
// than old, and returns it.
func (s *scrSetup) waitPid(t *testing.T, old int) int {
	t.Helper()
	return waitPidFile(t, s.pidFile, old, nil)
}

// scrPids remembers the lb pids a test saw, and pid files to read when the
// test ends; then it stops those still running (SIGTERM, then SIGKILL after
// 10 s). A test that fails half way thus leaves no lb behind.
type scrPids struct {
	mu    sync.Mutex
	seen  []int
	files []string
}

// scrTrack also makes every lb process that the test starts exit quickly
// (the race detector otherwise sleeps 1 s at exit, which -c and -D
// commands pay every time).
func scrTrack(t *testing.T, pidFiles ...string) *scrPids {
	t.Setenv("GORACE", strings.TrimSpace("atexit_sleep_ms=50 "+os.Getenv("GORACE")))
	p := &scrPids{files: pidFiles}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.files {
			if pid := readPid(f); pid > 0 {
				p.seen = append(p.seen, pid)
			}
		}
		stopLBs(t, 10*time.Second, p.seen...)
	})
	return p
}

func (p *scrPids) add(pids ...int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pid := range pids {
		if pid > 0 {
			p.seen = append(p.seen, pid)
		}
	}
}

// scrEcho checks that c still carries bytes both ways.
func scrEcho(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "still there?\n"); err != nil {
		t.Fatalf("held connection: %v", err)
	}
	buf := make([]byte, len("still there?\n"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still there?\n" {
		t.Fatalf("held connection: echo %q, %v", buf, err)
	}
}

// --- entrypoint.sh ---

func TestEntrypointReloadsAndStops(t *testing.T) {
	a, b := startServer(t, "A"), startServer(t, "B")
	s := newScrSetup(t, false) // lb logs to the entrypoint's stderr
	s.write(t, s.text(a))
	pids := scrTrack(t, s.pidFile)
	ep := startProc(t, s.env(), "sh", scrPath(t, "entrypoint.sh"))
	epPid := ep.cmd.Process.Pid

	waitPort(t, s.port)
	cur := s.waitPid(t, 0)
	pids.add(cur)
	if _, ppid, _ := procStat(cur); ppid != epPid {
		t.Fatalf("lb (pid %d) is a child of pid %d, not of the entrypoint (pid %d)", cur, ppid, epPid)
	}
	expectAnswer(t, s.addr, "A")
	name, held := holdConn(t, s.addr)
	defer held.Close()
	if name != "A" {
		t.Fatalf("held connection answered by %q, want %q", name, "A")
	}
	load := startLoadEvery(s.addr, 2, math.MaxInt, 5*time.Millisecond)

	gens := []int{cur}
	for i, next := range []*server{b, a, b} {
		s.write(t, s.text(next))
		if err := ep.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		cur = s.waitPid(t, cur)
		pids.add(cur)
		gens = append(gens, cur)
		if _, ppid, _ := procStat(cur); ppid != epPid {
			t.Fatalf("reload %d: lb (pid %d) is a child of pid %d, not of the entrypoint (pid %d)", i+1, cur, ppid, epPid)
		}
		expectAnswer(t, s.addr, next.name)
	}
	// The first generation still serves the connection it had.
	scrEcho(t, held)
	held.Close()
	// Every old generation exits, and the entrypoint reaps it.
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range gens[:3] {
		for {
			state, ppid, ok := procStat(pid)
			if !ok || ppid != epPid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("old generation %d not gone 15s after the reloads (state %c); output:\n%s", pid, state, ep.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A reload with a broken configuration fails and changes nothing.
	s.write(t, "[[frontend]\nthis is not TOML\n")
	if err := ep.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ep.waitOutput(t, "reload failed")
	time.Sleep(200 * time.Millisecond)
	if p := s.pid(); p != cur {
		t.Fatalf("after a failed reload the pid file holds %d, want %d", p, cur)
	}
	if !alive(cur) || !ep.running() {
		t.Fatalf("after a failed reload: lb alive %v, entrypoint running %v; output:\n%s", alive(cur), ep.running(), ep.stderr)
	}
	expectAnswer(t, s.addr, "B")

	// A configuration that passes lb -c but cannot start (a second
	// frontend's address is taken): the new generation exits, the old one
	// keeps serving.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s.write(t, s.text(b)+fmt.Sprintf("\n[[frontend]]\nname = \"taken\"\nbind = [%q]\ndefault_backend = \"app\"\n", busy.Addr()))
	if err := ep.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ep.waitOutput(t, "before it served")
	if p := s.pid(); p != cur || !alive(cur) || !ep.running() {
		t.Fatalf("after a failed start: pid file %d, want %d (alive %v); entrypoint running %v; output:\n%s",
			p, cur, alive(cur), ep.running(), ep.stderr)
	}
	expectAnswer(t, s.addr, "B")
	if ok, failed, errs := load.finish(); failed > 0 || ok == 0 {
		t.Errorf("connections during the reloads: %d worked, %d failed; first errors: %v", ok, failed, errs)
	}

	// SIGTERM: every generation stops and the entrypoint exits 0.
	start := time.Now()
	if err := ep.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := ep.exitCodeWithin(t, 5*time.Second); code != 0 {
		t.Fatalf("entrypoint exited with status %d after SIGTERM; output:\n%s", code, ep.stderr)
	}
	t.Logf("entrypoint exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	for _, pid := range gens {
		if alive(pid) {
			t.Errorf("generation %d still running after the entrypoint exited", pid)
		}
	}
}

func TestEntrypointExitStatus(t *testing.T) {
	t.Run("bad config at start", func(t *testing.T) {
		s := newScrSetup(t, false)
		s.write(t, "not = [valid\n")
		scrTrack(t, s.pidFile)
		ep := startProc(t, s.env(), "sh", scrPath(t, "entrypoint.sh"))
		if code := ep.exitCode(t); code != 1 {
			t.Fatalf("entrypoint exited with status %d, want 1 (lb's); output:\n%s", code, ep.stderr)
		}
	})
	t.Run("arguments and lb's own exit", func(t *testing.T) {
		a := startServer(t, "A")
		s := newScrSetup(t, false)
		s.write(t, s.text(a))
		// Extra arguments go to lb: a second file adds a frontend.
		port2 := freePort(t)
		extra := writeConfig(t, fmt.Sprintf("[[frontend]]\nname = \"second\"\nbind = [\"127.0.0.1:%d\"]\ndefault_backend = \"app\"\n", port2))
		pids := scrTrack(t, s.pidFile)
		ep := startProc(t, s.env(), "sh", scrPath(t, "entrypoint.sh"), "-f", extra)
		waitPort(t, s.port)
		waitPort(t, port2)
		pid := s.waitPid(t, 0)
		pids.add(pid)
		expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port2), "A")
		// When the last generation exits on its own, the entrypoint exits
		// with its status.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := ep.exitCodeWithin(t, 10*time.Second); code != 128+int(syscall.SIGKILL) {
			t.Fatalf("entrypoint exited with status %d, want %d; output:\n%s", code, 128+int(syscall.SIGKILL), ep.stderr)
		}
	})
}

// --- safe-reload.sh ---

func TestSafeReload(t *testing.T) {
	a, b := startServer(t, "A"), startServer(t, "B")
	s := newScrSetup(t, true)
	s.write(t, s.text(a))
	pids := scrTrack(t, s.pidFile)
	if code, _, stderr := runLB(t, "-f", s.config, "-p", s.pidFile, "-D"); code != 0 {
		t.Fatalf("lb -D: exit status %d; stderr:\n%s", code, stderr)
	}
	p1 := s.waitPid(t, 0)
	pids.add(p1)
	waitPort(t, s.port)
	expectAnswer(t, s.addr, "A")
	script := scrPath(t, "safe-reload.sh")
	env := s.env()

	// A valid new configuration goes live.
	textB := s.text(b)
	newB := writeConfig(t, textB)
	if r := runCmd(t, time.Minute, env, "sh", script, newB); r.code != 0 {
		t.Fatalf("safe-reload with a valid configuration: %v", r)
	}
	p2 := s.pid()
	pids.add(p2)
	if p2 == p1 || !alive(p2) {
		t.Fatalf("after safe-reload the pid file holds %d (was %d)", p2, p1)
	}
	expectAnswer(t, s.addr, "B")
	if got := s.live(t); got != textB {
		t.Fatalf("live configuration after safe-reload:\n%s\nwant:\n%s", got, textB)
	}
	if prev, _ := os.ReadFile(s.config + ".prev"); string(prev) != s.text(a) {
		t.Fatalf("%s.prev:\n%s\nwant the previous configuration", s.config, prev)
	}
	waitGone(t, p1, "the replaced generation")
	// kept checks that, after a safe-reload that failed, configuration B
	// is still (or again) the live one and p2 still serves it.
	kept := func(t *testing.T, after string) {
		t.Helper()
		if got := s.live(t); got != textB {
			t.Fatalf("live configuration after %s:\n%s\nwant:\n%s", after, got, textB)
		}
		if p := s.pid(); p != p2 || !alive(p2) {
			t.Fatalf("after %s the pid file holds %d, want %d (alive: %v)", after, p, p2, alive(p2))
		}
		expectAnswer(t, s.addr, "B")
	}

	// An invalid configuration changes nothing.
	bad := writeConfig(t, "[[frontend]]\nname = 1\n")
	r := runCmd(t, time.Minute, env, "sh", script, bad)
	if r.code != 1 || !strings.Contains(r.stderr, "invalid") {
		t.Fatalf("safe-reload with an invalid configuration: %v; want status 1", r)
	}
	kept(t, "a refused safe-reload")

	// A configuration that passes lb -c but cannot start (its second
	// frontend's address is taken): the previous configuration is put back.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	unstartable := writeConfig(t, textB+fmt.Sprintf("\n[[frontend]]\nname = \"taken\"\nbind = [%q]\ndefault_backend = \"app\"\n", busy.Addr()))
	if r := runCmd(t, time.Minute, nil, lbBin, "-c", "-f", unstartable); r.code != 0 {
		t.Fatalf("the unstartable configuration should pass lb -c: %v", r)
	}
	r = runCmd(t, time.Minute, env, "sh", script, unstartable)
	if r.code != 4 {
		t.Fatalf("safe-reload with a configuration that cannot start: %v; want status 4", r)
	}
	kept(t, "a failed reload")

	// Two runs at once: the second is refused by the lock. The first one's
	// lb is slow: a wrapper waits 2 s on its first call, once the lock is
	// taken.
	marker := filepath.Join(s.dir, "first-run-has-the-lock")
	wrapper := filepath.Join(s.dir, "slow-lb")
	wrapperText := fmt.Sprintf("#!/bin/sh\nif [ ! -e %q ]; then : >%q; sleep 2; fi\nexec %q \"$@\"\n", marker, marker, lbBin)
	if err := os.WriteFile(wrapper, []byte(wrapperText), 0o755); err != nil {
		t.Fatal(err)
	}
	textA := s.text(a)
	newA := writeConfig(t, textA)
	first := startProc(t, s.env("LB_BIN="+wrapper), "sh", script, newA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) || !first.running() {
			t.Fatalf("the first safe-reload did not get to lb; output:\n%s", first.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = runCmd(t, time.Minute, env, "sh", script, newB)
	if r.code != 3 || !strings.Contains(r.stderr, "another reload") {
		t.Fatalf("a second safe-reload during the first: %v; want status 3", r)
	}
	if code := first.exitCodeWithin(t, 30*time.Second); code != 0 {
		t.Fatalf("the first safe-reload: exit status %d; output:\n%s", code, first.stderr)
	}
	p3 := s.pid()
	pids.add(p3)
	if p3 == p2 || !alive(p3) {
		t.Fatalf("after the first safe-reload the pid file holds %d (was %d)", p3, p2)
	}
	expectAnswer(t, s.addr, "A")
	if got := s.live(t); got != textA {
		t.Fatalf("live configuration:\n%s\nwant:\n%s", got, textA)
	}
}

// --- lb.init ---

func TestInitScript(t *testing.T) {
	a, b := startServer(t, "A"), startServer(t, "B")
	s := newScrSetup(t, true)
	s.pidFile = filepath.Join(s.dir, "run", "lb.pid") // its directory is made by start
	s.write(t, s.text(a))
	pids := scrTrack(t, s.pidFile)
	env := s.env("LB_DEFAULTS="+filepath.Join(s.dir, "no-such-defaults"), "LB_STOP_TIMEOUT=10")
	script := scrPath(t, "lb.init")
	run := func(action string) cmdResult {
		t.Helper()
		return runCmd(t, time.Minute, env, "sh", script, action)
	}
	expect := func(action string, code int) cmdResult {
		t.Helper()
		r := run(action)
		if r.code != code {
			t.Fatalf("lb.init %s: %v; want exit status %d", action, r, code)
		}
		return r
	}

	expect("status", 3)
	expect("start", 0)
	p1 := s.waitPid(t, 0)
	pids.add(p1)
	waitPort(t, s.port)
	expectAnswer(t, s.addr, "A")
	if r := expect("start", 0); !strings.Contains(r.stdout, "already running") || s.pid() != p1 {
		t.Fatalf("a second start: %v; pid file %d, want %d", r, s.pid(), p1)
	}
	if r := expect("status", 0); !strings.Contains(r.stdout, strconv.Itoa(p1)) {
		t.Fatalf("status does not name pid %d: %v", p1, r)
	}
	if r := expect("configtest", 0); !strings.Contains(r.stdout, "configuration is valid") {
		t.Fatalf("configtest: %v", r)
	}

	// reload: a new generation serves the new configuration; the old one
	// finishes the connection it has.
	name, held := holdConn(t, s.addr)
	defer held.Close()
	if name != "A" {
		t.Fatalf("held connection answered by %q, want %q", name, "A")
	}
	textB := s.text(b)
	s.write(t, textB)
	expect("reload", 0)
	p2 := s.pid()
	pids.add(p2)
	if p2 == p1 || !alive(p2) {
		t.Fatalf("after reload the pid file holds %d (was %d)", p2, p1)
	}
	expectAnswer(t, s.addr, "B")
	scrEcho(t, held)
	if !alive(p1) {
		t.Fatalf("the old generation %d exited while it still had a connection", p1)
	}

	// A broken configuration: configtest fails, reload refuses, lb keeps
	// serving.
	s.write(t, "[[frontend]]\nname = 1\n")
	expect("configtest", 6)
	expect("reload", 6)
	if p := s.pid(); p != p2 || !alive(p2) {
		t.Fatalf("after a refused reload the pid file holds %d, want %d", p, p2)
	}
	expectAnswer(t, s.addr, "B")
	s.write(t, textB)

	// stop ends both generations, the draining one too.
	expect("stop", 0)
	waitGoneWithin(t, time.Second, "after stop", p1, p2)
	expect("status", 3)
	if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after stop", s.addr)
	}

	// A pid file left behind by a process that is gone: status 1; stop
	// cleans it up.
	if err := os.WriteFile(s.pidFile, []byte(strconv.Itoa(p2)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect("status", 1)
	expect("stop", 0)
	expect("status", 3)

	// restart replaces the generation.
	expect("start", 0)
	p3 := s.waitPid(t, 0)
	pids.add(p3)
	expect("restart", 0)
	p4 := s.waitPid(t, p3)
	pids.add(p4)
	waitGoneWithin(t, time.Second, "after restart", p3)
	expectAnswer(t, s.addr, "B")
	expect("stop", 0)
	waitGoneWithin(t, time.Second, "after stop", p4)
	expect("status", 3)
	expect("no-such-action", 2)
}

// TestInitScriptStartWithoutLogFile starts lb with the init script and no
// global.log_file, from a caller that reads the script's output through
// pipes as cron, CI or `out=$(...)` do: the script must return once lb
// serves, without the daemon keeping the pipes open, and the daemon must
// keep serving after the caller has gone.
func TestInitScriptStartWithoutLogFile(t *testing.T) {
	a := startServer(t, "A")
	s := newScrSetup(t, false)
	s.write(t, s.text(a))
	pids := scrTrack(t, s.pidFile)
	env := s.env("LB_DEFAULTS="+filepath.Join(s.dir, "no-such-defaults"), "LB_STOP_TIMEOUT=10")
	script := scrPath(t, "lb.init")
	if r := runCmd(t, time.Minute, env, "sh", script, "start"); r.code != 0 {
		t.Fatalf("lb.init start: %v", r)
	}
	pid := s.waitPid(t, 0)
	pids.add(pid)
	for range 3 {
		expectAnswer(t, s.addr, "A") // lb logs each connection
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(pid) {
		t.Fatalf("lb (pid %d) died once the caller of lb.init start had gone", pid)
	}
	if r := runCmd(t, time.Minute, env, "sh", script, "stop"); r.code != 0 {
		t.Fatalf("lb.init stop: %v", r)
	}
}

// --- lb.service ---

// scrUnit is a systemd unit file: for each section, each key's values in
// order.
type scrUnit map[string]map[string][]string

// scrParseUnit reads a unit file the way systemd does for what this test
// needs: sections, comments, continuation lines, repeated keys, and an
// empty value that resets a list.
func scrParseUnit(t *testing.T, path string) scrUnit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := scrUnit{}
	section := ""
	var pending string
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n+1, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if value == "" {
			u[section][key] = nil
			continue
		}
		u[section][key] = append(u[section][key], value)
	}
	return u
}

// scrUnitWords splits a unit's command line or Environment= value into
// words, with systemd's double and single quotes.
func scrUnitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// scrUnitCommand turns a unit's command line into argv: the prefixes
// (-@:+!) go, ${VAR} and $VAR words are substituted from env as systemd
// does, and the unit's lb path becomes the lb under test.
func scrUnitCommand(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	words := scrUnitWords(t, line)
	if len(words) == 0 {
		t.Fatalf("empty command line %q", line)
	}
	words[0] = strings.TrimLeft(words[0], "-@:+!")
	if words[0] != "/usr/local/bin/lb" {
		t.Fatalf("command line %q does not run /usr/local/bin/lb", line)
	}
	argv := []string{lbBin}
	for _, w := range words[1:] {
		for name, value := range env {
			w = strings.ReplaceAll(w, "${"+name+"}", value)
		}
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			// $VAR as a word of its own: split on blanks.
			argv = append(argv, strings.Fields(env[w[1:]])...)
			continue
		}
		if strings.Contains(w, "$") {
			t.Fatalf("command line %q: %q has an unknown variable", line, w)
		}
		argv = append(argv, w)
	}
	return argv
}

// scrNotifySocket listens on a unixgram socket like systemd's notification
// socket and delivers each datagram.
func scrNotifySocket(t *testing.T, path string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return msgs
}

// scrWaitReady waits up to 20 s for a notification with READY=1 and
// returns its MAINPID.
func scrWaitReady(t *testing.T, msgs <-chan string) int {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-msgs:
			fields := strings.Split(m, "\n")
			ready, pid := false, 0
			for _, f := range fields {
				if f == "READY=1" {
					ready = true
				}
				if v, ok := strings.CutPrefix(f, "MAINPID="); ok {
					pid, _ = strconv.Atoi(v)
				}
			}
			if ready {
				if pid == 0 {
					t.Fatalf("READY=1 without MAINPID: %q", m)
				}
				return pid
			}
		case <-timeout:
			t.Fatal("no READY=1 notification within 20s")
		}
	}
}

func TestSystemdUnitNotifiesAndReloads(t *testing.T) {
	unitPath := scrPath(t, "lb.service")
	u := scrParseUnit(t, unitPath)
	svc := u["Service"]
	for key, want := range map[string]string{"Type": "notify", "NotifyAccess": "all", "RuntimeDirectory": "lb"} {
		if got := svc[key]; len(got) == 0 || got[len(got)-1] != want {
			t.Errorf("%s: %s=%v, want %s", unitPath, key, got, want)
		}
	}
	if km := svc["KillMode"]; len(km) > 0 && km[len(km)-1] != "control-group" {
		t.Errorf("%s: KillMode=%s, want the default, control-group", unitPath, km[len(km)-1])
	}
	if len(svc["ExecStartPre"]) != 1 || len(svc["ExecStart"]) != 1 || len(svc["ExecReload"]) != 2 {
		t.Fatalf("%s: want one ExecStartPre, one ExecStart and two ExecReload lines: %v %v %v",
			unitPath, svc["ExecStartPre"], svc["ExecStart"], svc["ExecReload"])
	}

	a, b := startServer(t, "A"), startServer(t, "B")
	s := newScrSetup(t, true)
	s.write(t, s.text(a))
	pids := scrTrack(t, s.pidFile)

	// The unit's own Environment= defaults, with the paths of this test.
	env := map[string]string{}
	for _, v := range svc["Environment"] {
		for _, w := range scrUnitWords(t, v) {
			name, value, _ := strings.Cut(w, "=")
			env[name] = value
		}
	}
	for _, name := range []string{"LB_CONFIG", "LB_PIDFILE"} {
		if _, ok := env[name]; !ok {
			t.Errorf("%s: Environment= does not set %s", unitPath, name)
		}
	}
	env["LB_CONFIG"], env["LB_PIDFILE"] = s.config, s.pidFile
	startPre := scrUnitCommand(t, svc["ExecStartPre"][0], env)
	start := scrUnitCommand(t, svc["ExecStart"][0], env)
	if !slices.Contains(startPre, "-c") || !slices.Contains(start, "-p") || slices.Contains(start, "-D") {
		t.Fatalf("ExecStartPre %v should check (-c); ExecStart %v should run in the foreground (no -D) with -p", startPre, start)
	}
	reload := func(mainPid int) []cmdResult {
		t.Helper()
		env["MAINPID"] = strconv.Itoa(mainPid)
		var rs []cmdResult
		for _, line := range svc["ExecReload"] {
			r := runCmd(t, time.Minute, nil, scrUnitCommand(t, line, env)...)
			rs = append(rs, r)
			if r.code != 0 {
				break // systemd stops at the first failing command
			}
		}
		return rs
	}
	if reloadCmd := scrUnitCommand(t, svc["ExecReload"][1], map[string]string{"LB_CONFIG": "C", "LB_PIDFILE": "P", "MAINPID": "4242"}); !slices.Contains(reloadCmd, "-D") || !slices.Contains(reloadCmd, "-sf") || reloadCmd[len(reloadCmd)-1] != "4242" {
		t.Fatalf("the second ExecReload should run lb -D ... -sf $MAINPID: %v", reloadCmd)
	}

	msgs := scrNotifySocket(t, filepath.Join(s.dir, "notify.sock"))
	t.Setenv("NOTIFY_SOCKET", filepath.Join(s.dir, "notify.sock"))

	// systemctl start: ExecStartPre, then ExecStart until READY=1.
	if r := runCmd(t, time.Minute, nil, startPre...); r.code != 0 {
		t.Fatalf("ExecStartPre %v: %v", startPre, r)
	}
	first := launch(t, start[1:]...)
	mainPid := scrWaitReady(t, msgs)
	pids.add(mainPid)
	if mainPid != first.cmd.Process.Pid {
		t.Fatalf("MAINPID=%d, want the ExecStart process %d", mainPid, first.cmd.Process.Pid)
	}
	if p := s.pid(); p != mainPid {
		t.Fatalf("pid file holds %d, want %d", p, mainPid)
	}
	expectAnswer(t, s.addr, "A")

	// systemctl reload: ExecReload with $MAINPID; the new generation
	// announces itself and the old one exits.
	s.write(t, s.text(b))
	for _, r := range reload(mainPid) {
		if r.code != 0 {
			t.Fatalf("ExecReload: %v", r)
		}
	}
	second := scrWaitReady(t, msgs)
	pids.add(second)
	if second == mainPid || s.pid() != second || !alive(second) {
		t.Fatalf("after reload: MAINPID=%d (was %d), pid file %d", second, mainPid, s.pid())
	}
	expectAnswer(t, s.addr, "B")
	if code := first.exitCode(t); code != 0 {
		t.Fatalf("the first generation exited with status %d after the reload; stderr:\n%s", code, first.stderr)
	}

	// Again, from the daemonized generation.
	s.write(t, s.text(a))
	for _, r := range reload(second) {
		if r.code != 0 {
			t.Fatalf("ExecReload: %v", r)
		}
	}
	third := scrWaitReady(t, msgs)
	pids.add(third)
	if third == second || s.pid() != third {
		t.Fatalf("after the second reload: MAINPID=%d (was %d), pid file %d", third, second, s.pid())
	}
	expectAnswer(t, s.addr, "A")
	waitGone(t, second, "the generation replaced by the second reload")

	// A broken configuration: the first ExecReload fails, the reload
	// fails, the main pid keeps serving. The second ExecReload alone would
	// fail too.
	s.write(t, "[[frontend]]\nname = 1\n")
	rs := reload(third)
	if len(rs) != 1 || rs[0].code == 0 {
		t.Fatalf("ExecReload with a broken configuration should fail at its check: %v", rs)
	}
	env["MAINPID"] = strconv.Itoa(third)
	if r := runCmd(t, time.Minute, nil, scrUnitCommand(t, svc["ExecReload"][1], env)...); r.code == 0 {
		t.Fatalf("lb -D with a broken configuration succeeded: %v", r)
	}
	select {
	case m := <-msgs:
		t.Fatalf("notification after a failed reload: %q", m)
	default:
	}
	if s.pid() != third || !alive(third) {
		t.Fatalf("after a failed reload: pid file %d, want %d (alive: %v)", s.pid(), third, alive(third))
	}
	expectAnswer(t, s.addr, "A")

	// systemctl stop: SIGTERM to every process of the unit.
	if err := syscall.Kill(third, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGoneWithin(t, 10*time.Second, "after SIGTERM", third)
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit (with the
// lb under test as its binary) when systemd-analyze is installed.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze", "apt-get install systemd")
	unit, err := os.ReadFile(scrPath(t, "lb.service"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lb.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/lb"), []byte(lbBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, time.Minute, nil, analyze, "verify", "--man=no", path)
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "lb.service") {
		t.Fatalf("systemd-analyze verify: %v", r)
	}
}
