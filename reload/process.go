package reload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Self describes this process, to recognise other lb processes by.
type Self struct {
	Pid  int
	Exe  string // the executable, as /proc/self/exe names it
	Comm string // the command name, as /proc/self/comm gives it
}

// procRoot is where /proc is; tests do not change it, it only names the
// mount in one place.
const procRoot = "/proc"

// LookupSelf reads this process's identity.
func LookupSelf() Self {
	s := Self{Pid: os.Getpid()}
	s.Exe, _ = exePath(s.Pid)
	s.Comm, _ = comm(s.Pid)
	return s
}

func exePath(pid int) (string, error) {
	p, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	return strings.TrimSuffix(p, " (deleted)"), err
}

func comm(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b)), err
}

// ErrNotLB is wrapped by CheckLB's errors for a pid that is not lb.
var ErrNotLB = errors.New("not an lb process")

// CheckLB reports whether pid is another lb process that may be signalled:
// it must exist, not be this process, and run the same executable as this
// one (the file may have been replaced since, in a binary upgrade) or have
// the same command name. A stale pid file can name any process after a
// reboot; this keeps lb from signalling it.
func (s Self) CheckLB(pid int) error {
	if pid == s.Pid {
		return fmt.Errorf("pid %d is this process: %w", pid, ErrNotLB)
	}
	name, err := comm(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pid %d: no such process", pid)
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	exe, exeErr := exePath(pid)
	if exeErr == nil && s.Exe != "" && exe == s.Exe {
		return nil
	}
	if s.Comm != "" && name == s.Comm {
		return nil
	}
	what := name
	if exeErr == nil {
		what = exe
	}
	return fmt.Errorf("pid %d is %s, %w", pid, what, ErrNotLB)
}

// Signal sends sig to pid.
func Signal(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}

// Alive reports whether a process with pid exists (and is not a zombie
// waiting to be reaped).
func Alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
