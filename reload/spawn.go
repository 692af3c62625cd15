package reload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The readiness protocol between a process that starts lb and the lb it
// starts: the child finds a pipe's write end at the descriptor named by
// LB_READY_FD and writes "ready\n" to it once it serves; if it exits first,
// the pipe closes with nothing on it. LB_DAEMON=1 tells the child that it
// is a daemon whose stderr must be let go once it is ready.
const (
	envReadyFD = "LB_READY_FD"
	envDaemon  = "LB_DAEMON"
	readyLine  = "ready\n"
)

// Readiness is the child's end of the readiness protocol. A nil Readiness
// (lb was started directly) does nothing.
type Readiness struct {
	pipe   *os.File
	daemon bool
}

// ReadinessFromEnv takes the readiness pipe this process was given, if any,
// and removes the variables so that processes started later do not inherit
// them.
func ReadinessFromEnv() *Readiness {
	fdText, ok := os.LookupEnv(envReadyFD)
	daemon := os.Getenv(envDaemon) == "1"
	os.Unsetenv(envReadyFD)
	os.Unsetenv(envDaemon)
	if !ok {
		return nil
	}
	fd, err := strconv.Atoi(fdText)
	if err != nil || fd < 3 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return &Readiness{pipe: os.NewFile(uintptr(fd), "readiness"), daemon: daemon}
}

// Daemon reports whether this process was started as a daemon by -D.
func (r *Readiness) Daemon() bool { return r != nil && r.daemon }

// Ready tells the starting process that this one serves.
func (r *Readiness) Ready() error {
	if r == nil {
		return nil
	}
	_, err := io.WriteString(r.pipe, readyLine)
	r.pipe.Close()
	return err
}

// DetachStderr points this process's stderr at f (or /dev/null when f is
// nil), so that the process that started a daemon sees its stderr
// close and a cron job or a shell does not wait on it.
func DetachStderr(f *os.File) error {
	if f == nil {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer null.Close()
		f = null
	}
	return syscall.Dup3(int(f.Fd()), 2, 0)
}

// StderrIsJournal reports whether stderr is systemd's journal, as
// JOURNAL_STREAM ("device:inode") says for the services it starts. Holding
// the journal open is harmless, unlike a cron job's pipe, so a daemon
// started by a unit's ExecReload keeps logging there.
func StderrIsJournal() bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(os.Getenv("JOURNAL_STREAM"), "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		return false
	}
	return st.Dev == dev && st.Ino == ino
}

// Launch starts lb and waits until it is ready or has failed.
type Launch struct {
	// Path and Args are the program and its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// Daemon starts the child in a session of its own, with stdin and
	// stdout on /dev/null, and tells it to let its stderr go once ready.
	Daemon bool
	// Stderr is the child's stderr: all of it for a foreground child, until
	// it is ready for a daemon. The descriptor is handed over as it is, so
	// nothing in this process copies it. Nil means this process's stderr.
	Stderr *os.File
}

// ErrNotReady is wrapped by Run's error when the child did not come up.
var ErrNotReady = errors.New("did not become ready")

// Run starts the child and waits until it reports ready (returning its pid
// and nil) or exits (returning its exit code in an *exec.ExitError wrapped
// with ErrNotReady), or ctx is done.
func (l Launch) Run(ctx context.Context) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cmd := exec.Command(l.Path, l.Args...)
	cmd.Env = append(os.Environ(), l.Env...)
	cmd.Env = append(cmd.Env, envReadyFD+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = l.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if l.Daemon {
		cmd.Env = append(cmd.Env, envDaemon+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	closeInheritedOnExec()
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("start %s: %w", l.Path, err)
	}
	w.Close()
	pid := cmd.Process.Pid

	readyc := make(chan bool, 1)
	go readReady(r, readyc)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case ok := <-readyc:
		if ok {
			go func() { <-exited }() // reaped whenever it exits
			return pid, nil
		}
		// The pipe closed without the word: the child is exiting.
		select {
		case err := <-exited:
			return pid, notReady(err)
		case <-ctx.Done():
			return pid, ctx.Err()
		}
	case err := <-exited:
		// It may have been ready, and replaced by a newer generation, in
		// the same instant: the word is in the pipe, whose write end the
		// exit closed, so the read ends at once.
		select {
		case ok := <-readyc:
			if ok {
				return pid, nil
			}
		case <-ctx.Done():
			return pid, ctx.Err()
		}
		return pid, notReady(err)
	case <-ctx.Done():
		return pid, ctx.Err()
	}
}

// readReady reports whether the readiness word arrived before the pipe
// closed.
func readReady(r io.Reader, readyc chan<- bool) {
	line, _ := bufio.NewReader(r).ReadString('\n')
	readyc <- line == readyLine
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec,
// so that a process lb starts gets only its stdin, stdout, stderr and the
// descriptors handed to it on purpose. Go opens its own files close-on-exec,
// but a descriptor lb inherited (a pipe of the cron job or the shell that
// started it) would otherwise pass on to a daemon, which would hold it open
// for as long as it lives.
func closeInheritedOnExec() {
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
}

// RunLauncher runs an `lb -D` command, which exits once the daemon it starts
// serves, and returns what it printed.
func RunLauncher(ctx context.Context, path string, args, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	closeInheritedOnExec()
	return cmd.CombinedOutput()
}

func notReady(err error) error {
	if err == nil {
		return fmt.Errorf("exited with status 0 before it was ready: %w", ErrNotReady)
	}
	return fmt.Errorf("%w: %w", ErrNotReady, err)
}

// Notify sends a state line such as "READY=1" to systemd when lb runs under
// a Type=notify unit (NOTIFY_SOCKET is set); otherwise it does nothing.
func Notify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
