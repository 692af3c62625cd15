package benchutil

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
		keep       bool
		err        string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, ""},
		{"chunked", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: 1\r\n\r\n", true, ""},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", false, ""},
		{"1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, ""},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello", true, ""},
		{"status", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbad", false, "status 503"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhell", false, "body of 4 bytes, want 5"},
		{"truncated", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, "read body"},
		{"no length", "HTTP/1.1 200 OK\r\n\r\nhello", false, "without Content-Length"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", false, "malformed status line"},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false, "malformed header line"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, "bad chunk size"},
		{"closed", "", false, "connection closed"},
	} {
		keep, err := ReadResponse(bufio.NewReader(strings.NewReader(tt.resp)), 5)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		case err == nil && keep != tt.keep:
			t.Errorf("%s: keep-alive %v, want %v", tt.name, keep, tt.keep)
		}
	}
}

func TestBackendProtocol(t *testing.T) {
	b := StartTestHTTPBackend(t, "s1", 3)
	c, err := net.DialTimeout("tcp4", b.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	// Two requests in one write (pipelined), one with a body, then one
	// asking to close.
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /p HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\nbody" +
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, wantKeep := range []bool{true, true, false} {
		keep, err := ReadResponse(r, 3)
		if err != nil || keep != wantKeep {
			t.Fatalf("response %d: keep-alive %v, %v; want %v", i+1, keep, err, wantKeep)
		}
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("the backend kept the connection open after Connection: close")
	}

	// HTTP/1.0 closes; chunked request bodies are refused.
	for _, tt := range []struct{ req, want string }{
		{"GET / HTTP/1.0\r\n\r\n", ""},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "status 501"},
	} {
		c, err := net.DialTimeout("tcp4", b.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(tt.req)); err != nil {
			t.Fatal(err)
		}
		keep, err := ReadResponse(bufio.NewReader(c), 3)
		c.Close()
		if tt.want == "" && (err != nil || keep) {
			t.Errorf("%q: keep-alive %v, %v; want a response and a close", tt.req, keep, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: %v, want %q", tt.req, err, tt.want)
		}
	}
	if err := Probe(context.Background(), b.Addr(), 3); err != nil {
		t.Errorf("probe: %v", err)
	}
}

func TestProc(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	// A process that exits at once: reported with its output.
	p, err := StartProc(Spec{Name: "failing", Bin: "/bin/sh", Args: []string{"-c", "echo 'bad config line 3' >&2; exit 3"}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(ctx, "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "failing exited (exit status 3) before listening") || !strings.Contains(err.Error(), "    bad config line 3") {
		t.Errorf("waitReady of a process that exits: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("stop of an exited process: %v", err)
	}

	// Ports found together are distinct.
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("FreePorts(50) returned %d twice: %v", p, ports)
		}
		seen[p] = true
	}

	// A process that runs until stopped.
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err = StartProc(Spec{Name: "sleeper", Bin: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, Dir: dir, CPUs: "0", Env: []string{"BENCH_TEST=1"}})
	if err != nil {
		t.Fatal(err)
	}
	var reg Registry
	reg.Add(p)
	if _, ok := p.CPU(); !ok {
		t.Error("no CPU time of a running process")
	}
	if u, err := p.Usage(); err != nil || u.RSS <= 0 || u.FDs < 3 {
		t.Errorf("usage of a running process: %+v, %v", u, err)
	}
	// Pinned by taskset, in the same process, once taskset has run.
	var st []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid())); err == nil && strings.Contains(string(st), "Cpus_allowed_list:\t0\n") {
			break
		}
	}
	if err != nil || !strings.Contains(string(st), "Cpus_allowed_list:\t0\n") {
		t.Errorf("sleeper not pinned to CPU 0 (%v):\n%s", err, st)
	}
	if gone, _ := p.Exited(); gone {
		t.Fatal("sleeper exited")
	}
	// Nothing listens: waitReady gives up when ctx is done.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(cctx, fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Error("waitReady succeeded with nothing listening")
	}
	start := time.Now()
	if errs := reg.StopAll(); len(errs) > 0 {
		t.Errorf("stopAll: %v", errs)
	}
	if took := time.Since(start); took > TermWait {
		t.Errorf("stop took %v: SIGTERM was not enough", took)
	}
	if gone, how := p.Exited(); !gone || !strings.Contains(how.Error(), "terminated") {
		t.Errorf("after stop: exited %v (%v), want terminated by SIGTERM", gone, how)
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tt := range []struct {
		name, stat string
		want       uint64
		err        string
	}{
		{"lb", "4242 (lb) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 37 0 0 20 0 5 0 12345 123456789 2345 18446744073709551615", 187, ""},
		{"name with spaces and parens", "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 1", 15, ""},
		{"no name", "4242 lb S 1", 0, "no ')'"},
		{"short", "4242 (lb) S 1 2 3", 0, "fields"},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 8 0", 0, "utime"},
	} {
		got, err := ParseStatCPU([]byte(tt.stat))
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s: %d, %v; want %d", tt.name, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tlb\nVmPeak:\t  812345 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    5000 kB\n"
	if got, err := ParseVmRSS([]byte(status)); err != nil || got != 10240<<10 {
		t.Errorf("VmRSS: %d, %v; want %d", got, err, 10240<<10)
	}
	for _, bad := range []string{"Name:\tkthreadd\nState:\tS\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n", "VmRSS:\n"} {
		if _, err := ParseVmRSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRaiseNoFile(t *testing.T) {
	n, err := RaiseNoFile()
	if err != nil || n < 64 {
		t.Errorf("RaiseNoFile: %d, %v", n, err)
	}
}

func TestSpecCommand(t *testing.T) {
	s := Spec{Bin: "/usr/sbin/haproxy", Args: []string{"-f", "cfg", "-db"}, CPUs: "0", Env: []string{"GOMAXPROCS=1"}}
	if got, want := s.Command(), "GOMAXPROCS=1 taskset -c 0 /usr/sbin/haproxy -f cfg -db"; got != want {
		t.Errorf("Command() = %q, want %q", got, want)
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "1-3": {1, 2, 3}, "0,2-3,2": {0, 2, 3}} {
		got, err := ParseCPUList(in)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "3-1", "-1", "1-"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q): no error", bad)
		}
	}
}

func TestParseCPUBusy(t *testing.T) {
	stat := "cpu  375951 0 75458 781404 2185 0 13963 91 0 0\n" +
		"cpu0 100 1 20 9999 7 3 4 5 50 0\n" +
		"cpu1 200 0 40 8888 8 0 6 0 0 0\n" +
		"intr 12345 0 0\n"
	for _, tt := range []struct {
		cpus []int
		want uint64
	}{{[]int{0}, 133}, {[]int{1}, 246}, {[]int{0, 1}, 379}} {
		got, err := ParseCPUBusy([]byte(stat), tt.cpus)
		if err != nil || got != tt.want {
			t.Errorf("CPUs %v: %d, %v; want %d", tt.cpus, got, err, tt.want)
		}
	}
	if _, err := ParseCPUBusy([]byte(stat), []int{2}); err == nil {
		t.Error("a CPU that is not there: no error")
	}
	if _, err := ParseCPUBusy([]byte("cpu0 1 2 3 4 5 x 7 8\n"), []int{0}); err == nil {
		t.Error("not a number: no error")
	}
	if _, err := CPUBusy([]int{0}); err != nil {
		t.Errorf("CPUBusy of this machine: %v", err)
	}
}
