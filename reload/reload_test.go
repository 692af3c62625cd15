package reload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSplitStopPids(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		rest []string
		stop Stop
		err  string
	}{
		{"none", []string{"-f", "lb.toml"}, []string{"-f", "lb.toml"}, Stop{}, ""},
		{"empty list at the end", []string{"-f", "lb.toml", "-sf"}, []string{"-f", "lb.toml"}, Stop{}, ""},
		{"empty list before a flag", []string{"-sf", "-f", "lb.toml"}, []string{"-f", "lb.toml"}, Stop{}, ""},
		{"soft pids", []string{"-f", "lb.toml", "-p", "lb.pid", "-D", "-sf", "12", "34"}, []string{"-f", "lb.toml", "-p", "lb.pid", "-D"}, Stop{Soft: []int{12, 34}}, ""},
		{"list ends at the next flag", []string{"-sf", "12", "-f", "lb.toml"}, []string{"-f", "lb.toml"}, Stop{Soft: []int{12}}, ""},
		{"hard and soft", []string{"-st", "5", "-sf", "6", "7", "-q"}, []string{"-q"}, Stop{Soft: []int{6, 7}, Hard: []int{5}}, ""},
		{"double dash", []string{"--sf", "8"}, nil, Stop{Soft: []int{8}}, ""},
		{"not a pid", []string{"-sf", "12", "lb.toml"}, nil, Stop{}, `-sf: "lb.toml" is not a process id`},
		{"zero", []string{"-st", "0"}, nil, Stop{}, `-st: "0" is not a process id`},
		{"value that looks like the flag", []string{"-f", "sf"}, []string{"-f", "sf"}, Stop{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest, stop, err := SplitStopPids(tc.args)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rest, tc.rest) || !reflect.DeepEqual(stop, tc.stop) {
				t.Fatalf("got %q %+v, want %q %+v", rest, stop, tc.rest, tc.stop)
			}
		})
	}
	if got := WithoutStopPids([]string{"-f", "x", "-sf", "1", "2", "-D"}); !reflect.DeepEqual(got, []string{"-f", "x", "-D"}) {
		t.Fatalf("WithoutStopPids = %q", got)
	}
}

func TestCheckLB(t *testing.T) {
	self := LookupSelf()
	if self.Exe == "" || self.Comm == "" {
		t.Fatalf("LookupSelf = %+v", self)
	}
	// Another process running this very executable is lb.
	twin := exec.Command(os.Args[0], "-test.run=^$", "-test.timeout=30s")
	twin.Env = append(os.Environ(), "RELOAD_TEST_SLEEP=1")
	if err := twin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = twin.Process.Kill(); _ = twin.Wait() }()
	if err := self.CheckLB(twin.Process.Pid); err != nil {
		t.Errorf("a process of the same executable: %v", err)
	}
	// Some other program is not.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	err := self.CheckLB(other.Process.Pid)
	if !errors.Is(err, ErrNotLB) || !strings.Contains(err.Error(), "sleep") {
		t.Errorf("sleep: %v, want a not-lb error naming it", err)
	}
	if err := self.CheckLB(self.Pid); !errors.Is(err, ErrNotLB) {
		t.Errorf("own pid: %v, want ErrNotLB", err)
	}
	if err := self.CheckLB(1 << 22); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("missing pid: %v", err)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("RELOAD_TEST_SLEEP") == "1" {
		time.Sleep(20 * time.Second)
		os.Exit(0)
	}
	if fd := os.Getenv("RELOAD_TEST_CHILD"); fd != "" {
		readinessChild(fd)
		return
	}
	os.Exit(m.Run())
}

// readinessChild plays an lb started with the readiness protocol.
func readinessChild(mode string) {
	r := ReadinessFromEnv()
	if os.Getenv(envReadyFD) != "" {
		os.Exit(3) // the variable must be gone
	}
	switch mode {
	case "ready":
		if err := r.Ready(); err != nil {
			os.Exit(4)
		}
		time.Sleep(300 * time.Millisecond)
		os.Exit(0)
	case "ready-exit":
		// Ready, then replaced at once: it exits as soon as it said so.
		if err := r.Ready(); err != nil {
			os.Exit(4)
		}
		os.Exit(0)
	case "fail":
		os.Stderr.WriteString("lb: cannot bind: address already in use\n")
		os.Exit(7)
	}
}

func TestLaunchReadiness(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		pid, err := Launch{Path: os.Args[0], Env: []string{"RELOAD_TEST_CHILD=ready"}}.Run(context.Background())
		if err != nil || pid <= 0 {
			t.Fatalf("Run = %d, %v; want the child's pid and nil", pid, err)
		}
	})
	t.Run("ready then exits", func(t *testing.T) {
		// The launcher may see the exit before it reads the word: the
		// child was ready all the same.
		for i := range 30 {
			if _, err := (Launch{Path: os.Args[0], Env: []string{"RELOAD_TEST_CHILD=ready-exit"}}).Run(context.Background()); err != nil {
				t.Fatalf("launch %d: Run error %v; the child said it was ready before it exited", i, err)
			}
		}
	})
	t.Run("fails", func(t *testing.T) {
		errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Launch{Path: os.Args[0], Env: []string{"RELOAD_TEST_CHILD=fail"}, Daemon: true, Stderr: errFile}.Run(context.Background())
		var ee *exec.ExitError
		if !errors.Is(err, ErrNotReady) || !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("Run error %v, want ErrNotReady with exit status 7", err)
		}
		b, _ := os.ReadFile(errFile.Name())
		if !strings.Contains(string(b), "address already in use") {
			t.Fatalf("child's stderr not passed on: %q", b)
		}
	})
}

func TestPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.pid")
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := PreparePidFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "1\n" {
		t.Fatalf("prepare touched the pid file: %q", b)
	}
	if err := p.Commit(4242); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "4242\n" {
		t.Fatalf("pid file %q, want 4242", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	RemovePidFile(path, 1)
	if _, err := os.Stat(path); err != nil {
		t.Fatal("RemovePidFile removed another pid's file")
	}
	RemovePidFile(path, 4242)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("RemovePidFile left its own pid file")
	}
	if _, err := PreparePidFile(filepath.Join(t.TempDir(), "missing", "lb.pid")); err == nil || !strings.Contains(err.Error(), "pid file") {
		t.Fatalf("missing directory: %v", err)
	}
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if err := Notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1\nMAINPID="+strconv.Itoa(os.Getpid()) {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if Alive(cmd.Process.Pid) {
		t.Fatal("an exited, reaped process is alive")
	}
}

func TestStderrIsJournal(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !StderrIsJournal() {
		t.Error("stderr matches JOURNAL_STREAM but is not recognised")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1))
	if StderrIsJournal() {
		t.Error("another inode is taken for the journal")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if StderrIsJournal() {
		t.Error("no JOURNAL_STREAM is taken for the journal")
	}
}
