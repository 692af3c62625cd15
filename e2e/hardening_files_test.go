package e2e

// Tests of what lb trusts in the file system (README, "Security notes"):
// the log file, the state file and the admin socket's temporary name.
// Helpers used only by hardening_*_test.go are prefixed with hf.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hfConfig is a configuration with one frontend on port in front of s,
// with the [global] keys in global.
func hfConfig(port int, s *server, global string) string {
	return strings.Replace(config(port, "", serverLine(s.name, s.addr(), "")), "[global]\n", "[global]\n"+global+"\n", 1)
}

// hfStart starts cmd, whose output the caller has wired, as an lbProc whose
// output is out. When the test ends the process is stopped if it still
// runs, and out is checked for data race reports.
func hfStart(t *testing.T, cmd *exec.Cmd, out *syncBuffer) *lbProc {
	t.Helper()
	p := &lbProc{cmd: cmd, stderr: out, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.stop(t)
		checkRace(t, fmt.Sprint(cmd.Args), out.String())
	})
	return p
}

// A log_file that is a symbolic link, a FIFO or a directory stops lb from
// starting, with an error that says what is wrong and what to do, on
// stderr and with exit code 1, in the foreground and through -D. The file
// a link names is left alone.
func TestLogFileRefusesLinksAndSpecialFiles(t *testing.T) {
	s := startServer(t, "s")
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
		want string // after "lb: log_file PATH "
	}{
		{"symbolic link", func(t *testing.T, path string) {
			victim := filepath.Join(t.TempDir(), "precious")
			if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link (to "},
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is a named pipe (FIFO), not a regular file"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "is a directory, not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "lb.log")
			tc.make(t, logPath)
			var target string
			if tc.name == "symbolic link" {
				target, _ = os.Readlink(logPath)
			}
			cfg := writeConfig(t, hfConfig(freePort(t), s, fmt.Sprintf("log_file = %q", logPath)))
			want := fmt.Sprintf("lb: log_file %s %s", logPath, tc.want)

			p := launch(t, "-f", cfg)
			if code := p.exitCodeWithin(t, 20*time.Second); code != 1 || !strings.Contains(p.stderr.String(), want) {
				t.Fatalf("lb -f: exit %d, want 1 and %q on stderr; output:\n%s", code, want, p.stderr)
			}
			// Through -D, the daemon's error reaches the launcher's stderr.
			pidFile := filepath.Join(dir, "lb.pid")
			t.Cleanup(func() { stopLBs(t, 15*time.Second, readPid(pidFile)) })
			if code, stdout, stderr := runLB(t, "-f", cfg, "-D", "-p", pidFile); code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("lb -D: exit %d, want 1 and %q on stderr; stdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
			}
			if target != "" {
				if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
					t.Fatalf("the file the link names now holds %q (%v)", b, err)
				}
			}
		})
	}
}

// log_file "/dev/stdout" and "/dev/stderr" are lb's own stdout and stderr,
// even when that is a socket (systemd's journal), which cannot be opened
// again through /proc/self/fd.
func TestLogFileStdoutStderr(t *testing.T) {
	s := startServer(t, "s")
	for _, name := range []string{"/dev/stdout", "/dev/stderr"} {
		t.Run(name, func(t *testing.T) {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			ours, theirs := os.NewFile(uintptr(fds[0]), "log socket"), os.NewFile(uintptr(fds[1]), "lb's end")
			defer ours.Close()
			port := freePort(t)
			cmd := exec.Command(lbBin, "-f", writeConfig(t, hfConfig(port, s, fmt.Sprintf("log_file = %q", name))))
			logs, other := &syncBuffer{}, &syncBuffer{}
			cmd.Stdout, cmd.Stderr = theirs, other
			if name == "/dev/stderr" {
				cmd.Stdout, cmd.Stderr = other, theirs
			}
			copied := make(chan struct{})
			go func() {
				defer close(copied)
				_, _ = io.Copy(logs, ours)
			}()
			p := hfStart(t, cmd, logs)
			theirs.Close()
			waitLogOutput(t, p, other, `"message":"lb started"`)
			expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
			waitLogOutput(t, p, other, `"message":"connection"`)
			p.stop(t)
			<-copied
			if strings.Contains(other.String(), `"message"`) {
				t.Errorf("log lines on the other stream, not %s:\n%s", name, other)
			}
		})
	}
}

// TestLogFileDevNull: "/dev/null", a device, is the one device log_file
// may name: lb starts, serves, and logs nothing on stderr.
func TestLogFileDevNull(t *testing.T) {
	s := startServer(t, "s")
	port := freePort(t)
	p := launch(t, "-f", writeConfig(t, hfConfig(port, s, `log_file = "/dev/null"`)))
	waitPort(t, port)
	expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	if !p.running() {
		t.Fatalf("lb exited: %s", p.stderr)
	}
	p.stop(t)
	if out := p.stderr.String(); strings.Contains(out, `"message"`) {
		t.Errorf("log lines on stderr with log_file /dev/null:\n%s", out)
	}
}

// waitLogOutput waits for p's logs to hold s, and shows what lb wrote on
// its other stream when they do not.
func waitLogOutput(t *testing.T, p *lbProc, other *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), s) {
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("%q not in lb's logs (running %v); logs:\n%s\nother stream:\n%s", s, p.running(), p.stderr, other)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A state file that someone other than lb or root could have written is
// not used: lb says why and what to fix, checks every server itself and
// does not take the file's generation number. The same file, lb's own,
// is used. What lb writes when it stops is its own again.
func TestStateFileNotTrusted(t *testing.T) {
	s := startServer(t, "s")
	euid := os.Geteuid()
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string, doc []byte)
		want []string // in the warning, PATH standing for the file
	}{
		{"lb's own", func(t *testing.T, path string, doc []byte) {
			hfWriteFile(t, path, doc, 0o600)
		}, nil},
		{"writable by group and others", func(t *testing.T, path string, doc []byte) {
			hfWriteFile(t, path, doc, 0o666)
		}, []string{"writable by group or others (mode 0666)", "chmod go-w PATH"}},
		{"owned by another user", func(t *testing.T, path string, doc []byte) {
			if euid != 0 {
				t.Skip("giving a file to another user needs root")
			}
			hfWriteFile(t, path, doc, 0o644)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, []string{"owned by uid 65534", fmt.Sprintf("chown %d PATH", euid)}},
		{"symbolic link", func(t *testing.T, path string, doc []byte) {
			target := filepath.Join(t.TempDir(), "elsewhere.state")
			hfWriteFile(t, target, doc, 0o600)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, []string{"symbolic link", "set state_file to the file itself"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			stateFile, sock := filepath.Join(dir, "lb.state"), filepath.Join(dir, "admin.sock")
			// Generation 41 left s in maintenance.
			doc := fmt.Sprintf(`{"version":1,"generation":41,"saved":"2026-01-01T00:00:00Z","servers":[`+
				`{"backend":"app","server":"s","address":%q,"config_weight":1,"checked":true,"up":true,"count":0,"admin":"maint","weight":1}]}`+"\n", s.addr())
			tc.make(t, stateFile, []byte(doc))
			before, _ := os.Readlink(stateFile)
			port := freePort(t)
			global := fmt.Sprintf("state_file = %q\nadmin_socket = %q", stateFile, sock)
			p := startLB(t, "-f", writeConfig(t, hfConfig(port, s, global)))
			info := adminQuery(t, sock, "show info")
			servers := adminQuery(t, sock, "show servers state")
			warnings := p.logLines(t, "not using the state file: lb does not trust it (the error says why and what to fix); not taking its server state or generation number")
			if tc.want == nil {
				// The control: this very document is used when it is lb's.
				if !strings.Contains(info, "generation: 42\n") || !strings.Contains(servers, "app s "+s.addr()+" up maint ") || len(warnings) != 0 {
					t.Fatalf("lb's own state file was not used: show info:\n%s\nshow servers state:\n%s\nlog:\n%s", info, servers, p.stderr)
				}
			} else {
				if !strings.Contains(info, "generation: 1\n") || !strings.Contains(servers, "app s "+s.addr()+" up ready ") {
					t.Fatalf("an untrusted state file (%s) was used: show info:\n%s\nshow servers state:\n%s\nlog:\n%s", tc.name, info, servers, p.stderr)
				}
				expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
				if len(warnings) != 1 || warnings[0]["level"] != "warn" || warnings[0]["state_file"] != stateFile {
					t.Fatalf("want one warning naming %s; got %v; log:\n%s", stateFile, warnings, p.stderr)
				}
				msg, _ := warnings[0]["error"].(string)
				for _, w := range append(tc.want, "state file "+stateFile+": not trusted: ") {
					if w = strings.ReplaceAll(w, "PATH", stateFile); !strings.Contains(msg, w) {
						t.Errorf("the warning's error lacks %q: %s", w, msg)
					}
				}
				if l := p.logLines(t, "server state"); len(l) != 1 || l[0]["source"] != "none: checking every server once" {
					t.Errorf("server state lines: %v", l)
				}
			}
			// lb saves the state when it stops: its own file, which the next
			// start trusts, and a link's target is left alone.
			p.stop(t)
			fi, err := os.Lstat(stateFile)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != 0o600 || int(st.Uid) != euid {
				t.Errorf("the state file lb saved: mode %v, uid %d; want -rw------- and uid %d", fi.Mode(), st.Uid, euid)
			}
			if before != "" {
				if b, err := os.ReadFile(before); err != nil || string(b) != doc {
					t.Errorf("the file the link named was changed: %q, %v", b, err)
				}
			}
		})
	}
}

// hfWriteFile writes b to path with mode perm, whatever the umask.
func hfWriteFile(t *testing.T, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// The admin socket used to be created first as ".lb-admin-<pid>" next to
// its path: a file planted at that name, which lb cannot remove, made
// every start and reload fail. Here every name of that scheme is taken, by
// directories lb running as root cannot remove, and by another user's
// files, sockets and directories in a sticky directory for lb running as
// nobody; lb starts and reloads on SIGHUP all the same, and leaves nothing
// behind.
func TestAdminSocketPlantedTempNames(t *testing.T) {
	t.Run("root, directories", func(t *testing.T) {
		dir := hfScratch(t)
		planted := hfPlant(t, dir, func(path string, _ int) error {
			if err := os.Mkdir(path, 0o755); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(path, "planted"), 0o755)
		})
		hfStartAndReload(t, dir, lbBin, nil, planted)
	})
	t.Run("nobody, another user's files in a sticky directory", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("running lb as another user needs root")
		}
		// A directory that nobody can read, holding a copy of lb and its
		// configuration, and a sticky directory for the socket, like /tmp.
		top, err := os.MkdirTemp("", "lb-hardening-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(top) })
		dir := hfScratch(t)
		for path, mode := range map[string]os.FileMode{top: 0o755, dir: os.ModeSticky | 0o777} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
		bin := filepath.Join(top, filepath.Base(lbBin))
		hfCopy(t, lbBin, bin)
		const other = 65533 // the user who planted the files; lb runs as 65534
		planted := hfPlant(t, dir, func(path string, pid int) error {
			switch pid % 3 {
			case 0:
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					return err
				}
			case 1:
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					return err
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
			case 2:
				if err := os.Mkdir(path, 0o755); err != nil {
					return err
				}
			}
			return os.Lchown(path, other, other)
		})
		hfStartAndReload(t, dir, bin, &syscall.Credential{Uid: 65534, Gid: 65534}, planted)
	})
}

// hfScratch returns a new directory for tens of thousands of small files:
// on /dev/shm, a tmpfs, when there is one (they are made and removed in a
// fraction of a second there, against tens of seconds on a busy disk), else
// in the default temporary directory. It is removed when the test ends.
func hfScratch(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "lb-hardening-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// hfPlant calls plant for the name ".lb-admin-<pid>" in dir of every pid
// lb could get: all of them when the kernel's pid_max is small enough,
// else the 20,000 after the last pid given out. It returns the pids.
func hfPlant(t *testing.T, dir string, plant func(path string, pid int) error) map[int]bool {
	t.Helper()
	maxPid := hfReadInt(t, "/proc/sys/kernel/pid_max")
	first, n := 1, maxPid-1
	if maxPid > 1<<16 {
		first, n = hfReadInt(t, "/proc/sys/kernel/ns_last_pid")+1, 20000
	}
	pids := make(map[int]bool, n)
	for i := range n {
		pid := first + i
		if pid >= maxPid {
			pid = pid - maxPid + 300 // the kernel starts again above the first 300
		}
		if err := plant(filepath.Join(dir, fmt.Sprintf(".lb-admin-%d", pid)), pid); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
	}
	return pids
}

func hfReadInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func hfCopy(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// hfStartAndReload starts bin in the foreground (as cred, when not nil)
// with its admin socket in dir, reloads it with SIGHUP, and checks that
// the next generation serves and that both generations had pids whose
// old temporary names were planted. Once it is stopped, dir holds what
// was planted and nothing else.
func hfStartAndReload(t *testing.T, dir, bin string, cred *syscall.Credential, planted map[int]bool) {
	t.Helper()
	s := startServer(t, "s")
	sock := filepath.Join(dir, "admin.sock")
	port := freePort(t)
	cfgDir := filepath.Dir(bin) // readable by lb's user
	if cred == nil {
		cfgDir = t.TempDir()
	}
	cfg := filepath.Join(cfgDir, "lb.toml")
	hfWriteFile(t, cfg, []byte(hfConfig(port, s, fmt.Sprintf("admin_socket = %q\nhandshake_grace = \"100ms\"", sock))), 0o644)
	cmd := exec.Command(bin, "-f", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p := hfStart(t, cmd, out)
	p.waitOutput(t, `"message":"lb started"`)
	first := cmd.Process.Pid
	if info := adminQuery(t, sock, "show info"); !strings.Contains(info, fmt.Sprintf("pid: %d\ngeneration: 1\n", first)) {
		t.Fatalf("show info:\n%s", info)
	}
	if err := syscall.Kill(first, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first, "the generation that reloaded on SIGHUP")
	info := adminQuery(t, sock, "show info")
	m := regexp.MustCompile(`pid: (\d+)\ngeneration: 2\n`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("after SIGHUP, show info:\n%s\nlog:\n%s", info, out)
	}
	second, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { stopLBs(t, 15*time.Second, second) })
	expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	for _, pid := range []int{first, second} {
		if !planted[pid] {
			t.Fatalf("lb ran as pid %d, whose old temporary name was not planted: the machine started too many processes during the test", pid)
		}
	}
	stopLBs(t, 15*time.Second, second)
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		pid, err := strconv.Atoi(strings.TrimPrefix(de.Name(), ".lb-admin-"))
		if err != nil || !planted[pid] {
			t.Errorf("left behind in %s: %s", dir, de.Name())
		}
	}
	if len(des) != len(planted) {
		t.Errorf("%s holds %d entries, want the %d planted", dir, len(des), len(planted))
	}
}
