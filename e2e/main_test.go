// Package e2e tests the real lb binary: it builds lb once, starts it as a
// process on loopback in front of real backends, and checks what clients,
// the logs and the exit codes show.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lbBin is the lb binary under test, built by TestMain.
var lbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lbBin = filepath.Join(dir, "lb")
	args := []string{"build", "-o", lbBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "lb")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lb:", err)
		os.Exit(1)
	}
	// A race-enabled process sleeps 1 s at exit by default (so that other
	// threads can finish their reports); every lb -D launcher and every
	// stopped generation would pay it. 50 ms is plenty on loopback tests.
	if raceEnabled && !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=50"))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process writer and a test reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeConfig writes text to a fresh lb.toml and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lb.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lbProc is a process that runs lb, directly or through a script.
type lbProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer // stdout and stderr together
	done   chan struct{}
	err    error // the result of Wait, once done is closed
}

// startLB starts lb with args and waits until it logs that it started. The
// process is stopped, and checked for data races, when the test ends.
func startLB(t *testing.T, args ...string) *lbProc {
	t.Helper()
	p := launch(t, args...)
	p.waitOutput(t, `"message":"lb started"`)
	return p
}

// launch starts lb with args without waiting for anything.
func launch(t *testing.T, args ...string) *lbProc {
	t.Helper()
	return startProc(t, nil, append([]string{lbBin}, args...)...)
}

// startProc starts argv with env (nil: this process's) without waiting for
// anything. When the test ends the process is stopped if it still runs,
// and its output is checked for data race reports.
func startProc(t *testing.T, env []string, argv ...string) *lbProc {
	t.Helper()
	p := &lbProc{cmd: exec.Command(argv[0], argv[1:]...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.stop(t)
		checkRace(t, fmt.Sprint(argv), p.stderr.String())
	})
	return p
}

// wait records the process's exit.
func (p *lbProc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *lbProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit, killing after 10 s.
func (p *lbProc) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%v did not exit within 10s of SIGTERM; output:\n%s", p.cmd.Args, p.stderr)
	}
}

// exitCode waits up to 20 s for the process to exit and returns its status
// (128+N when killed by signal N, as a shell reports it).
func (p *lbProc) exitCode(t *testing.T) int {
	t.Helper()
	return p.exitCodeWithin(t, 20*time.Second)
}

// exitCodeWithin is exitCode waiting up to d.
func (p *lbProc) exitCodeWithin(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%v still running after %v; output:\n%s", p.cmd.Args, d, p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%v: %v", p.cmd.Args, p.err)
	}
	return 0
}

// waitOutput waits up to 20 s for the process's output to contain s, and
// fails at once if the process exits without writing it.
func (p *lbProc) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), s) {
		if !p.running() {
			if strings.Contains(p.stderr.String(), s) {
				return // written just before the exit
			}
			t.Fatalf("%v exited (%v) before %q was in its output:\n%s", p.cmd.Args, p.err, s, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in the output of %v after 20s:\n%s", s, p.cmd.Args, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLines returns lb's JSON log lines whose message is msg.
func (p *lbProc) logLines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// checkRace fails the test if output, from or about what, holds a data race
// report.
func checkRace(t *testing.T, what, output string) {
	t.Helper()
	if strings.Contains(output, "WARNING: DATA RACE") {
		t.Errorf("%s: lb reported a data race:\n%s", what, output)
	}
}

// cmdResult is how a command ended.
type cmdResult struct {
	code           int
	stdout, stderr string
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runLB runs lb to completion, within 30 s, and returns its exit code,
// stdout and stderr.
func runLB(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	r := runCmd(t, 30*time.Second, nil, append([]string{lbBin}, args...)...)
	return r.code, r.stdout, r.stderr
}

// runCmd runs argv to completion, within d, with env (nil: this
// process's). A daemon left holding the command's stdout or stderr is an
// error: a shell, cron or CI job would wait on it for ever. So is a data
// race report on stderr.
func runCmd(t *testing.T, d time.Duration, env []string, argv ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within %v; %v", argv, d, r)
	}
	var ee *exec.ExitError
	switch {
	case errors.Is(err, exec.ErrWaitDelay):
		t.Errorf("%v exited, but something it started still holds its stdout or stderr", argv)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", argv, err)
	}
	checkRace(t, fmt.Sprint(argv), r.stderr)
	return r
}

// readPid returns the pid in a pid file, or 0.
func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// procStat returns pid's state letter and parent pid from /proc.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z'
}

// isLB reports whether pid is a live lb process.
func isLB(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == filepath.Base(lbBin) && alive(pid)
}

// waitGone waits up to 20 s for pid to exit.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	waitGoneWithin(t, 20*time.Second, what, pid)
}

// waitGoneWithin waits up to d for every pid to have exited.
func waitGoneWithin(t *testing.T, d time.Duration, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: pid %d still running after %v", what, pid, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stopLBs sends SIGTERM to those of pids that are live lb processes, waits
// up to d for them to exit, and kills, as an error, any still running. A
// pid now used by another program is left alone.
func stopLBs(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	var running []int
	for _, pid := range pids {
		if isLB(pid) {
			running = append(running, pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(d)
	for _, pid := range running {
		for isLB(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if isLB(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("lb (pid %d) still running %v after SIGTERM: killed", pid, d)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is a real backend on loopback: on each connection it writes its
// name and a newline, then echoes everything back.
type server struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startServer(t *testing.T, name string) *server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{name: name, ln: ln}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			if _, err := io.WriteString(c, s.name+"\n"); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

// close stops the server; it is safe to call more than once.
func (s *server) close() {
	s.ln.Close()
	s.wg.Wait()
}

// whoAnswers connects to addr (from local address from, if not empty),
// reads the server's name and closes.
func whoAnswers(t *testing.T, addr, from string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("connection through lb to %s: no server name: %v", addr, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// holdConn connects through lb, reads the server's name and returns the
// open connection.
func holdConn(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var name []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			c.Close()
			t.Fatalf("no server name through lb: %v", err)
		}
		if b[0] == '\n' {
			return string(name), c
		}
		name = append(name, b[0])
	}
}

// expectAnswer fails the test unless a connection to addr is answered by
// the server named want.
func expectAnswer(t *testing.T, addr, want string) {
	t.Helper()
	if got := whoAnswers(t, addr, ""); got != want {
		t.Fatalf("connection through %s answered by %q, want %q", addr, got, want)
	}
}

// load is clients that open new connections continuously through lb, each
// sending a line and checking the echo, until stopped.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

// startLoad starts n clients against addr, each making at most max
// connections, back to back.
func startLoad(addr string, n, max int) *load { return startLoadEvery(addr, n, max, 0) }

// startLoadEvery is startLoad with a pause between a client's connections.
func startLoadEvery(addr string, n, max int, pause time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	for i := range n {
		l.wg.Add(1)
		go l.client(addr, i, max, pause)
	}
	return l
}

// fail counts a failure and keeps its first errors.
func (l *load) fail(err error) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, err.Error())
	}
	l.mu.Unlock()
}

// addStream adds a client that keeps one connection through lb for the
// whole load and, on it, sends size bytes and reads their echo, pausing
// between exchanges, at most max times: a keep-alive client with small
// sizes and a pause, a long stream with large ones and none. Any failure
// counts, and ends the client.
func (l *load) addStream(addr string, size, max int, pause time.Duration) {
	l.wg.Add(1)
	go l.stream(addr, size, max, pause)
}

func (l *load) stream(addr string, size, max int, pause time.Duration) {
	defer l.wg.Done()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		l.fail(fmt.Errorf("stream: dial: %w", err))
		return
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		l.fail(fmt.Errorf("stream: read server name: %w", err))
		return
	}
	msg := bytes.Repeat([]byte("x"), size-1)
	msg = append(msg, '\n')
	got := make([]byte, size)
	for i := range max {
		select {
		case <-l.stop:
			return
		default:
		}
		if i > 0 && pause > 0 {
			time.Sleep(pause)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			l.fail(fmt.Errorf("stream: exchange %d: write: %w", i, err))
			return
		}
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, msg) {
			l.fail(fmt.Errorf("stream: exchange %d: echo: %v", i, err))
			return
		}
		l.ok.Add(1)
	}
}

func (l *load) client(addr string, id, max int, pause time.Duration) {
	defer l.wg.Done()
	buf := make([]byte, 64)
	for i := 0; i < max; i++ {
		if i > 0 && pause > 0 {
			time.Sleep(pause)
		}
		select {
		case <-l.stop:
			return
		default:
		}
		if err := exchange(addr, fmt.Sprintf("client %d request %d\n", id, i), buf); err != nil {
			l.fail(err)
			continue
		}
		l.ok.Add(1)
	}
}

// exchange makes one connection, sends msg and checks that the server's
// name line and then msg come back.
func exchange(addr, msg string, buf []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return fmt.Errorf("read server name: %w", err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != msg {
		return fmt.Errorf("echo %q, %v; want %q", got, err, msg)
	}
	return nil
}

// finish stops the clients and returns the counts.
func (l *load) finish() (ok, failed int64, errs []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// waitPort waits up to 20 s until something accepts on 127.0.0.1:port.
func waitPort(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d after 20s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// guardDeadline is when a long test gives up: d from now, but no later than
// a third of the time left before go test's -timeout, so that on a slow
// machine the test fails naming what it waited for, and the tests after it
// still have time, rather than the whole package panicking at the global
// timeout.
func guardDeadline(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	if end, ok := t.Deadline(); ok {
		d = min(d, time.Until(end)/3)
	}
	return time.Now().Add(d)
}

// waitPidFile waits up to 20 s for the pid file at path to name a live
// process other than old, and returns it; log, when set, gives lb's log
// for the failure message.
func waitPidFile(t *testing.T, path string, old int, log func() string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p := readPid(path); p != 0 && p != old && alive(p) {
			return p
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("the pid file %s did not name a new live process (old pid %d) within 20s; it holds %d", path, old, readPid(path))
			if log != nil {
				msg += "; log:\n" + log()
			}
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startGreetingLB starts lb in TCP mode in front of a server named "s"
// that greets each connection with its name and then echoes, and returns
// lb and a connection through it whose greeting was read.
func startGreetingLB(t *testing.T) (*lbProc, net.Conn, *bufio.Reader) {
	t.Helper()
	s := startServer(t, "s")
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, config(port, "", serverLine(s.name, s.addr(), ""))))
	p.waitOutput(t, `"message":"lb started"`)
	c, br := dialGreeted(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	return p, c, br
}

// dialGreeted connects to addr, with a deadline 2 minutes ahead, and reads
// the greeting of the server named name; the connection closes when the
// test ends.
func dialGreeted(t *testing.T, addr, name string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != name+"\n" {
		t.Fatalf("greeting %q, %v; want %q", line, err, name+"\n")
	}
	return c, br
}
