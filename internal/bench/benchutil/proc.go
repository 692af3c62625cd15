package benchutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the processes the benchmarks start.
const (
	// ReadyWait bounds the wait for a process's port to accept.
	ReadyWait = 10 * time.Second
	// TermWait is how long a process has to exit after SIGTERM, before
	// SIGKILL.
	TermWait = 5 * time.Second
)

// Spec is a process to start.
type Spec struct {
	// Name names the process in messages and its log file, Dir/Name.log,
	// which takes its standard error (and its standard output, unless
	// Stdout is set).
	Name string
	Bin  string
	Args []string
	// Dir is the working directory and the log's.
	Dir string
	// Env is added to this program's environment.
	Env []string
	// CPUs, if set, pins the process and every thread it will have to
	// these CPUs (a taskset(1) list: "0", "1-3"): it runs as
	// `taskset -c CPUs BIN ARGS...`, which execs BIN in the same process,
	// so the pid is BIN's.
	CPUs string
	// Stdin and Stdout, if set, are the child's ends of pipes the caller
	// made; the caller closes its copies after StartProc.
	Stdin, Stdout *os.File
}

// Command is the command line as started, for messages and reports.
func (s Spec) Command() string {
	args := append([]string{s.Bin}, s.Args...)
	if s.CPUs != "" {
		args = append([]string{"taskset", "-c", s.CPUs}, args...)
	}
	if len(s.Env) > 0 {
		args = append(append([]string{}, s.Env...), args...)
	}
	return strings.Join(args, " ")
}

// Proc is a process a benchmark started, in the foreground: its handle is
// all it takes to stop it, and it is never waited for by anyone else, so
// its pid cannot be reused while it runs.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error         // how it exited; read after done is closed
}

// StartProc starts the process of s. It is in its own process group, so
// that a Ctrl-C on the terminal reaches the benchmark alone, which then
// stops it; and it is killed should the benchmark die first.
func StartProc(s Spec) (*Proc, error) {
	bin, args := s.Bin, s.Args
	if s.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("%s: pin to CPUs %s: %w (taskset is in Debian's util-linux)", s.Name, s.CPUs, err)
		}
		bin, args = ts, append([]string{"-c", s.CPUs, s.Bin}, s.Args...)
	}
	logPath := filepath.Join(s.Dir, s.Name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create its log: %w", s.Name, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	if s.Stdout != nil {
		cmd.Stdout = s.Stdout
	}
	if s.Stdin != nil {
		cmd.Stdin = s.Stdin
	}
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", s.Name, s.Bin, err)
	}
	p := &Proc{Name: s.Name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// wait reaps the process once it exits.
func (p *Proc) wait() {
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how ("exit status
// 1", "signal: killed").
func (p *Proc) Exited() (bool, error) {
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

// Succeeded reports whether the process has exited with status 0.
func (p *Proc) Succeeded() bool {
	select {
	case <-p.done:
		return p.waitErr == nil
	default:
		return false
	}
}

// ExitError describes an exit: how, when, and the end of the output.
func (p *Proc) ExitError(how error, when string) error {
	return fmt.Errorf("%s exited (%w)%s; its output (%s):\n%s", p.Name, how, when, p.LogPath, Indent(p.LogTail(4096)))
}

// WaitReady waits until addr accepts connections, at most ReadyWait; it
// fails at once if the process exits.
func (p *Proc) WaitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(ReadyWait)
	var lastErr error
	for ctx.Err() == nil {
		if gone, how := p.Exited(); gone {
			return p.ExitError(how, " before listening on "+addr)
		}
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing accepts on %s after %v (%w); its output (%s):\n%s",
				p.Name, addr, ReadyWait, lastErr, p.LogPath, Indent(p.LogTail(4096)))
		}
		SleepCtx(ctx, 20*time.Millisecond)
	}
	return ctx.Err()
}

// Stop ends the process: SIGTERM, then SIGKILL after TermWait. It reports
// an error if the process is still there after both.
func (p *Proc) Stop() error {
	if gone, _ := p.Exited(); gone {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(TermWait)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	t.Reset(TermWait)
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.Name, p.Pid(), TermWait)
	case <-t.C:
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.Name, p.Pid())
	}
}

// CPU returns the CPU time the process has used so far, all its threads,
// user and system; false once it has exited or if /proc cannot tell.
func (p *Proc) CPU() (time.Duration, bool) {
	if gone, _ := p.Exited(); gone {
		return 0, false
	}
	d, err := CPUTime(p.Pid())
	return d, err == nil
}

// Usage is what /proc tells of the process now: resident memory and open
// file descriptors.
func (p *Proc) Usage() (Usage, error) {
	if gone, how := p.Exited(); gone {
		return Usage{}, p.ExitError(how, "")
	}
	return ReadUsage(p.Pid())
}

// LogTail returns the last n bytes of the process's output.
func (p *Proc) LogTail(n int64) string {
	f, err := os.Open(p.LogPath)
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

// Indent indents every line of s, for output under a message.
func Indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Registry is every process started, for the stop at the end, on a second
// Ctrl-C and by a watchdog. The zero value is ready.
type Registry struct {
	mu    sync.Mutex
	procs []*Proc
}

// Add remembers p.
func (r *Registry) Add(p *Proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// StopAll stops every process, in parallel, and returns the errors.
func (r *Registry) StopAll() []error {
	r.mu.Lock()
	procs := append([]*Proc(nil), r.procs...)
	r.mu.Unlock()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go stopInto(p, &errs[i], &wg)
	}
	wg.Wait() // each stop is bounded by 2 × TermWait
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// stopInto stops p and stores the outcome in *err.
func stopInto(p *Proc, err *error, wg *sync.WaitGroup) {
	defer wg.Done()
	*err = p.Stop()
}

// LookBinary finds bin: a path, or with inPath a name looked up in PATH.
func LookBinary(bin string, inPath bool) (string, error) {
	if inPath && !strings.Contains(bin, "/") {
		return exec.LookPath(bin)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", abs)
	}
	return abs, nil
}

// WaitBounded waits for wg, at most bound, and reports whether it is done.
func WaitBounded(wg *sync.WaitGroup, bound time.Duration) bool {
	done := make(chan struct{})
	go waitGroupDone(wg, done)
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// waitGroupDone closes done once wg is done.
func waitGroupDone(wg *sync.WaitGroup, done chan<- struct{}) {
	wg.Wait()
	close(done)
}

// Supervise watches the run of a benchmark program whose processes r
// holds. The first SIGINT or SIGTERM cancels ctx, the measurements', so
// that the run stops, cleans up and reports what it measured; a second one
// stops every process of r at once and exits 130. A run that lasts over
// bound stops every process and exits 3. stop ends the watch: call it once
// the run is over. logf says what it does.
func (r *Registry) Supervise(bound time.Duration, logf func(format string, args ...any)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	life, end := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go r.handleSignals(life, sigs, cancel, logf)
	watchdog := time.AfterFunc(bound, func() {
		logf("watchdog: the run took over %v; stopping every process started", bound)
		r.StopAll()
		os.Exit(3)
	})
	return ctx, func() {
		watchdog.Stop()
		signal.Stop(sigs)
		end()
		cancel()
	}
}

// handleSignals cancels the measurements on the first signal of sigs, and
// on a second one stops every process of r and exits (see Supervise). It
// returns when life is done: the run is over.
func (r *Registry) handleSignals(life context.Context, sigs <-chan os.Signal, cancel context.CancelFunc, logf func(format string, args ...any)) {
	select {
	case s := <-sigs:
		logf("%v: stopping; a second signal stops at once", s)
		cancel()
	case <-life.Done():
		return
	}
	select {
	case s := <-sigs:
		logf("%v: stopping every process started, at once", s)
		r.StopAll()
		os.Exit(130)
	case <-life.Done():
	}
}
