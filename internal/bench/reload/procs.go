package main

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tracker remembers every daemon process the benchmark started, by pid and
// start time, so that it signals only those very processes, never a pid
// that was reused by something else.
type tracker struct {
	mu      sync.Mutex
	procs   map[int]uint64 // pid -> start time (clock ticks since boot)
	markers []string       // a process whose command line holds one of these is ours
}

func newTracker() *tracker { return &tracker{procs: map[int]uint64{}} }

// procStat returns a process's state letter and start time from
// /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	// Fields after the command name start with field 3 (state); the
	// start time is field 22.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// add remembers pid as one of ours, if it is running.
func (t *tracker) add(pid int) {
	if pid <= 0 {
		return
	}
	_, start, ok := procStat(pid)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.procs[pid]; !known {
		t.procs[pid] = start
	}
}

// addMarker makes scan pick up every process whose command line contains
// s (a temporary directory of this run).
func (t *tracker) addMarker(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.markers = append(t.markers, s)
}

// scan adds every running process whose command line names one of the
// markers: a daemon whose pid never reached a pid file (a reload command
// that timed out, say) is still found.
func (t *tracker) scan() {
	t.mu.Lock()
	markers := append([]string(nil), t.markers...)
	t.mu.Unlock()
	if len(markers) == 0 {
		return
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		for _, m := range markers {
			if strings.Contains(cmd, m) {
				t.add(pid)
				break
			}
		}
	}
}

// alive reports whether pid is still the process we remembered and has not
// exited (a zombie has exited).
func (t *tracker) alive(pid int) bool {
	t.mu.Lock()
	want, known := t.procs[pid]
	t.mu.Unlock()
	if !known {
		return false
	}
	state, start, ok := procStat(pid)
	return ok && start == want && state != 'Z' && state != 'X'
}

// live returns the remembered processes that are still running, sorted.
func (t *tracker) live() []int {
	t.mu.Lock()
	pids := make([]int, 0, len(t.procs))
	for p := range t.procs {
		pids = append(pids, p)
	}
	t.mu.Unlock()
	var out []int
	for _, p := range pids {
		if t.alive(p) {
			out = append(out, p)
		} else {
			t.mu.Lock()
			delete(t.procs, p)
			t.mu.Unlock()
		}
	}
	slices.Sort(out)
	return out
}

// signal sends sig to pid if it is still the process we remembered.
func (t *tracker) signal(pid int, sig syscall.Signal) {
	if t.alive(pid) {
		_ = syscall.Kill(pid, sig)
	}
}

// waitGone waits until none of pids is alive or bound has passed, and
// returns those still alive.
func (t *tracker) waitGone(pids []int, bound time.Duration) []int {
	deadline := time.Now().Add(bound)
	for {
		var left []int
		for _, p := range pids {
			if t.alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll sends SIGTERM to every process of ours still running, SIGKILL to
// those still there after termBound, and returns the pids that survived
// even that (after a further bounded wait).
func (t *tracker) stopAll(termBound time.Duration) []int {
	t.scan()
	pids := t.live()
	if len(pids) == 0 {
		return nil
	}
	for _, p := range pids {
		t.signal(p, syscall.SIGTERM)
	}
	left := t.waitGone(pids, termBound)
	for _, p := range left {
		t.signal(p, syscall.SIGKILL)
	}
	left = t.waitGone(left, 5*time.Second)
	// A process that appeared meanwhile (a launcher that forked late).
	t.scan()
	for _, p := range t.live() {
		if !slices.Contains(left, p) {
			t.signal(p, syscall.SIGKILL)
			left = append(left, p)
		}
	}
	return t.waitGone(left, 5*time.Second)
}
