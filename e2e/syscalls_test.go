package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLockstepExchangesReadNothingInVain: strace attached to lb counts the
// reads that find nothing (EAGAIN) while a client sends requests in
// lockstep on one connection, each after the answer to the one before:
// the way keep-alive clients and request-response protocols talk. Go's
// poller forgets a socket's readiness when a read operation begins, so a
// proxy built on net.Conn reads once in vain before each wait: a fifth of
// its syscalls. lb waits within one read operation instead (TCP: the flow
// relays within its read; HTTP: sock.Conn.Hold on the client side,
// sock.Conn.DeferWrite on the server side), so such reads are rare.
func TestLockstepExchangesReadNothingInVain(t *testing.T) {
	// The client pauses before each request, as a client between two
	// requests does: lb's work on an exchange (a log line, under strace
	// too) outlasts the turn of a client that sends at once, so that its
	// next read would find the request there anyway.
	const (
		rounds = 300
		pause  = 2 * time.Millisecond
	)
	count := func(t *testing.T, calls []tracedCall) {
		t.Helper()
		vain, reads := 0, 0
		var sample []string
		for _, c := range calls {
			if c.name != "read" {
				continue
			}
			reads++
			if c.ret < 0 {
				vain++
				if len(sample) < 5 {
					sample = append(sample, c.line)
				}
			}
		}
		t.Logf("%d exchanges: lb made %d reads, %d of them found nothing", rounds, reads, vain)
		// Without waiting within the read: one in vain per exchange at
		// least. A wide margin for wake-ups the scheduler splits.
		if vain > rounds/5 {
			t.Errorf("%d reads of %d found nothing in %d exchanges, want under %d; some:\n%s",
				vain, reads, rounds, rounds/5, strings.Join(sample, "\n"))
		}
	}

	t.Run("tcp", func(t *testing.T) {
		p, c, br := startGreetingLB(t)
		echo := func(msg string) {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			if line, err := br.ReadString('\n'); err != nil || line != msg {
				t.Fatalf("%q echoed as %q, %v", msg, line, err)
			}
		}
		tr := attachStrace(t, p.cmd.Process.Pid, func() { echo("probe\n") }, `"probe\n"`)
		for i := range rounds {
			time.Sleep(pause)
			echo(fmt.Sprintf("message %d\n", i))
		}
		count(t, tr.stop())
	})

	t.Run("http", func(t *testing.T) {
		b := startHTTPBackend(t, "s1")
		p, addr := startHTTPLB(t, "", "", httpBackendTable("app", "", b))
		p.waitOutput(t, `"message":"lb started"`)
		c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		br := bufio.NewReader(c)
		get := func(path string) {
			if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
				t.Fatal(err)
			}
			if r := readRaw(t, c, br, "GET"); r.StatusCode != 200 || r.closed {
				t.Fatalf("GET %s: %d, closed %v", path, r.StatusCode, r.closed)
			}
		}
		tr := attachStrace(t, p.cmd.Process.Pid, func() { get("/probe") }, `GET /probe`)
		for i := range rounds {
			time.Sleep(pause)
			get(fmt.Sprintf("/r%d", i))
		}
		count(t, tr.stop())
	})
}
