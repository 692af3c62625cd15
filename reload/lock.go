package reload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lockPoll is how often Lock tries the lock again while another launch
// holds it.
const lockPoll = 2 * time.Millisecond

// Lock is the reload lock beside a pid file (".NAME.lock" in the pid
// file's directory, for pid file NAME; NAME.lock is left to operators'
// own scripts, such as scripts/safe-reload.sh): the
// launches that replace the generation that pid file names take turns
// under it, so that each one takes over from the generation serving at its
// turn. Its zero value holds nothing.
type Lock struct {
	f *os.File
}

// LockPath is the reload lock's path for a pid file.
func LockPath(pidFile string) string {
	return filepath.Join(filepath.Dir(pidFile), "."+filepath.Base(pidFile)+".lock")
}

// AcquireLock takes the reload lock of pidFile, waiting for the launch that
// holds it until ctx ends. The lock goes with the open file description:
// it is released by Release, or by the kernel when this process dies, so a
// launch that crashed never blocks the next one. The file is opened
// without following a symbolic link, and closed on exec so that no child
// inherits the lock.
func AcquireLock(ctx context.Context, pidFile string) (*Lock, error) {
	path := LockPath(pidFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("reload lock %s is a symbolic link: lb does not follow one there; remove it", path)
		}
		return nil, fmt.Errorf("reload lock: %w", err)
	}
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("reload lock %s: flock: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("reload lock %s: another launch holds it: %w", path, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Release lets the next launch go. The file stays: removing it would let a
// launch that opened it before the removal lock a file no one else sees.
// Releasing a nil or released Lock does nothing.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}
