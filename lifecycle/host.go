package lifecycle

import (
	"context"
	"os"
	"syscall"
	"time"

	"lb/reload"
)

// Host is what a generation does to other processes and to the system: its
// side effects, behind one seam, so that the order of a start (everything
// that can fail before the old generations are signalled) is tested
// without processes. OS is the real one.
type Host interface {
	// CheckLB returns nil if pid is another running lb that may be
	// signalled.
	CheckLB(self reload.Self, pid int) error
	// Signal sends sig to pid.
	Signal(pid int, sig syscall.Signal) error
	// PreparePidFile makes the pid file's temporary file now, so that a
	// bad path fails the start before anything else.
	PreparePidFile(path string) (PidFile, error)
	// Notify tells systemd about the state, when it started lb.
	Notify(state string) error
	// Launch starts lb at path with args and env added to its environment
	// and waits until it serves (or, as a daemon, until its launcher
	// exits). It returns the new pid when known and, for a daemon, what
	// its launcher wrote.
	Launch(ctx context.Context, l Launch) (pid int, output []byte, err error)
	// Getenv returns an environment variable; Now, the time.
	Getenv(key string) string
	Now() time.Time
}

// PidFile is a pid file being written: Commit puts it in place, Abort
// gives it up.
type PidFile interface {
	Commit(pid int) error
	Abort()
}

// Launch is a successor to start.
type Launch struct {
	Path   string
	Args   []string
	Env    []string
	Daemon bool // the successor daemonizes itself (-D)
}

// OS is the Host of a real lb process.
type OS struct{}

func (OS) CheckLB(self reload.Self, pid int) error  { return self.CheckLB(pid) }
func (OS) Signal(pid int, sig syscall.Signal) error { return reload.Signal(pid, sig) }
func (OS) Notify(state string) error                { return reload.Notify(state) }
func (OS) Getenv(key string) string                 { return os.Getenv(key) }
func (OS) Now() time.Time                           { return time.Now() }

func (OS) PreparePidFile(path string) (PidFile, error) {
	p, err := reload.PreparePidFile(path)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (OS) Launch(ctx context.Context, l Launch) (int, []byte, error) {
	if l.Daemon {
		out, err := reload.RunLauncher(ctx, l.Path, l.Args, l.Env)
		return 0, out, err
	}
	pid, err := reload.Launch{Path: l.Path, Args: l.Args, Env: l.Env}.Run(ctx)
	return pid, nil, err
}

// host returns g's Host.
func (g *Generation) host() Host {
	if g.Host == nil {
		return OS{}
	}
	return g.Host
}
