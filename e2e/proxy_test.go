package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverLine is one [[backend.server]] table.
func serverLine(name, addr string, extra string) string {
	return fmt.Sprintf("[[backend.server]]\nname = %q\naddress = %q\n%s\n", name, addr, extra)
}

// config returns a one-frontend, one-backend configuration.
func config(port int, backend string, servers ...string) string {
	return fmt.Sprintf(`[global]
log_level = "info"

[defaults.timeout]
connect = "2s"
client = "30s"
server = "30s"

[[frontend]]
name = "web"
bind = ["127.0.0.1:%d"]
default_backend = "app"

[[backend]]
name = "app"
%s
%s`, port, backend, strings.Join(servers, "\n"))
}

func TestBytesArriveIntactBothWays(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	port := freePort(t)
	startLB(t, "-f", writeConfig(t, config(port, "", serverLine("a", a.addr(), ""), serverLine("b", b.addr(), ""))))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	sizes := []int{1, 1000, 64 << 10, 1 << 20, 32 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, len(sizes))
	for _, n := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- roundTrip(addr, n)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// roundTrip sends n random bytes through lb to an echo server, half-closes,
// and checks that exactly those bytes come back after the server's name.
func roundTrip(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("%d bytes: read: %w", n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("%d bytes: write: %w", n, err)
	}
	i := bytes.IndexByte(got, '\n')
	if i < 0 || !bytes.Equal(got[i+1:], payload) {
		return fmt.Errorf("%d bytes: got %d bytes back, not the ones sent", n, len(got))
	}
	return nil
}

// TestWeightsHold keeps 200 connections open at once, so that every
// algorithm, the load-aware ones too, must share them 3:1 by weight.
func TestWeightsHold(t *testing.T) {
	for _, tc := range []struct {
		balance string
		tol     int
	}{{"roundrobin", 0}, {"leastconn", 1}, {"random", 20}} {
		t.Run(tc.balance, func(t *testing.T) {
			heavy, light := startServer(t, "heavy"), startServer(t, "light")
			port := freePort(t)
			startLB(t, "-f", writeConfig(t, config(port, fmt.Sprintf("balance = %q", tc.balance),
				serverLine("heavy", heavy.addr(), "weight = 3"), serverLine("light", light.addr(), "weight = 1"))))
			counts := map[string]int{}
			const n = 200
			for range n {
				name, c := holdConn(t, fmt.Sprintf("127.0.0.1:%d", port))
				defer c.Close()
				counts[name]++
			}
			for name, want := range map[string]int{"heavy": 150, "light": 50} {
				if d := counts[name] - want; d < -tc.tol || d > tc.tol {
					t.Errorf("%s got %d of %d connections, want %d±%d (weights 3:1); all: %v", name, counts[name], n, want, tc.tol, counts)
				}
			}
		})
	}
}

func TestSourceKeepsClientOnServer(t *testing.T) {
	servers := []*server{startServer(t, "a"), startServer(t, "b"), startServer(t, "c")}
	port := freePort(t)
	var lines []string
	for _, s := range servers {
		lines = append(lines, serverLine(s.name, s.addr(), ""))
	}
	startLB(t, "-f", writeConfig(t, config(port, `balance = "source"`, lines...)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	first := map[string]string{}
	used := map[string]bool{}
	for i := 2; i < 40; i++ {
		from := fmt.Sprintf("127.0.0.%d", i)
		first[from] = whoAnswers(t, addr, from)
		used[first[from]] = true
	}
	for round := range 3 {
		for from, want := range first {
			if got := whoAnswers(t, addr, from); got != want {
				t.Fatalf("round %d: client %s went to %s, first to %s", round, from, got, want)
			}
		}
	}
	if len(used) != 3 {
		t.Errorf("38 client addresses used servers %v, want all 3", used)
	}
}

func TestDeadServerSkippedByRetry(t *testing.T) {
	live := startServer(t, "live")
	dead := startServer(t, "dead")
	dead.close()
	port := freePort(t)
	// Without health checks, which would take the dead server out before
	// the first connection: this is about the data path's retry.
	p := startLB(t, "-f", writeConfig(t, config(port, "retries = 1\n[backend.check]\ntype = \"none\"",
		serverLine("dead", dead.addr(), ""), serverLine("live", live.addr(), ""))))
	for i := range 30 {
		if got := whoAnswers(t, fmt.Sprintf("127.0.0.1:%d", port), ""); got != "live" {
			t.Fatalf("connection %d answered by %q", i, got)
		}
	}
	if n := len(p.logLines(t, "connect failed")); n == 0 {
		t.Fatal("lb never logged a failed connect to the dead server")
	}
}

func TestBackupOnlyWhenPrimariesGone(t *testing.T) {
	p1, p2, bk := startServer(t, "p1"), startServer(t, "p2"), startServer(t, "backup")
	port := freePort(t)
	startLB(t, "-f", writeConfig(t, config(port, "retries = 3",
		serverLine("p1", p1.addr(), ""), serverLine("p2", p2.addr(), ""), serverLine("backup", bk.addr(), "backup = true"))))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for range 20 {
		if got := whoAnswers(t, addr, ""); got == "backup" {
			t.Fatal("the backup server took a connection while both primaries were up")
		}
	}
	p1.close()
	for range 10 {
		if got := whoAnswers(t, addr, ""); got != "p2" {
			t.Fatalf("with p1 gone, %q answered; want p2, the remaining primary", got)
		}
	}
	p2.close()
	for range 10 {
		if got := whoAnswers(t, addr, ""); got != "backup" {
			t.Fatalf("with every primary gone, %q answered; want backup", got)
		}
	}
}

func TestClientTimeoutFires(t *testing.T) {
	s := startServer(t, "s")
	port := freePort(t)
	cfg := strings.Replace(config(port, "", serverLine("s", s.addr(), "")), `client = "30s"`, `client = "300ms"`, 1)
	p := startLB(t, "-f", writeConfig(t, cfg))
	start := time.Now() // lb's idle clock cannot start before the dial
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c) // the server's name, then lb closes the idle connection
	if err != nil {
		t.Fatalf("lb did not close an idle connection: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the 300ms client timeout", d)
	} else if limit := 300*time.Millisecond + timeoutLateness(300*time.Millisecond); d > limit {
		t.Fatalf("closed after %v: the 300ms client timeout fired late (allowed with scheduling %v)", d, limit)
	}
	if string(got) != "s\n" {
		t.Fatalf("read %q, want %q", got, "s\n")
	}
	waitLog(t, p, "connection", func(l map[string]any) bool { return l["end"] == "client_timeout" })
}

// timeoutLateness is how late a test lets a timeout of d fire: the 1/8
// that lb documents for its lazy deadlines (a wait for bytes fires on
// time), plus 400ms for scheduling on a busy machine. A timeout that fires
// at twice its value, or takes another side's, fails.
func timeoutLateness(d time.Duration) time.Duration { return d/8 + 400*time.Millisecond }

// waitLog waits up to 10 s for a log line with message msg that matches ok.
func waitLog(t *testing.T, p *lbProc, msg string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range p.logLines(t, msg) {
			if ok(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line as expected; stderr:\n%s", msg, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLogs(t *testing.T) {
	s := startServer(t, "s1")
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, config(port, "", serverLine("s1", s.addr(), ""))))

	start := p.logLines(t, "lb started")[0]
	fronts, _ := start["frontends"].([]any)
	backs, _ := start["backends"].([]any)
	if len(fronts) != 1 || len(backs) != 1 {
		t.Fatalf("start-up line %v: want one frontend and one backend", start)
	}
	f := fronts[0].(map[string]any)
	if f["name"] != "web" || fmt.Sprint(f["bind"]) != fmt.Sprintf("[127.0.0.1:%d]", port) || f["backend"] != "app" {
		t.Errorf("start-up frontend %v", f)
	}
	b := backs[0].(map[string]any)
	if b["name"] != "app" || b["balance"] != "roundrobin" || !strings.Contains(fmt.Sprint(b["servers"]), s.addr()) {
		t.Errorf("start-up backend %v", b)
	}

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("s1\nhello"))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	c.Close()
	l := waitLog(t, p, "connection", func(l map[string]any) bool { return l["client"] == local })
	for k, want := range map[string]any{
		"frontend": "web", "backend": "app", "server": "s1",
		"bytes_in": float64(5), "bytes_out": float64(8), "end": "client_closed", "level": "info",
	} {
		if l[k] != want {
			t.Errorf("connection log %s = %v, want %v (line %v)", k, l[k], want, l)
		}
	}
	if _, ok := l["duration"].(float64); !ok {
		t.Errorf("connection log has no numeric duration: %v", l)
	}
}

func TestBindAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	s := startServer(t, "s")
	cfgPath := writeConfig(t, config(port, "", serverLine("s", s.addr(), "")))
	p := launch(t, "-f", cfgPath)
	if code := p.exitCode(t); code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, p.stderr)
	}
	want := fmt.Sprintf(`lb.toml:11: frontend \"web\": cannot bind 127.0.0.1:%d: address already in use`, port)
	if !strings.Contains(p.stderr.String(), want) {
		t.Fatalf("stderr does not say %s:\n%s", want, p.stderr)
	}
}

func TestSignalsStopLB(t *testing.T) {
	s := startServer(t, "s")
	port := freePort(t)
	p := startLB(t, "-f", writeConfig(t, config(port, "", serverLine("s", s.addr(), ""))))
	p.stop(t)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		t.Fatal("the port still accepts connections after lb exited")
	}
}

func TestIPv6Bind(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := startServer(t, "s")
	cfg := strings.Replace(config(port, "", serverLine("s", s.addr(), "")),
		fmt.Sprintf(`bind = ["127.0.0.1:%d"]`, port), fmt.Sprintf(`bind = ["127.0.0.1:%d", "[::1]:%d"]`, port, port), 1)
	startLB(t, "-f", writeConfig(t, cfg))
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)} {
		if got := whoAnswers(t, addr, ""); got != "s" {
			t.Errorf("through %s: %q answered", addr, got)
		}
	}
}
