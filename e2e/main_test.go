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

// lbProc is a running lb process.
type lbProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // the result of Wait, once done is closed
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

// startLB starts lb with args and waits until it logs that it started. The
// process is stopped, and checked for data races, when the test ends.
func startLB(t *testing.T, args ...string) *lbProc {
	t.Helper()
	p := launch(t, args...)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), `"message":"lb started"`) {
		select {
		case <-p.done:
			t.Fatalf("lb exited before it started: %v\nstderr:\n%s", p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lb did not start within 20s; stderr:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// launch starts lb with args without waiting for anything.
func launch(t *testing.T, args ...string) *lbProc {
	t.Helper()
	p := &lbProc{cmd: exec.Command(lbBin, args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.stop(t)
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("lb reported a data race:\n%s", p.stderr)
		}
	})
	return p
}

// wait records the process's exit.
func (p *lbProc) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

// stop sends SIGTERM and waits for the exit, killing after 10 s.
func (p *lbProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("lb did not exit within 10s of SIGTERM; stderr:\n%s", p.stderr)
	}
}

// exitCode waits up to 20 s for the process to exit and returns its code.
func (p *lbProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("lb still running after 20s; stderr:\n%s", p.stderr)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("lb: %v", p.err)
	return -1
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

// runLB runs lb to completion and returns its exit code, stdout and stderr.
func runLB(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lbBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A daemon that kept lb's stdout or stderr open would make Run wait
	// for it forever: fail fast instead.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("lb %v exited but something it started still holds its stdout or stderr", args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running lb %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
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
