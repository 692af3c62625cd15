package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"lb/internal/bench/benchutil"
)

// Bounds of the processes the benchmark starts.
const (
	// readyWait bounds the wait for a proxy's port to accept.
	readyWait = 10 * time.Second
	// termWait is how long a proxy has to exit after SIGTERM, before
	// SIGKILL.
	termWait = 5 * time.Second
	// userHZ is the unit of the CPU times of /proc/PID/stat: 100 per
	// second on every Linux architecture lb runs on.
	userHZ = 100
)

// proc is a proxy process the benchmark started, in the foreground: its
// handle is all it takes to stop it, and it is never waited for by anyone
// else, so its pid cannot be reused while we hold it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
	waitErr error         // how it exited; read after done is closed
}

// startProc starts bin with args, its output going to dir/name.log. The
// process is in its own process group, so that a Ctrl-C on the terminal
// reaches this program alone, which then stops it; and it is killed
// should this program die first.
func startProc(name, bin string, args []string, dir string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// wait reaps the process once it exits.
func (p *proc) wait() {
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// exited reports whether the process has exited, and how ("exit status
// 1", "signal: killed").
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, errors.New("exit status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// exitError describes an exit: how, when, and the end of the output.
func (p *proc) exitError(how error, when string) error {
	return fmt.Errorf("%s exited (%v)%s; its output (%s):\n%s", p.name, how, when, p.logPath, indent(p.logTail(4096)))
}

// waitReady waits until addr accepts connections, at most readyWait; it
// fails at once if the process exits.
func (p *proc) waitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(readyWait)
	var lastErr error
	for ctx.Err() == nil {
		if gone, how := p.exited(); gone {
			return p.exitError(how, " before listening on "+addr)
		}
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing accepts on %s after %v (%v); its output (%s):\n%s",
				p.name, addr, readyWait, lastErr, p.logPath, indent(p.logTail(4096)))
		}
		benchutil.SleepCtx(ctx, 20*time.Millisecond)
	}
	return ctx.Err()
}

// stop ends the process: SIGTERM, then SIGKILL after termWait. It reports
// an error if the process is still there after both.
func (p *proc) stop() error {
	if gone, _ := p.exited(); gone {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(termWait)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	t.Reset(termWait)
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.name, p.cmd.Process.Pid, termWait)
	case <-t.C:
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// cpu returns the CPU time the process has used so far, all its threads,
// user and system.
func (p *proc) cpu() (time.Duration, bool) {
	if gone, _ := p.exited(); gone {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	// After the command name: field 3 (state) onwards; utime and stime
	// are fields 14 and 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / userHZ, true
}

// logTail returns the last n bytes of the process's output.
func (p *proc) logTail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(nothing)"
	}
	return s
}

// indent indents every line of s, for output under a message.
func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// registry is every process started, for the stop on a second Ctrl-C and
// the watchdog.
type registry struct {
	mu    sync.Mutex
	procs []*proc
}

// add remembers p.
func (r *registry) add(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// stopAll stops every process, in parallel, and returns the errors.
func (r *registry) stopAll() []error {
	r.mu.Lock()
	procs := append([]*proc(nil), r.procs...)
	r.mu.Unlock()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go stopInto(p, &errs[i], &wg)
	}
	wg.Wait() // each stop is bounded by 2 × termWait
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// stopInto stops p and stores the outcome in *err.
func stopInto(p *proc, err *error, wg *sync.WaitGroup) {
	defer wg.Done()
	*err = p.stop()
}

// lbConfig is lb's configuration: HTTP mode, one frontend on port, one
// round-robin backend with every server, no health checks.
func lbConfig(port int, backends []*backend) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
log_level = "error"

[defaults]
mode = "http"

[defaults.timeout]
connect = "5s"
client = "30s"
server = "30s"

[[frontend]]
name = "bench"
bind = ["127.0.0.1:%d"]
default_backend = "app"

[[backend]]
name = "app"
balance = "roundrobin"

[backend.check]
type = "none"
`, port)
	for _, be := range backends {
		fmt.Fprintf(&b, "\n[[backend.server]]\nname = %q\naddress = %q\n", be.name, be.addr())
	}
	return b.String()
}

// haproxyConfig is HAProxy's equivalent of lbConfig: mode http with its
// defaults (http-keep-alive, http-reuse safe), no logs, no health checks,
// and X-Forwarded-For added as lb adds it. threads > 0 sets nbthread;
// otherwise HAProxy starts one thread per CPU.
func haproxyConfig(port int, backends []*backend, threads int) string {
	var b strings.Builder
	b.WriteString("global\n")
	if threads > 0 {
		fmt.Fprintf(&b, "    nbthread %d\n", threads)
	}
	fmt.Fprintf(&b, `
defaults
    mode http
    option http-keep-alive
    http-reuse safe
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:%d
    default_backend app

backend app
    balance roundrobin
`, port)
	for _, be := range backends {
		fmt.Fprintf(&b, "    server %s %s\n", be.name, be.addr())
	}
	return b.String()
}
