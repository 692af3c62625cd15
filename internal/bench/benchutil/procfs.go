package benchutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times of /proc/PID/stat: 100 per second on
// every Linux architecture lb runs on.
const userHZ = 100

// CPUTime returns the CPU time process pid has used so far, all its
// threads, user and system, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("CPU time of pid %d: %w", pid, err)
	}
	ticks, err := ParseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("CPU time of pid %d: %w", pid, err)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ParseStatCPU returns utime+stime, in clock ticks, from the text of
// /proc/PID/stat. The command name, field 2, is in parentheses and may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func ParseStatCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')' after the command name")
	}
	// After the command name: field 3 (state) onwards; utime and stime
	// are fields 14 and 15.
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: stime: %w", err)
	}
	return ut + st, nil
}

// Usage is a process's resident memory and open file descriptors.
type Usage struct {
	RSS int64 // bytes, VmRSS
	FDs int
}

// ReadUsage reads process pid's VmRSS from /proc/PID/status and counts the
// entries of /proc/PID/fd.
func ReadUsage(pid int) (Usage, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Usage{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	rss, err := ParseVmRSS(b)
	if err != nil {
		return Usage{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	f, err := os.Open(dir + "/fd")
	if err != nil {
		return Usage{}, fmt.Errorf("file descriptors of pid %d: %w", pid, err)
	}
	defer f.Close()
	// Names only: no stat of 20,000 links.
	names, err := f.Readdirnames(-1)
	if err != nil {
		return Usage{}, fmt.Errorf("file descriptors of pid %d: %w", pid, err)
	}
	return Usage{RSS: rss, FDs: len(names)}, nil
}

// ParseVmRSS returns the VmRSS line of /proc/PID/status in bytes.
func ParseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || !bytes.Equal(f[1], []byte("kB")) {
			return 0, fmt.Errorf("status: malformed VmRSS line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("status: malformed VmRSS line %q", bytes.TrimSpace(line))
		}
		return kb << 10, nil
	}
	return 0, errors.New("status: no VmRSS line (a kernel thread, or a zombie)")
}

// RaiseNoFile raises this process's soft limit of open files to the hard
// limit, and returns the new soft limit.
func RaiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", l.Max, err)
		}
	}
	return l.Cur, nil
}

// ParseCPUList parses a list of CPUs as taskset -c takes it: "0", "1-3",
// "0,2-3".
func ParseCPUList(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 4096 {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// CPUBusy returns how long the given CPUs have been busy (any process, the
// kernel, interrupts: everything but idle and iowait) since boot, added
// up, from /proc/stat.
func CPUBusy(cpus []int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("CPU time of CPUs %v: %w", cpus, err)
	}
	ticks, err := ParseCPUBusy(b, cpus)
	if err != nil {
		return 0, fmt.Errorf("CPU time of CPUs %v: %w", cpus, err)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ParseCPUBusy adds up the busy clock ticks of the given CPUs from the text
// of /proc/stat: each "cpuN" line's fields but idle (4th) and iowait (5th),
// and not guest and guest_nice, which user and nice already count.
func ParseCPUBusy(stat []byte, cpus []int) (uint64, error) {
	var total uint64
	found := 0
	for line := range bytes.Lines(stat) {
		f := bytes.Fields(line)
		if len(f) < 8 || !bytes.HasPrefix(f[0], []byte("cpu")) || len(f[0]) == 3 {
			continue
		}
		n, err := strconv.Atoi(string(f[0][3:]))
		if err != nil || !slices.Contains(cpus, n) {
			continue
		}
		found++
		// user nice system idle iowait irq softirq steal [guest guest_nice]
		for i, v := range f[1:min(len(f), 9)] {
			if i == 3 || i == 4 {
				continue
			}
			x, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("stat: %s: %w", f[0], err)
			}
			total += x
		}
	}
	if found != len(cpus) {
		return 0, fmt.Errorf("stat: %d of CPUs %v found", found, cpus)
	}
	return total, nil
}
