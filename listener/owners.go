package listener

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// procDir is where the processes' directories are.
const procDir = "/proc"

// Owners returns the processes that hold a socket listening on the address
// that Bind(addr) would listen on, in increasing pid order: who serves it
// already. It finds the sockets in /proc/net/tcp or /proc/net/tcp6 and
// their holders among the descriptors of /proc/PID/fd, so it sees only the
// processes whose descriptors the caller may read (all of them as root,
// its own user's otherwise). members is how many sockets listen there,
// whoever holds them.
func Owners(addr string) (pids []int, members int, err error) {
	spec, err := parseBind(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("listener %s: %w", addr, err)
	}
	inodes, err := listening(specLocal(spec))
	if err != nil {
		return nil, 0, fmt.Errorf("listener %s: list listening sockets: %w", addr, err)
	}
	if len(inodes) == 0 {
		return nil, 0, nil
	}
	want := make(map[string]bool, len(inodes))
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	procs, err := os.ReadDir(procDir)
	if err != nil {
		return nil, len(inodes), fmt.Errorf("listener %s: %w", addr, err)
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		if holds(filepath.Join(procDir, p.Name(), "fd"), want) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, len(inodes), nil
}

// holds reports whether a descriptor in fdDir links to one of want.
func holds(fdDir string, want map[string]bool) bool {
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false // gone, or not ours to read
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") && want[target] {
			return true
		}
	}
	return false
}
