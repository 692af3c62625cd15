package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// answerSlowly accepts on ln until it is closed and answers each connection
// with 'x' after a pause, so that the queue outlasts Drain's grace.
func answerSlowly(ln *net.TCPListener, pause time.Duration, done chan<- int) {
	n := 0
	defer func() { done <- n }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		time.Sleep(pause)
		c.Write([]byte{'x'})
		c.Close()
		n++
	}
}

func TestDrainAcceptsQueued(t *testing.T) {
	const queued = 20
	const grace = 100 * time.Millisecond
	ln := bindT(t, "127.0.0.1:0")
	conns := dialN(t, ln.Addr().String(), queued)
	waitQueueLen(t, ln, queued)

	done := make(chan int, 1)
	start := time.Now()
	go answerSlowly(ln, 10*time.Millisecond, done)
	if err := Drain(context.Background(), ln, grace); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < grace {
		t.Errorf("Drain returned after %v, before the grace of %v", took, grace)
	}
	if accepted := <-done; accepted != queued {
		t.Errorf("accepted %d connections, want %d", accepted, queued)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil || b[0] != 'x' {
			t.Errorf("queued connection %d: read %q, %v; want 'x'", i, b[0], err)
		}
	}
}

func TestDrainWaitsForGrace(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	start := time.Now()
	if err := Drain(context.Background(), ln, 80*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 80*time.Millisecond {
		t.Errorf("Drain of an idle listener returned after %v, want at least 80ms", took)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Drain: %v, want net.ErrClosed", err)
	}
}

func TestDrainCanceled(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	conns := dialN(t, ln.Addr().String(), 3)
	waitQueueLen(t, ln, 3)

	// Nobody accepts, so only the context ends the drain.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := Drain(ctx, ln, 10*time.Millisecond)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain: %v, want context.Canceled", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Drain: %v, want net.ErrClosed", err)
	}
	// What was queued is lost, which is what Drain exists to avoid.
	conns[0].SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Error("a connection queued on a closed listener could still be read")
	}
}

func TestDrainClosed(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	ln.Close()
	if err := Drain(context.Background(), ln, 0); err != nil {
		t.Fatalf("Drain of a closed listener: %v", err)
	}
}

// TestMigrateReq runs in network namespaces made for it (the only place
// a test may set net.ipv4.tcp_migrate_req), with the sysctl off and on:
// MigrateReq reports each, and with it on, reloads that steer to the new
// socket and close the old one at once, without a drain, lose no
// connection, as lb counts on when it skips the grace. (Plain
// SO_REUSEPORT reloads, without steering, lose one now and then even so: a
// SYN that reaches the old socket as it closes is reset.)
func TestMigrateReq(t *testing.T) {
	if os.Getenv(migrateHelperEnv) != "" {
		migrateReqHelper(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install util-linux iproute2; make tools installs them)", tool)
		}
	}
	for _, v := range []string{"0", "1"} {
		// The test binary is the script's $0: no quoting of its path.
		script := fmt.Sprintf(`ip link set lo up && echo %s > /proc/sys/net/ipv4/tcp_migrate_req && exec "$0" -test.run '^TestMigrateReq$' -test.v`, v)
		cmd := exec.Command("unshare", "-n", "sh", "-c", script, os.Args[0])
		cmd.Env = append(os.Environ(), migrateHelperEnv+"="+v)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("tcp_migrate_req=%s in a namespace of its own: %v\n%s", v, err, out)
			continue
		}
		if m := regexp.MustCompile(`(?m)^\s*drain_test.go:\d+: (.*)$`).FindSubmatch(out); m != nil {
			t.Logf("tcp_migrate_req=%s: %s", v, bytes.TrimSpace(m[1]))
		}
	}
}

// migrateHelperEnv names the sysctl's value in the namespace that
// TestMigrateReq runs itself in.
const migrateHelperEnv = "LB_TEST_MIGRATE_REQ"

// migrateReqHelper is TestMigrateReq inside its namespace.
func migrateReqHelper(t *testing.T) {
	want := os.Getenv(migrateHelperEnv) == "1"
	on, err := MigrateReq()
	if err != nil {
		t.Fatal(err)
	}
	if on != want {
		t.Fatalf("MigrateReq() = %v in a namespace where tcp_migrate_req is %s", on, os.Getenv(migrateHelperEnv))
	}
	if !on {
		return
	}
	st := runReloads(t, steerAndClose)
	t.Logf("steered, closed at once, with tcp_migrate_req on: %d reloads, %d connections ok, %d failed (%d late, %d never connected)",
		st.reloads, st.ok, st.failed, st.late, st.unconnected)
	if st.lost != 0 {
		t.Errorf("with tcp_migrate_req on, reloads that steer and close at once lost %d connections; first errors: %v", st.lost, st.firstErrors)
	}
}
