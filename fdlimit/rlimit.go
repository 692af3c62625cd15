package fdlimit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Limit is the process's RLIMIT_NOFILE.
type Limit struct {
	// Soft is the limit in force: lb cannot open a descriptor numbered
	// Soft or higher.
	Soft uint64
	// Hard is the most Soft may be raised to without privileges.
	Hard uint64
}

// Int returns the soft limit as an int, at most the largest int.
func (l Limit) Int() int {
	return int(min(l.Soft, uint64(maxInt)))
}

const maxInt = int(^uint(0) >> 1)

// Raise raises the soft RLIMIT_NOFILE to the hard limit, as HAProxy does,
// and returns the limits then in force. Go already raises it at start (to
// one below the hard limit, and puts the old soft limit back for the
// programs it starts); Raise makes it the hard limit for lb and for the
// generations it starts. On error, the limits returned are those read, if
// any.
func Raise() (Limit, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return Limit{}, fmt.Errorf("reading the file descriptor limit (RLIMIT_NOFILE): %w", err)
	}
	if r.Cur < r.Max {
		raised := unix.Rlimit{Cur: r.Max, Max: r.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
			return Limit{Soft: r.Cur, Hard: r.Max}, fmt.Errorf("raising the soft file descriptor limit from %d to the hard limit %d: %w", r.Cur, r.Max, err)
		}
		r = raised
	}
	return Limit{Soft: r.Cur, Hard: r.Max}, nil
}

// Current returns the soft RLIMIT_NOFILE now, or 0 if it cannot be read:
// for messages about running out, which may come after someone changed it
// (prlimit).
func Current() uint64 {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) != nil {
		return 0
	}
	return r.Cur
}
