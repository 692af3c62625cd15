package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// straceCall matches a completed call in strace's output: its name and
// what it returned. A call that another thread's output interrupted ends
// on a line of its own ("<... splice resumed>...) = 65536"), the one
// counted; its "<unfinished ...>" start has no result.
var straceCall = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?(splice|read|write|recvfrom|sendto)(?:\(| resumed>).*\)\s+=\s+(-?\d+)`)

// callNames names socket calls by what they do: lb reads and writes
// sockets with recvfrom(2) and sendto(2) (package sock), Go's net.Conn
// with read(2) and write(2).
var callNames = map[string]string{"recvfrom": "read", "sendto": "write"}

// TestTCPBulkTransferSplices: strace attached to a running lb sees a bulk
// transfer in TCP mode go through splice(2): the bytes do not cross lb's
// memory, but for the first read of each burst.
func TestTCPBulkTransferSplices(t *testing.T) {
	p, c, br := startGreetingLB(t)

	// strace is attached once it sees lb relay a probe.
	tr := attachStrace(t, p.cmd.Process.Pid, func() {
		if _, err := io.WriteString(c, "probe\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "probe\n" {
			t.Fatalf("probe echoed %q, %v", line, err)
		}
	}, "\"probe\\n\"")

	const size = 32 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		sent <- err
	}()
	got := make([]byte, size)
	if n, err := io.ReadFull(br, got); err != nil {
		tr.stop()
		t.Fatalf("reading the echo: %v after %d bytes; lb's log:\n%s", err, n, p.stderr.String())
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the echo differs from what was sent")
	}
	moved := map[string]int64{}
	for _, c := range tr.stop() {
		if c.ret > 0 {
			moved[c.name] += c.ret
		}
	}
	// Both directions carry size bytes; through a pipe each byte is
	// spliced twice (in, then out), so 4 x size in all.
	t.Logf("bytes moved by lb: splice %d, read %d, write %d (the transfer: 2 x %d)", moved["splice"], moved["read"], moved["write"], size)
	if moved["splice"] < 3*size {
		t.Errorf("lb spliced %d bytes of a %d-byte echo, want most of 4 x %d", moved["splice"], size, size)
	}
	if rw := moved["read"] + moved["write"]; rw > size/4 {
		t.Errorf("lb read and wrote %d bytes itself, want the bulk spliced", rw)
	}
}

// tracer is strace attached to a process, tracing reads, writes and
// splices.
type tracer struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     string
	stopped bool
}

// tracedCall is a completed call that strace saw.
type tracedCall struct {
	name string // read (read or recvfrom), write (write or sendto) or splice
	ret  int64  // what it returned: -1 for an error
	line string
}

// attachStrace attaches strace to pid, and calls probe until strace's
// output holds mark (something probe makes the process read or write, as
// strace prints it), so that what follows is traced. The test ends
// tracing with stop, or its cleanup does.
func attachStrace(t *testing.T, pid int, probe func(), mark string) *tracer {
	t.Helper()
	strace := lookTool(t, "strace", "apt-get install strace")
	tr := &tracer{t: t, out: filepath.Join(t.TempDir(), "strace.out")}
	tr.cmd = exec.Command(strace, "-f", "-qq", "-e", "trace=splice,read,write,recvfrom,sendto", "-e", "signal=none", "-s", "16",
		"-o", tr.out, "-p", strconv.Itoa(pid))
	var stderr bytes.Buffer
	tr.cmd.Stderr = &stderr
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		probe()
		if b, _ := os.ReadFile(tr.out); bytes.Contains(b, []byte(mark)) {
			return tr
		}
		if time.Now().After(deadline) {
			// strace's stderr is whole once it has ended.
			tr.stopped = true
			_ = tr.cmd.Process.Signal(syscall.SIGINT)
			_ = tr.cmd.Wait()
			t.Fatalf("strace did not attach to lb within 30s: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends tracing and returns the completed calls strace saw.
func (tr *tracer) stop() []tracedCall {
	if tr.stopped {
		return nil
	}
	tr.stopped = true
	_ = tr.cmd.Process.Signal(syscall.SIGINT)
	_ = tr.cmd.Wait()
	b, err := os.ReadFile(tr.out)
	if err != nil {
		tr.t.Fatal(err)
	}
	var calls []tracedCall
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "MSG_PEEK") {
			continue // a look at a socket (a pooled server connection's liveness), not a read
		}
		if m := straceCall.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			name := m[1]
			if alias, ok := callNames[name]; ok {
				name = alias
			}
			calls = append(calls, tracedCall{name: name, ret: n, line: line})
		}
	}
	return calls
}
