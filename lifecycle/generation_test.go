package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/internal/testproxy"
	"lb/reload"
)

// The order of a start, tested without processes: a fake Host records
// what the generation does to other processes and when, and can make the
// pid file fail.

// oldPid is the pid of the pretend old generation the tests replace.
const oldPid = 4242

// event is one thing the generation did through its Host.
type event struct {
	what string
	// At a signal: whether the pid file was in place, whether systemd had
	// been told, and what the admin socket answered to "show info".
	pidFileCommitted, notified bool
	adminInfo                  string
}

// fakeHost is a Host that records.
type fakeHost struct {
	adminPath  string // the generation's admin socket, read at each signal
	commitErr  error  // what the pid file's Commit returns
	mu         sync.Mutex
	events     []event
	committed  bool
	notified   bool
	launches   []Launch
	signalled  chan struct{}
	launchedCh chan struct{}
}

func newFakeHost(adminPath string) *fakeHost {
	return &fakeHost{adminPath: adminPath, signalled: make(chan struct{}, 16), launchedCh: make(chan struct{}, 16)}
}

func (h *fakeHost) record(e event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *fakeHost) list() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

func (h *fakeHost) CheckLB(_ reload.Self, pid int) error {
	if pid == oldPid {
		return nil
	}
	return fmt.Errorf("pid %d: %w", pid, reload.ErrNotLB)
}

func (h *fakeHost) Signal(pid int, sig syscall.Signal) error {
	h.mu.Lock()
	e := event{what: fmt.Sprintf("signal %d %v", pid, sig), pidFileCommitted: h.committed, notified: h.notified}
	h.mu.Unlock()
	e.adminInfo = askAdmin(h.adminPath, "show info")
	h.record(e)
	h.signalled <- struct{}{}
	return nil
}

func (h *fakeHost) PreparePidFile(path string) (PidFile, error) {
	h.record(event{what: "prepare pid file"})
	return &fakePidFile{h: h}, nil
}

func (h *fakeHost) Notify(state string) error {
	h.mu.Lock()
	h.notified = true
	h.mu.Unlock()
	h.record(event{what: "notify " + strings.ReplaceAll(state, "\n", " ")})
	return nil
}

func (h *fakeHost) Launch(_ context.Context, l Launch) (int, []byte, error) {
	h.mu.Lock()
	h.launches = append(h.launches, l)
	h.mu.Unlock()
	h.launchedCh <- struct{}{}
	return 99999, nil, nil
}

func (h *fakeHost) Getenv(string) string { return "" }
func (h *fakeHost) Now() time.Time       { return time.Now() }

type fakePidFile struct{ h *fakeHost }

func (p *fakePidFile) Commit(pid int) error {
	if p.h.commitErr != nil {
		p.h.record(event{what: "pid file commit failed"})
		return p.h.commitErr
	}
	p.h.mu.Lock()
	p.h.committed = true
	p.h.mu.Unlock()
	p.h.record(event{what: "pid file commit " + strconv.Itoa(pid)})
	return nil
}

func (p *fakePidFile) Abort() { p.h.record(event{what: "pid file abort"}) }

// askAdmin sends one command to an admin socket and returns the reply, or
// the error.
func askAdmin(path, cmd string) string {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "error: " + err.Error()
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newGeneration returns a generation of a one-frontend TCP configuration
// bound to addr, with a pid file in a new directory, replacing oldPid
// (-sf), with host as its Host and sigs as its signals.
func newGeneration(t *testing.T, addr string, host *fakeHost, sigs <-chan os.Signal) *Generation {
	t.Helper()
	cfgPath, cfg, p := testproxy.Build(t, fmt.Sprintf(`[global]
handshake_grace = "50ms"

[[frontend]]
name = "web"
bind = [%q]
default_backend = "app"

[[backend]]
name = "app"
[backend.check]
type = "none"

[[backend.server]]
name = "s1"
address = "127.0.0.1:9"
`, addr))
	dir := filepath.Dir(cfgPath)
	pidFile := filepath.Join(dir, "lb.pid")
	host.adminPath = pidFile + defaultAdminSuffix
	raw := []string{"-f", cfgPath, "-p", pidFile, "-x", filepath.Join(dir, "typo.sock"), "-sf", strconv.Itoa(oldPid)}
	return &Generation{
		Opts: Options{Files: []string{cfgPath}, PidFile: pidFile, Takeover: filepath.Join(dir, "typo.sock"),
			Stop: reload.Stop{Soft: []int{oldPid}}, RawArgs: raw, Version: "test"},
		Cfg: cfg, Proxy: p, Log: zerolog.New(io.Discard), FDs: PlanFDs(cfg), Host: host, Signals: sigs,
	}
}

// runGeneration runs g until the test ends, and returns Run's outcome.
func runGeneration(t *testing.T, g *Generation) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	result, ended := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ended)
		result <- g.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return 20s after its context was cancelled")
		}
	})
	return result
}

// The old generation is signalled last: once the pid file names the new
// one, systemd knows its pid, and the admin socket's path leads to it; and
// it accepts by then.
func TestOldGenerationsAreSignalledLast(t *testing.T) {
	addr := freeAddr(t)
	host := newFakeHost("")
	g := newGeneration(t, addr, host, make(chan os.Signal))
	runGeneration(t, g)
	select {
	case <-host.signalled:
	case <-time.After(20 * time.Second):
		t.Fatalf("the old generation was never signalled; events: %v", host.list())
	}
	events := host.list()
	var sig *event
	for i := range events {
		if strings.HasPrefix(events[i].what, "signal ") {
			sig = &events[i]
		}
	}
	if sig == nil || sig.what != fmt.Sprintf("signal %d %v", oldPid, syscall.SIGUSR1) {
		t.Fatalf("events %v: want SIGUSR1 to %d", events, oldPid)
	}
	if !sig.pidFileCommitted || !sig.notified {
		t.Errorf("at the signal, pid file committed: %v, systemd notified: %v; want both", sig.pidFileCommitted, sig.notified)
	}
	if want := fmt.Sprintf("pid: %d\n", os.Getpid()); !strings.Contains(sig.adminInfo, want) {
		t.Errorf("at the signal, the admin socket answered %q: want this generation (%s)", sig.adminInfo, strings.TrimSpace(want))
	}
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("the new generation does not accept on %s: %v", addr, err)
	}
	c.Close()
}

// A start that fails after it bound its sockets, at the last step that can
// fail (the pid file), signals no one, and leaves the address free.
func TestFailedPidFileSignalsNobody(t *testing.T) {
	addr := freeAddr(t)
	host := newFakeHost("")
	host.commitErr = errors.New("disk full")
	g := newGeneration(t, addr, host, make(chan os.Signal))
	err := <-runGeneration(t, g)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitFailure || !strings.Contains(ee.Msg, "disk full") {
		t.Fatalf("Run = %v, want an ExitError with code 1 naming the pid file's error", err)
	}
	for _, e := range host.list() {
		if strings.HasPrefix(e.what, "signal") || strings.HasPrefix(e.what, "notify") {
			t.Errorf("a failed start did %q; events: %v", e.what, host.list())
		}
	}
	// Its sockets are closed: a plain listener (no SO_REUSEPORT) may bind.
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("after the failed start %s is still in use: %v", addr, err)
	}
	ln.Close()
	if _, err := os.Stat(host.adminPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the failed start the admin socket %s is there (%v)", host.adminPath, err)
	}
}

// A start whose bind fails aborts the pid file and signals no one.
func TestFailedBindSignalsNobody(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0") // no SO_REUSEPORT: lb cannot join
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	host := newFakeHost("")
	g := newGeneration(t, busy.Addr().String(), host, make(chan os.Signal))
	err = <-runGeneration(t, g)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitFailure || !strings.Contains(ee.Msg, "address already in use") {
		t.Fatalf("Run = %v, want an ExitError with code 1 saying the address is in use", err)
	}
	var whats []string
	for _, e := range host.list() {
		whats = append(whats, e.what)
	}
	if !slices.Equal(whats, []string{"prepare pid file", "pid file abort"}) {
		t.Errorf("events %v: want the pid file prepared, then aborted, and nothing else", whats)
	}
}

// On SIGHUP the generation starts its successor with its own arguments,
// -x naming its own admin socket instead of the one it was given, -sf
// naming itself, and the next generation number.
func TestSuccessorArguments(t *testing.T) {
	host := newFakeHost("")
	sigs := make(chan os.Signal, 1)
	g := newGeneration(t, freeAddr(t), host, sigs)
	runGeneration(t, g)
	<-host.signalled
	sigs <- syscall.SIGHUP
	select {
	case <-host.launchedCh:
	case <-time.After(20 * time.Second):
		t.Fatal("no successor launched 20s after SIGHUP")
	}
	l := host.launches[0]
	want := []string{"-f", g.Opts.Files[0], "-p", g.Opts.PidFile, "-x", host.adminPath, "-sf", strconv.Itoa(os.Getpid())}
	if !slices.Equal(l.Args, want) || !slices.Equal(l.Env, []string{"LB_GENERATION=2"}) || l.Daemon {
		t.Fatalf("successor launched with args %q, env %q, daemon %v; want args %q, env [LB_GENERATION=2], no daemon", l.Args, l.Env, l.Daemon, want)
	}
}
