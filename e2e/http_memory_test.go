package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Memory held by request heads that never finish arriving.
const (
	// memClients is how many clients each hold an unfinished head.
	memClients = 4000
	// memHeadSize is the size of each unfinished head: under the default
	// max_header_bytes, and more than one 8 KiB read.
	memHeadSize = 14700
	// memBudget is lb's http_head_budget in the test.
	memBudget = 4 << 20
	// memPerConn is what each of the clients may cost beyond the budget,
	// for the moment it is served (before lb sheds it): its goroutine and
	// connection state. lb used to hold about 87 KiB for each.
	memPerConn = 16 << 10
	// memBudgetFactor: the heads the budget lets stay cost about twice
	// their charge, and the collector needs as much again.
	memBudgetFactor = 4
	// memIdleSlack is how near its idle resident size lb must come back
	// once the clients are gone.
	memIdleSlack = 12 << 20
)

var (
	memLBOnce sync.Once
	memLBPath string
	memLBErr  error
)

// memLB returns an lb binary built without the race detector, whose
// memory use would swamp lb's own: lbBin, or a build of its own when the
// tests run with -race.
func memLB(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return lbBin
	}
	memLBOnce.Do(func() {
		memLBPath = filepath.Join(filepath.Dir(lbBin), "lb-norace")
		out, err := exec.Command("go", "build", "-o", memLBPath, "lb").CombinedOutput()
		if err != nil {
			memLBErr = fmt.Errorf("building lb without -race: %v\n%s", err, out)
		}
	})
	if memLBErr != nil {
		t.Fatal(memLBErr)
	}
	return memLBPath
}

// memHead is the start of a request head of memHeadSize bytes, which never
// ends.
func memHead() []byte {
	var b strings.Builder
	b.WriteString("GET /slow HTTP/1.1\r\nHost: slow.test\r\n")
	for i := 0; b.Len() < memHeadSize; i++ {
		fmt.Fprintf(&b, "X-Pad-%02d: %s\r\n", i, strings.Repeat("s", min(300, max(1, memHeadSize-b.Len()-14))))
	}
	return []byte(b.String())
}

// memSlowClients are clients that each sent part of a request head and
// wait: answers counts the status lines lb sent them before closing.
type memSlowClients struct {
	conns   []net.Conn
	answers sync.Map // status line -> *atomic.Int64
	closed  atomic.Int64
	wg      sync.WaitGroup
}

// startSlowClients opens n connections to addr with 16 dialers, each
// sending head, and reads what lb answers on each.
func startSlowClients(t *testing.T, addr string, n int, head []byte) *memSlowClients {
	t.Helper()
	s := &memSlowClients{conns: make([]net.Conn, n)}
	var next atomic.Int64
	var dialers sync.WaitGroup
	errs := make(chan error, n)
	for range 16 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
				if err != nil {
					errs <- err
					continue
				}
				s.conns[i] = c
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(head); err != nil {
					errs <- err
				}
				s.wg.Add(1)
				go s.read(c)
			}
		}()
	}
	dialers.Wait()
	t.Cleanup(s.close)
	close(errs)
	for err := range errs {
		t.Fatalf("a slow client: %v", err)
	}
	return s
}

// read waits for lb's answer on c, or for c to be closed.
func (s *memSlowClients) read(c net.Conn) {
	defer s.wg.Done()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		line = "(closed without an answer)"
	}
	v, _ := s.answers.LoadOrStore(strings.TrimSpace(line), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	s.closed.Add(1)
}

// answered returns how many clients got each answer.
func (s *memSlowClients) answered() map[string]int64 {
	m := map[string]int64{}
	s.answers.Range(func(k, v any) bool {
		m[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// close closes every client's connection and waits for their readers.
func (s *memSlowClients) close() {
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
	s.wg.Wait()
}

// TestHTTPUnfinishedHeadsMemory: 4,000 clients each send 14.7 KB of a
// request head and stop. lb keeps the heads that fit in http_head_budget,
// sheds the others (408, slowest first), and its resident memory stays
// within a bound made of the budget and a small allowance per connection,
// while a normal request is served. Once the clients leave, lb gives the
// memory back and comes back near its idle size.
func TestHTTPUnfinishedHeadsMemory(t *testing.T) {
	bin := memLB(t)
	s := startHTTPBackend(t, "s1")
	port := freePort(t)
	// The log goes to a file: 4,000 request lines written to a pipe the
	// test reads would stall lb's connections on the pipe, holding their
	// memory, and the test would measure the pipe.
	logFile := filepath.Join(t.TempDir(), "lb.log")
	cfg := httpConfig(port, fmt.Sprintf("http_head_budget = %d\nlog_file = %q", memBudget, logFile),
		"[frontend.timeout]\nhttp_request = \"60s\"\n", httpBackendTable("app", "", s))
	p := startProc(t, nil, bin, "-f", writeConfig(t, cfg))
	memWaitLog(t, p, logFile, func(l map[string]any) bool { return l["message"] == "lb started" })
	pid := p.cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := newHTTPClient(t)
	get := func(what string) {
		t.Helper()
		resp, err := c.Get("http://" + addr + "/" + what)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d, want 200", what, resp.StatusCode)
		}
	}
	get("warm-up")
	idle := vmRSS(t, pid)

	head := memHead()
	charge := int64(len(head)) + 8<<10 // with the connection's read buffer
	maxKept := memBudget / charge
	start := time.Now()
	clients := startSlowClients(t, addr, memClients, head)
	sent := time.Since(start)
	// Every head over the budget is shed, at once.
	deadline := time.Now().Add(15 * time.Second)
	for clients.closed.Load() < memClients-maxKept {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients answered after 15 s, want at least %d: answers %v", clients.closed.Load(), memClients-maxKept, clients.answered())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // for any shedding still under way
	shed := clients.closed.Load()
	if got := clients.answered()["HTTP/1.1 408 Request Timeout"]; got != shed {
		t.Errorf("the %d clients lb closed got %v; want a 408 each", shed, clients.answered())
	}
	if kept := memClients - shed; kept > maxKept || kept < maxKept/2 {
		t.Errorf("lb kept %d unfinished heads of %d bytes, want at most %d (http_head_budget %d) and about as many",
			kept, len(head), maxKept, memBudget)
	}
	peak := vmHWM(t, pid) // the most lb held at any moment
	// A request that arrives whole is served, the budget full or not.
	get("during")
	bound := idle + memBudgetFactor*memBudget + memClients*memPerConn
	t.Logf("%d clients sent %d-byte heads in %v; lb shed %d, kept %d; VmRSS %.1f MiB idle, peak %.1f MiB (+%.1f KiB per client), bound %.1f MiB",
		memClients, len(head), sent.Round(time.Millisecond), shed, memClients-shed, mib(idle), mib(peak),
		float64(peak-idle)/memClients/1024, mib(bound))
	if peak > bound {
		t.Errorf("lb's VmHWM reached %.1f MiB under %d unfinished heads, over %.1f MiB: %.1f MiB idle + %d x the %d MiB budget + %d KiB per connection",
			mib(peak), memClients, mib(bound), mib(idle), memBudgetFactor, memBudget>>20, memPerConn>>10)
	}
	l := memWaitLog(t, p, logFile, func(l map[string]any) bool { return l["message"] == "request" && l["end"] == "head_budget" })
	if e, _ := l["error"].(string); logStatus(l) != 408 || !strings.Contains(e, "http_head_budget") {
		t.Errorf("log of a shed request: %v; want status 408 and an error that names http_head_budget", l)
	}

	clients.close()
	deadline = time.Now().Add(15 * time.Second)
	for {
		rss := vmRSS(t, pid)
		if rss <= idle+memIdleSlack {
			t.Logf("VmRSS back to %.1f MiB %v after the clients left", mib(rss), 15*time.Second-time.Until(deadline).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("lb's VmRSS is still %.1f MiB 15 s after the clients left, over %.1f MiB idle + %d MiB",
				mib(rss), mib(idle), memIdleSlack>>20)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	get("after")
}

// memWaitLog waits up to 10 s for a line of the JSON log file path, which
// p writes, that ok matches, and returns it.
func memWaitLog(t *testing.T, p *lbProc, path string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && ok(m) {
				return m
			}
		}
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("no log line as expected in %s (lb running: %v); lb's output:\n%s", path, p.running(), p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mib returns n bytes in MiB.
func mib(n int64) float64 { return float64(n) / (1 << 20) }
