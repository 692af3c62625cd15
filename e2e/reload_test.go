package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemons runs lb the way operators do: `lb -D -p PIDFILE`, reloaded with
// `-sf $(cat PIDFILE)`. It remembers every pid it saw, and when the test ends
// it stops them all, checks none is left, and fails on a data race report in
// the log file.
type daemons struct {
	t         *testing.T
	dir       string
	cfg       string
	pidFile   string
	adminSock string
	logFile   string
	port      int
	seen      map[int]bool
}

// daemonConfig is a configuration for daemons with its own admin socket and
// log file in dir.
func daemonConfig(dir string, port int, extraGlobal string, servers ...*server) string {
	var lines []string
	for _, s := range servers {
		lines = append(lines, serverLine(s.name, s.addr(), ""))
	}
	return daemonConfigBackend(dir, port, extraGlobal, strings.Join(lines, "\n"))
}

// daemonConfigBackend is daemonConfig with the rest of the backend "app"
// table, its keys and servers, written by the caller.
func daemonConfigBackend(dir string, port int, extraGlobal, backend string) string {
	return daemonConfigMode(dir, port, extraGlobal, "", "", backend)
}

// daemonConfigMode is daemonConfigBackend in mode (empty: the default),
// with the frontend's own keys and tables too.
func daemonConfigMode(dir string, port int, extraGlobal, mode, frontend, backend string) string {
	defaults := ""
	if mode != "" {
		defaults = fmt.Sprintf("[defaults]\nmode = %q\n", mode)
	}
	return fmt.Sprintf(`[global]
admin_socket = %q
log_file = %q
handshake_grace = "100ms"
hard_stop_after = "30s"
%s

%s
[defaults.timeout]
connect = "2s"
client = "30s"
server = "30s"

[[frontend]]
name = "web"
bind = ["127.0.0.1:%d"]
default_backend = "app"
%s

[[backend]]
name = "app"
%s`, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "lb.log"), extraGlobal, defaults, port, frontend, backend)
}

// withoutAdmin turns the admin socket of a daemonConfig configuration off
// (admin_socket = "none"), default included: reloads then bind anew in the
// address's SO_REUSEPORT group and steer, instead of taking the sockets
// over.
func withoutAdmin(text string) string {
	i := strings.Index(text, "admin_socket = ")
	j := i + strings.IndexByte(text[i:], '\n')
	return text[:i] + `admin_socket = "none"` + text[j:]
}

func newDaemons(t *testing.T, extraGlobal string, servers ...*server) *daemons {
	t.Helper()
	dir := t.TempDir()
	d := &daemons{
		t: t, dir: dir, port: freePort(t), seen: map[int]bool{},
		pidFile:   filepath.Join(dir, "lb.pid"),
		adminSock: filepath.Join(dir, "admin.sock"),
		logFile:   filepath.Join(dir, "lb.log"),
		cfg:       filepath.Join(dir, "lb.toml"),
	}
	d.writeConfig(daemonConfig(dir, d.port, extraGlobal, servers...))
	t.Cleanup(d.stopAll)
	return d
}

func (d *daemons) writeConfig(text string) {
	d.t.Helper()
	if err := os.WriteFile(d.cfg, []byte(text), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func (d *daemons) addr() string { return fmt.Sprintf("127.0.0.1:%d", d.port) }

// pid returns the pid in the pid file, or 0.
func (d *daemons) pid() int { return readPid(d.pidFile) }

// launch runs `lb -f CFG -p PIDFILE -D -sf $(cat PIDFILE) extra...` and
// returns its exit code and output; the new pid is remembered.
func (d *daemons) launch(extra ...string) (int, string) {
	d.t.Helper()
	args := []string{"-f", d.cfg, "-p", d.pidFile, "-D", "-sf"}
	if old := d.pid(); old != 0 {
		args = append(args, strconv.Itoa(old))
	}
	code, stdout, stderr := runLB(d.t, append(args, extra...)...)
	if p := d.pid(); p != 0 {
		d.seen[p] = true
	}
	return code, stdout + stderr
}

// mustLaunch is launch that fails the test unless lb reports success.
func (d *daemons) mustLaunch(extra ...string) int {
	d.t.Helper()
	old := d.pid()
	code, out := d.launch(extra...)
	if code != 0 {
		d.t.Fatalf("lb -D exited %d:\n%s\nlog:\n%s", code, out, d.log())
	}
	p := d.pid()
	if p == 0 || p == old {
		d.t.Fatalf("lb -D exited 0 but the pid file says %d (was %d)", p, old)
	}
	return p
}

func (d *daemons) log() string {
	b, _ := os.ReadFile(d.logFile)
	return string(b)
}

// stopAll stops every generation seen and checks that none is left.
func (d *daemons) stopAll() {
	stopLBs(d.t, 15*time.Second, slices.Collect(maps.Keys(d.seen))...)
	checkRace(d.t, d.logFile, d.log())
}

// TestReloadStorm reloads lb on a fixed cadence, each reload launched on
// time whether or not the previous one has finished, under clients that
// open a connection per exchange, keep-alive clients and a long stream:
// none may fail. Modes: plain -sf (lb takes the sockets over through the
// admin socket beside the configuration), -x naming it, and with no admin
// socket at all (lb joins the SO_REUSEPORT group and steers).
func TestReloadStorm(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		reloads int
		every   time.Duration
	}{{"default", 100, 100 * time.Millisecond}, {"takeover", 100, 100 * time.Millisecond}, {"reuseport", 30, 200 * time.Millisecond}} {
		t.Run(tc.mode, func(t *testing.T) {
			a, b := startServer(t, "a"), startServer(t, "b")
			d := newDaemons(t, "", a, b)
			var extra []string
			switch tc.mode {
			case "takeover":
				extra = []string{"-x", d.adminSock}
			case "reuseport":
				d.writeConfig(withoutAdmin(daemonConfig(d.dir, d.port, "", a, b)))
			}
			d.mustLaunch()
			waitPort(t, d.port)
			firstSockets := listenInodes(t, d.port)
			l := startLoad(d.addr(), 4, 100000)
			for range 2 {
				l.addStream(d.addr(), 32, 100000, 5*time.Millisecond) // keep-alive
			}
			l.addStream(d.addr(), 32<<10, 1000000, 0) // a long stream
			deadline := guardDeadline(t, 3*time.Minute)
			results := make(chan cmdResult, tc.reloads)
			tick := time.NewTicker(tc.every)
			for i := range tc.reloads {
				<-tick.C
				if time.Now().After(deadline) {
					t.Fatalf("only %d reloads before the test's guard ran out", i)
				}
				args := []string{"-f", d.cfg, "-p", d.pidFile, "-D", "-sf"}
				if old := d.pid(); old != 0 {
					args = append(args, strconv.Itoa(old))
				}
				go func() {
					results <- runCmd(t, 2*time.Minute, nil, append([]string{lbBin}, append(args, extra...)...)...)
				}()
			}
			tick.Stop()
			var failedLaunches []string
			for range tc.reloads {
				if r := <-results; r.code != 0 {
					failedLaunches = append(failedLaunches, r.String())
				}
			}
			time.Sleep(200 * time.Millisecond)
			ok, failed, errs := l.finish()
			for _, p := range logPids(t, d.log()) {
				d.seen[p] = true
			}
			t.Logf("%s: %d reloads, one every %v; %d exchanges ok, %d failed", tc.mode, tc.reloads, tc.every, ok, failed)
			if len(failedLaunches) > 0 {
				t.Fatalf("%d of %d reloads failed; first: %s\nlog:\n%s", len(failedLaunches), tc.reloads, failedLaunches[0], d.log())
			}
			if failed != 0 {
				t.Errorf("%d of %d exchanges failed across %d reloads; first errors: %v", failed, ok+failed, tc.reloads, errs)
			}
			if ok < 1000 {
				t.Errorf("only %d exchanges went through: the load was too thin to prove anything", ok)
			}
			if n := len(logPids(t, d.log())); n != tc.reloads+1 {
				t.Errorf("%d generations started, want %d", n, tc.reloads+1)
			}
			if tc.mode != "reuseport" {
				if g := showGeneration(t, d.adminSock); g != tc.reloads+1 {
					t.Errorf("after %d reloads the serving generation is number %d", tc.reloads, g)
				}
				// Every generation took the first one's listening socket
				// over (the same socket, by its inode) and bound none of
				// its own; lb says so each time.
				if got := listenInodes(t, d.port); !slices.Equal(got, firstSockets) {
					t.Errorf("after %d reloads the listening sockets on port %d are %v, want the first generation's %v alone", tc.reloads, d.port, got, firstSockets)
				}
				if n := strings.Count(d.log(), `"message":"took the listening sockets over from the old generation"`); n != tc.reloads {
					t.Errorf("lb reported %d takeovers in %d reloads", n, tc.reloads)
				}
				if strings.Contains(d.log(), "cannot take the listening sockets over") {
					t.Errorf("a takeover failed:\n%s", d.log())
				}
			}
			// Every old generation drains and exits on its own.
			cur := d.pid()
			for p := range d.seen {
				if p != cur {
					waitGone(t, p, "an old generation")
				}
			}
		})
	}
}

// adminQuery sends one command to an admin socket and returns the reply.
func adminQuery(t *testing.T, path, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("admin socket %s: %v", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLongConnectionSurvivesReloadsUntilHardStop(t *testing.T) {
	// Long enough for three reloads on a loaded machine with the race
	// detector (about a second each), short enough for a test.
	const hardStop = 8 * time.Second
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	d.writeConfig(strings.Replace(daemonConfig(d.dir, d.port, "", s), `hard_stop_after = "30s"`, `hard_stop_after = "8s"`, 1))
	first := d.mustLaunch()
	c, err := net.DialTimeout("tcp", d.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ping := func(i int) error {
		msg := fmt.Sprintf("chunk %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err == nil && got != msg {
			err = fmt.Errorf("got %q, want %q", got, msg)
		}
		return err
	}
	// The first generation is told to stop during the first reload: its
	// hard stop comes hardStop after a moment between these two times.
	beforeFirst := time.Now()
	var afterFirst time.Time
	for i := range 3 {
		d.mustLaunch()
		if i == 0 {
			afterFirst = time.Now()
		}
		time.Sleep(300 * time.Millisecond)
		if err := ping(i); err != nil {
			t.Fatalf("the long connection broke after reload %d, %v after the first one (hard_stop_after is %v): %v",
				i+1, time.Since(beforeFirst), hardStop, err)
		}
	}
	// Still streaming after several reloads, until hard_stop_after cuts it.
	for i := 3; ; i++ {
		err := ping(i)
		if err != nil {
			if since := time.Since(beforeFirst); since < hardStop {
				t.Fatalf("the long connection was cut %v after the first reload, before hard_stop_after (%v): %v", since, hardStop, err)
			}
			break
		}
		// The first generation got SIGUSR1 before afterFirst, so the
		// cut comes by afterFirst + hardStop; a second of slack for a
		// busy machine.
		if since := time.Since(afterFirst); since > hardStop+time.Second {
			t.Fatalf("hard_stop_after (%v) did not cut the long connection: still streaming %v after the first reload", hardStop, since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitGone(t, first, "the first generation after hard_stop_after")
	if !strings.Contains(d.log(), `"message":"hard stop: closing the connections that are left"`) {
		t.Errorf("no hard stop logged:\n%s", d.log())
	}
}

func TestFailedReloadKeepsOldGeneration(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	good := daemonConfig(d.dir, d.port, "", s)
	first := d.mustLaunch()

	t.Run("broken config", func(t *testing.T) {
		d.writeConfig(good + "\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1\"\n")
		code, out := d.launch()
		if code != 1 || !strings.Contains(out, "lb.toml:") || !strings.Contains(out, `has no port`) {
			t.Fatalf("reload with a broken config: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("port held by another program", func(t *testing.T) {
		held, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		heldPort := held.Addr().(*net.TCPAddr).Port
		d.writeConfig(good + fmt.Sprintf("\n[[frontend]]\nname = \"extra\"\nbind = [\"127.0.0.1:%d\"]\ndefault_backend = \"app\"\n", heldPort))
		code, out := d.launch()
		want := fmt.Sprintf(`frontend "extra": cannot bind 127.0.0.1:%d: address already in use`, heldPort)
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("reload onto a held port: exit %d, want 1 and %q; output:\n%s", code, want, out)
		}
	})
	t.Run("pid file cannot be written", func(t *testing.T) {
		d.writeConfig(good)
		// A non-empty directory where the pid file goes: its temporary file
		// is created, the final rename fails, after lb joined the groups.
		pidDir := filepath.Join(d.dir, "pid-is-a-directory")
		if err := os.MkdirAll(filepath.Join(pidDir, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runLB(t, "-f", d.cfg, "-p", pidDir, "-D", "-sf", strconv.Itoa(first))
		if code != 1 || !strings.Contains(stderr, "pid file "+pidDir) {
			t.Fatalf("reload with an unwritable pid file: exit %d, output:\n%s%s", code, stdout, stderr)
		}
	})
	d.writeConfig(good)
	if p := d.pid(); p != first {
		t.Fatalf("pid file says %d after failed reloads, want the old generation %d", p, first)
	}
	if !alive(first) {
		t.Fatal("the old generation died")
	}
	expectAnswer(t, d.addr(), "s")
	if info := adminQuery(t, d.adminSock, "show info"); !strings.Contains(info, fmt.Sprintf("pid: %d\n", first)) || !strings.Contains(info, "state: serving") {
		t.Fatalf("the admin socket does not lead to the old, serving generation:\n%s", info)
	}
	// And a good reload still works afterwards.
	d.mustLaunch()
	waitGone(t, first, "the old generation")
}

func TestSoftStopSkipsPidsThatAreNotLB(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	if err := os.WriteFile(d.pidFile, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.mustLaunch() // -sf names the sleep process, as a stale pid file would
	time.Sleep(100 * time.Millisecond)
	if !alive(sleeper.Process.Pid) {
		t.Fatal("lb signalled a process that is not lb")
	}
	want := fmt.Sprintf(`"old_pid":%d,"reason":"pid %d is `, sleeper.Process.Pid, sleeper.Process.Pid)
	if !strings.Contains(d.log(), want) || !strings.Contains(d.log(), "not an lb process") {
		t.Fatalf("the log does not say why pid %d was skipped:\n%s", sleeper.Process.Pid, d.log())
	}
}

func TestHardStopFlag(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	first := d.mustLaunch()
	// A connection held open on the first generation does not keep it
	// alive under -st.
	c, err := net.Dial("tcp", d.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runLB(t, "-f", d.cfg, "-p", d.pidFile, "-D", "-st", strconv.Itoa(first))
	if code != 0 {
		t.Fatalf("lb -st: exit %d\n%s%s", code, stdout, stderr)
	}
	d.seen[d.pid()] = true
	waitGone(t, first, "the generation told to stop with -st")
}

func TestSignalReloadsItself(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2} {
		old := d.pid()
		if old == 0 {
			old = d.mustLaunch()
		}
		if err := syscall.Kill(old, sig); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for d.pid() == old {
			if time.Now().After(deadline) {
				t.Fatalf("%v: no new generation in the pid file after 20s; log:\n%s", sig, d.log())
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.seen[d.pid()] = true
		waitGone(t, old, "the generation that reloaded itself")
		expectAnswer(t, d.addr(), "s")
	}
	if info := adminQuery(t, d.adminSock, "show info"); !strings.Contains(info, "generation: 3\n") {
		t.Errorf("show info after two signal reloads:\n%s", info)
	}
	if !strings.Contains(d.log(), `"message":"reload: the next generation is serving"`) {
		t.Errorf("the old generation did not log that its successor came up:\n%s", d.log())
	}
}

func TestAdminSocket(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	pid := d.mustLaunch()
	fi, err := os.Stat(d.adminSock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("admin socket mode %v, want a socket with 0600", fi.Mode())
	}
	info := adminQuery(t, d.adminSock, "show info")
	for _, want := range []string{fmt.Sprintf("pid: %d\n", pid), "generation: 1\n", "state: serving\n", "connections: 0\n", "uptime: "} {
		if !strings.Contains(info, want) {
			t.Errorf("show info lacks %q:\n%s", want, info)
		}
	}
	if got := adminQuery(t, d.adminSock, "show nonsense"); !strings.HasPrefix(got, "error: unknown command \"show nonsense\"") || strings.Count(got, "\n") != 1 {
		t.Errorf("unknown command answered %q, want a one-line error", got)
	}
	// lb is still fine after a bad command and an empty one.
	adminQuery(t, d.adminSock, "")
	if !strings.Contains(adminQuery(t, d.adminSock, "show info"), "state: serving") {
		t.Error("admin socket stopped answering after bad commands")
	}
	// A stop removes the socket and the pid file it owns.
	_ = syscall.Kill(pid, syscall.SIGTERM)
	waitGone(t, pid, "lb after SIGTERM")
	if _, err := os.Stat(d.adminSock); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
	if _, err := os.Stat(d.pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

// A daemon must let go of everything its launcher was given once it serves,
// or a cron job or a shell reading lb's output waits for as long as the
// daemon lives: its stdout and stderr (without a log file it writes there
// until it serves), and any other descriptor the launcher inherited.
func TestDaemonLetsGoOfLauncherFiles(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	d.writeConfig(strings.Replace(daemonConfig(d.dir, d.port, "", s), fmt.Sprintf("log_file = %q\n", d.logFile), "", 1))

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(lbBin, "-f", d.cfg, "-p", d.pidFile, "-D")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// Inherited as fd 4, as from a careless parent (fd 3 is where the
	// launcher puts the daemon's readiness pipe).
	cmd.ExtraFiles = []*os.File{nil, w}
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	w.Close()
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("lb -D returned but its stdout or stderr is still held open (by the daemon)")
	}
	if err != nil {
		t.Fatalf("lb -D: %v\n%s", err, out.String())
	}
	d.seen[d.pid()] = true
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the inherited pipe is still open after the launcher exited (read %d, %v): the daemon holds it", n, err)
	}
	for fd := range 3 {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", d.pid(), fd)); target != os.DevNull {
			t.Errorf("the daemon's fd %d is %s, want %s", fd, target, os.DevNull)
		}
	}
	expectAnswer(t, d.addr(), "s")
}

func TestTakeoverFallsBackToBinding(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	bad := filepath.Join(d.dir, "nobody-listens-here.sock")
	code, out := d.launch("-x", bad)
	if code != 0 {
		t.Fatalf("lb -D -x %s: exit %d:\n%s", bad, code, out)
	}
	expectAnswer(t, d.addr(), "s")
	// Said on the launcher's stderr, not only in the log file.
	want := "lb: warning: -x " + bad + ": cannot take the state or the listening sockets over: admin socket " + bad + ": "
	if !strings.Contains(out, want) || !strings.Contains(out, "binding new sockets") {
		t.Fatalf("lb -D -x %s said:\n%s\nwant a warning starting %q", bad, out, want)
	}
	if !strings.Contains(d.log(), `"message":"-x `+bad+`: cannot take the state`) {
		t.Fatalf("lb did not log that it could not take the sockets over:\n%s", d.log())
	}
}

// TestMigrateReqIsReported runs lb in a network namespace made for the test,
// the only place where it may change net.ipv4.tcp_migrate_req.
func TestMigrateReqIsReported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	lookTool(t, "unshare", "apt-get install util-linux")
	lookTool(t, "ip", "apt-get install iproute2")
	cfg := writeConfig(t, config(18080, "", serverLine("s", "127.0.0.1:1", "")))
	script := fmt.Sprintf("ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && exec %s -f %s", lbBin, cfg)
	p := startProc(t, nil, "unshare", "-n", "sh", "-c", script)
	l := waitLog(t, p, "starting", func(map[string]any) bool { return true })
	if l["tcp_migrate_req"] != true {
		t.Fatalf("start-up line %v: want tcp_migrate_req true inside a namespace where it is 1", l)
	}
}

// TestBinaryUpgrade: a new binary installed over lb's own path (a package
// upgrade: written beside it, renamed over it) is what SIGHUP and SIGUSR2
// start, and a
// generation started from a binary elsewhere with the same command name
// (one unpacked in a new directory) may signal the running one with -sf,
// though the running one's executable is no longer the same file: the
// identity check falls back to the command name.
func TestBinaryUpgrade(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2} {
		t.Run(sig.String(), func(t *testing.T) { testBinaryUpgrade(t, sig) })
	}
}

func testBinaryUpgrade(t *testing.T, sig syscall.Signal) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	installed := filepath.Join(d.dir, "bin", "lb")
	copyBinary(t, lbBin, installed, nil)
	p := startProc(t, nil, installed, "-f", d.cfg, "-p", d.pidFile)
	waitPort(t, d.port)
	first := waitNewPid(t, d, 0)
	d.seen[first] = true

	// The upgrade: another file at the same path. A byte appended makes it
	// a different file that runs the same.
	staged := installed + ".new"
	copyBinary(t, lbBin, staged, []byte{0})
	if err := os.Rename(staged, installed); err != nil {
		t.Fatal(err)
	}
	newInfo, err := os.Stat(installed)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(first, sig); err != nil {
		t.Fatal(err)
	}
	second := waitNewPid(t, d, first)
	d.seen[second] = true
	waitGone(t, first, "the generation that reloaded on "+sig.String())
	<-p.done
	exeInfo, err := os.Stat(fmt.Sprintf("/proc/%d/exe", second))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(exeInfo, newInfo) {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", second))
		t.Fatalf("after %v the new generation runs %s, not the binary installed at %s", sig, link, installed)
	}
	expectAnswer(t, d.addr(), "s")

	// A binary elsewhere, with the same command name, takes over with -sf.
	elsewhere := filepath.Join(d.dir, "unpacked", "lb")
	copyBinary(t, lbBin, elsewhere, []byte{1})
	r := runCmd(t, 30*time.Second, nil, elsewhere, "-f", d.cfg, "-p", d.pidFile, "-D", "-sf", strconv.Itoa(second))
	if r.code != 0 {
		t.Fatalf("lb from %s -sf %d exited %d:\n%s%s", elsewhere, second, r.code, r.stdout, r.stderr)
	}
	third := d.pid()
	d.seen[third] = true
	if third == second || third == 0 {
		t.Fatalf("the pid file says %d after the takeover from %d", third, second)
	}
	waitGone(t, second, "the generation that lb from another path soft-stopped")
	expectAnswer(t, d.addr(), "s")
	if strings.Contains(d.log(), "not an lb process") {
		t.Fatalf("lb from another path did not recognise the running lb:\n%s", d.log())
	}
}

// copyBinary copies the executable src to dst, with extra appended.
func copyBinary(t *testing.T, src, dst string, extra []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, append(b, extra...), 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitNewPid waits up to 20 s for d's pid file to name a live process other
// than old, and returns it.
func waitNewPid(t *testing.T, d *daemons, old int) int {
	t.Helper()
	return waitPidFile(t, d.pidFile, old, d.log)
}

// listenInodes returns the inodes of the IPv4 sockets listening on port,
// sorted, from /proc/net/tcp.
func listenInodes(t *testing.T, port int) []uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || !strings.HasSuffix(f[1], suffix) || f[3] != "0A" {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			t.Fatalf("/proc/net/tcp: %q: %v", line, err)
		}
		out = append(out, ino)
	}
	slices.Sort(out)
	return out
}

// TestOldGenerationDrainsItsQueue: connections waiting in the old
// generation's accept queue when it is told to stop are served, not reset:
// a soft stop drains the queue. (Steering leaves the queue empty in most
// reloads, so a soft stop that closed its sockets at once would pass the
// other tests.) The old generation is held at its maxconn by two long
// connections, so three more wait in its socket's queue; a new generation
// takes over; then the long connections end, and the old generation
// accepts and serves the three.
func TestOldGenerationDrainsItsQueue(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "")
	d.writeConfig(withoutAdmin(daemonConfigMode(d.dir, d.port, "", "", "maxconn = 2", serverLine(s.name, s.addr(), ""))))
	first := d.mustLaunch()
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	dial := func() conn {
		c, err := net.DialTimeout("tcp4", d.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		return conn{c, bufio.NewReader(c)}
	}
	var long []conn
	for range 2 {
		c, br := dialGreeted(t, d.addr(), "s")
		long = append(long, conn{c, br})
	}
	var queued []conn
	for i := range 3 {
		q := dial()
		if _, err := fmt.Fprintf(q.c, "queued %d\n", i); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, q)
	}
	// The three wait: the old generation is at its maxconn.
	_ = queued[0].c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := queued[0].br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over maxconn was answered before the reload: %d bytes, %v", n, err)
	}

	d.mustLaunch()
	expectAnswer(t, d.addr(), "s")     // the new generation serves new connections
	time.Sleep(300 * time.Millisecond) // past handshake_grace (100ms): the old one drains its queue
	if !alive(first) {
		t.Fatal("the old generation exited with connections in its queue")
	}
	for _, l := range long {
		l.c.Close()
	}
	for i, q := range queued {
		_ = q.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := q.br.ReadString('\n'); err != nil || line != "s\n" {
			t.Fatalf("queued connection %d: greeting %q, %v; want it served by the old generation", i, line, err)
		}
		want := fmt.Sprintf("queued %d\n", i)
		if line, err := q.br.ReadString('\n'); err != nil || line != want {
			t.Fatalf("queued connection %d: echo %q, %v; want %q", i, line, err, want)
		}
		q.c.Close()
	}
	waitGone(t, first, "the old generation once its queue was served")
}
