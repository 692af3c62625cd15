package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/fdlimit"
)

// greeter is a ConnHandler that writes "hi\n", then echoes.
type greeter struct{}

func (greeter) ServeConn(c *Conn) {
	defer c.Done()
	defer c.Close()
	if _, err := io.WriteString(c, "hi\n"); err == nil {
		_, _ = io.Copy(c.TCPConn, c.TCPConn)
	}
}

// serveFrontend serves f on a loopback listener until the test ends, and
// returns its address.
func serveFrontend(t *testing.T, f *Frontend) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

// greeted dials addr and reads the greeting within d; it returns the
// connection and what reading the greeting returned.
func greeted(t *testing.T, addr string, d time.Duration) (*net.TCPConn, error) {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), readGreeting(c, d)
}

func readGreeting(c net.Conn, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "hi\n" {
		return fmt.Errorf("greeting %q, want \"hi\\n\"", buf)
	}
	return nil
}

func echoes(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// When the descriptor budget is spent, the frontend does not accept: the
// next connection waits in the kernel's accept queue, not reset, while the
// established one goes on; the log says so at most once a second, and once
// that accepts resumed.
func TestDescriptorBudgetHoldsNewConnectionsInTheQueue(t *testing.T) {
	logs := &logBuffer{}
	f := &Frontend{Name: "web", Handler: greeter{}, Log: zerolog.New(logs),
		Descriptors: fdlimit.NewBudget(5), DescriptorsPerConn: 2}
	addr := serveFrontend(t, f)
	var served []*net.TCPConn
	for i := range 2 {
		c, err := greeted(t, addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d of 2 that the budget covers: %v", i+1, err)
		}
		served = append(served, c)
	}
	start := time.Now()
	waiting, err := greeted(t, addr, 1500*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection with a budget of 2: %v, want it to wait (read deadline)", err)
	}
	for i, c := range served {
		if err := echoes(c, fmt.Sprintf("ping %d\n", i)); err != nil {
			t.Fatalf("established connection %d while the budget is spent: %v", i+1, err)
		}
	}
	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	stalled := logs.linesPrefixed(t, "out of file descriptors")
	elapsed := time.Since(start)
	if len(stalled) == 0 || float64(len(stalled)) > elapsed.Seconds()+1 {
		t.Fatalf("%d \"out of file descriptors\" lines in %v, want 1 to %d", len(stalled), elapsed, int(elapsed.Seconds())+1)
	}
	if q, _ := stalled[len(stalled)-1]["queued"].(float64); q != 1 {
		t.Errorf("last line says %v connections queued, want 1: %v", stalled[len(stalled)-1]["queued"], stalled[len(stalled)-1])
	}
	served[0].Close()
	if err := readGreeting(waiting, 5*time.Second); err != nil {
		t.Fatalf("waiting connection once one ended: %v", err)
	}
	if err := echoes(waiting, "late\n"); err != nil {
		t.Fatal(err)
	}
	waitForLines(t, logs, "accepting again", 1)
	if got := logs.linesPrefixed(t, "accepting again"); len(got) != 1 {
		t.Fatalf("%d \"accepting again\" lines, want 1", len(got))
	}
}

func waitForLines(t *testing.T, logs *logBuffer, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(logs.linesPrefixed(t, prefix)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q line after 5s", prefix)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A thousand failed accepts make one line, then one a second with the
// count of failures since the last.
func TestAcceptFailedLogsOnceASecondWithACount(t *testing.T) {
	logs := &logBuffer{}
	f := &Frontend{Name: "web", Log: zerolog.New(logs)}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	start := time.Now()
	for range 1000 {
		f.acceptFailed(ln, emfile, maxAcceptBackoff)
	}
	lines := logs.linesPrefixed(t, "accept failed")
	if time.Since(start) < stallEvery && len(lines) != 1 {
		t.Fatalf("%d lines for 1000 failed accepts within a second, want 1", len(lines))
	}
	first := lines[0]
	if first["failed"] != 1.0 || first["frontend"] != "web" || first["level"] != "error" ||
		!strings.Contains(first["error"].(string), "too many open files") ||
		!strings.HasPrefix(first["message"].(string), "accept failed: out of file descriptors") || first["fd_limit"] == nil {
		t.Fatalf("first line: %v", first)
	}
	time.Sleep(time.Until(start.Add(stallEvery + 50*time.Millisecond)))
	f.acceptFailed(ln, emfile, maxAcceptBackoff)
	lines = logs.linesPrefixed(t, "accept failed")
	if len(lines) != 2 || lines[1]["failed"] != 1000.0 {
		t.Fatalf("after a second, one more failure: %d lines, last %v; want 2, failed 1000", len(lines), lines[len(lines)-1])
	}
	f.acceptResumed(ln)
	if got := logs.linesPrefixed(t, "accepting again"); len(got) != 1 || got[0]["failed"] != 0.0 {
		t.Fatalf("accepting again: %v", got)
	}
}

func TestStallLog(t *testing.T) {
	var s stallLog
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if n, due := s.failure(at(0)); !due || n != 1 {
		t.Fatalf("first failure: n %d, due %v; want a line counting 1", n, due)
	}
	for i := range 99 {
		if _, due := s.failure(at(time.Duration(i+1) * 10 * time.Millisecond)); due {
			t.Fatalf("failure %d within a second of the last line: a line is due", i+2)
		}
	}
	if n, due := s.failure(at(time.Second)); !due || n != 100 {
		t.Fatalf("failure a second later: n %d, due %v; want a line counting 100", n, due)
	}
	if n, d, due := s.resumed(at(1500 * time.Millisecond)); !due || n != 0 || d != 1500*time.Millisecond {
		t.Fatalf("resumed: n %d, stalled %v, due %v; want a line, 0, 1.5s", n, d, due)
	}
	if n, d, due := s.resumed(at(1600 * time.Millisecond)); due {
		t.Fatalf("resumed again without a stall: n %d, stalled %v, due", n, d)
	}
	// A short stall within a second of the last line is not told, and its
	// failures are counted in the next line.
	if _, due := s.failure(at(1700 * time.Millisecond)); due {
		t.Fatal("failure 0.7s after the last line: a line is due")
	}
	if _, _, due := s.resumed(at(1800 * time.Millisecond)); due {
		t.Fatal("resumed after a stall that was not told: a line is due")
	}
	if n, due := s.failure(at(2100 * time.Millisecond)); !due || n != 2 {
		t.Fatalf("failure 1.1s after the last line: n %d, due %v; want a line counting 2", n, due)
	}
	// Waits for the budget share the same clock.
	if s.spent(at(2500 * time.Millisecond)) {
		t.Fatal("budget spent 0.4s after the last line: a line is due")
	}
	if !s.spent(at(3200 * time.Millisecond)) {
		t.Fatal("budget spent 1.1s after the last line: no line due")
	}
	if n, d, due := s.resumed(at(3300 * time.Millisecond)); !due || n != 0 || d != 1200*time.Millisecond {
		t.Fatalf("resumed: n %d, stalled %v, due %v; want a line, 0, 1.2s", n, d, due)
	}
}
