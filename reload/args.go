// Package reload holds what it takes for one lb generation to replace
// another with no master process: the -sf/-st pid lists, checking that a
// pid really is lb before signalling it, the pid file, starting a successor
// or a daemon and learning whether it came up, and telling systemd.
package reload

import (
	"fmt"
	"strconv"
	"strings"
)

// Stop lists the old generations a new one replaces.
type Stop struct {
	// Soft are the pids given with -sf: told to finish their connections.
	Soft []int
	// Hard are the pids given with -st: told to stop at once.
	Hard []int
}

// SplitStopPids takes -sf and -st with their pid lists out of args (the
// arguments after the program name). Each flag takes every following
// argument up to the next one that starts with "-"; the list may be empty,
// as on a first start with `-sf $(cat lb.pid)` and no pid file yet.
func SplitStopPids(args []string) (rest []string, stop Stop, err error) {
	for i := 0; i < len(args); i++ {
		var list *[]int
		switch strings.TrimPrefix(args[i], "-") {
		case "sf", "-sf":
			list = &stop.Soft
		case "st", "-st":
			list = &stop.Hard
		}
		if list == nil || !strings.HasPrefix(args[i], "-") {
			rest = append(rest, args[i])
			continue
		}
		flag := args[i]
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			pid, err := strconv.Atoi(args[i])
			if err != nil || pid <= 0 {
				return nil, Stop{}, fmt.Errorf("%s: %q is not a process id", flag, args[i])
			}
			*list = append(*list, pid)
		}
	}
	return rest, stop, nil
}

// Empty reports whether no old generation is named.
func (s Stop) Empty() bool { return len(s.Soft) == 0 && len(s.Hard) == 0 }

// WithoutStopPids returns args without any -sf or -st and their pids, for a
// successor that names its own predecessors.
func WithoutStopPids(args []string) []string {
	rest, _, err := SplitStopPids(args)
	if err != nil {
		// The arguments were checked at start-up; keep them as they are.
		return args
	}
	return rest
}

// WithTakeover returns args with any -x flag and its value replaced by
// "-x path", or removed when path is "": a successor takes the sockets
// over from the admin socket its predecessor actually listens on, not
// from whatever -x named when the predecessor started.
func WithTakeover(args []string, path string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-x" || a == "--x":
			i++ // and its value
		case strings.HasPrefix(a, "-x=") || strings.HasPrefix(a, "--x="):
		default:
			out = append(out, a)
		}
	}
	if path != "" {
		out = append(out, "-x", path)
	}
	return out
}
