package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// checked is a backend server whose health check has a port of its own, so
// a test can fail its checks while its traffic port still answers and
// counts every connection that reaches it.
type checked struct {
	*server
	t         *testing.T
	checkPort int
	mu        sync.Mutex
	check     net.Listener
}

func startChecked(t *testing.T, name string) *checked {
	t.Helper()
	c := &checked{server: startServer(t, name), t: t, checkPort: freePort(t)}
	c.checkUp()
	t.Cleanup(c.checkDown)
	return c
}

// checkUp opens the check port: each check connection is accepted and
// closed.
func (c *checked) checkUp() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.check != nil {
		return
	}
	var err error
	for range 50 { // the port was just released; allow for TIME_WAIT races
		if c.check, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", c.checkPort)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("check port %d: %v", c.checkPort, err)
	}
	go acceptAndClose(c.check)
}

func acceptAndClose(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conn.Close()
	}
}

// checkDown closes the check port: checks get "connection refused".
func (c *checked) checkDown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.check != nil {
		c.check.Close()
		c.check = nil
	}
}

// healthConfig is a daemons configuration whose servers are checked on
// their check ports every 100ms, rise 2, fall 2.
func healthConfig(d *daemons, extraGlobal, extraBackend string, servers ...*checked) string {
	var lines []string
	for _, s := range servers {
		lines = append(lines, serverLine(s.name, s.addr(), fmt.Sprintf("check = { port = %d }", s.checkPort)))
	}
	return daemonConfigBackend(d.dir, d.port, extraGlobal, fmt.Sprintf(`%s
[backend.check]
interval = "100ms"
timeout = "100ms"
rise = 2
fall = 2

%s`, extraBackend, strings.Join(lines, "\n")))
}

// serverState returns a server's line of "show servers state" as fields:
// backend server address health admin weight effective_weight checks reason.
func serverState(t *testing.T, d *daemons, name string) []string {
	t.Helper()
	for _, line := range strings.Split(adminQuery(t, d.adminSock, "show servers state"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "app" && f[1] == name {
			return f
		}
	}
	t.Fatalf("no server %q in show servers state", name)
	return nil
}

// waitHealth waits up to 10 s for a server's health to become want.
func waitHealth(t *testing.T, d *daemons, name, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for serverState(t, d, name)[3] != want {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("server %s not %s after 10s: %v\nlog:\n%s", name, want, serverState(t, d, name), d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestHealthChecksTakeServersOutAndBack(t *testing.T) {
	a, b := startChecked(t, "a"), startChecked(t, "b")
	d := newDaemons(t, "")
	d.writeConfig(healthConfig(d, "", `slowstart = "2s"`, a, b))
	d.mustLaunch()

	a.checkDown()
	took := waitHealth(t, d, "a", "down")
	// fall 2 x interval 100ms + timeout 100ms, with room for a loaded machine.
	if took > 2*time.Second {
		t.Errorf("marked down after %v, want within about fall x interval + timeout", took)
	}
	if !strings.Contains(d.log(), `"message":"server app/a is DOWN: connect refused, 2/2 checks failed"`) {
		t.Errorf("no DOWN line with its reason in the log:\n%s", d.log())
	}
	before := a.accepted.Load()
	for range 50 {
		if got := whoAnswers(t, d.addr(), ""); got != "b" {
			t.Fatalf("a server marked down answered: %q", got)
		}
	}
	if a.accepted.Load() != before {
		t.Fatalf("the server marked down got %d connections", a.accepted.Load()-before)
	}

	a.checkUp()
	waitHealth(t, d, "a", "up")
	if !strings.Contains(d.log(), `"message":"server app/a is UP: 2/2 checks passed"`) {
		t.Errorf("no UP line in the log:\n%s", d.log())
	}
	// With weight 1, slow start never goes below 1 (TestSlowStartRamps
	// shows the ramp itself).
	if f := serverState(t, d, "a"); f[6] != "1" {
		t.Errorf("effective weight %s, want 1", f[6])
	}
	got := map[string]int{}
	for range 40 {
		got[whoAnswers(t, d.addr(), "")]++
	}
	if got["a"] == 0 {
		t.Fatalf("server a, back up, gets no connections: %v", got)
	}
}

func TestSlowStartRamps(t *testing.T) {
	a := startChecked(t, "a")
	d := newDaemons(t, "")
	cfg := healthConfig(d, "", `slowstart = "3s"`, a)
	cfg = strings.Replace(cfg, fmt.Sprintf("check = { port = %d }", a.checkPort), fmt.Sprintf("weight = 256\ncheck = { port = %d }", a.checkPort), 1)
	d.writeConfig(cfg)
	d.mustLaunch()
	a.checkDown()
	waitHealth(t, d, "a", "down")
	a.checkUp()
	waitHealth(t, d, "a", "up")
	// The README: a linear ramp from 1/16 of the weight (16) to all of it
	// (256) over slowstart, so 80 a second here. Each sample is checked
	// against the line through the first one, within what 500ms of
	// scheduling and refresh lateness allow.
	const (
		slowStart = 3 * time.Second
		slack     = 500 * time.Millisecond
	)
	var seen []rampSample
	var start time.Time
	for i := range 30 {
		w, err := strconv.Atoi(serverState(t, d, "a")[6])
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			start = time.Now()
		}
		seen = append(seen, rampSample{time.Since(start), w})
		time.Sleep(150 * time.Millisecond)
	}
	perSecond := 240 / slowStart.Seconds()
	w0, distinct := seen[0].w, map[int]bool{}
	for i, s := range seen {
		lo := float64(w0) + perSecond*(s.at-slack).Seconds()
		hi := float64(w0) + perSecond*(s.at+slack).Seconds()
		switch {
		case i > 0 && s.w < seen[i-1].w:
			t.Fatalf("effective weight went down from %d to %d during slow start: %v", seen[i-1].w, s.w, seen)
		case s.w < 256 && (float64(s.w) < lo || float64(s.w) > hi):
			t.Fatalf("effective weight %d after %v of the ramp, want %.0f to %.0f (linear from 16 to 256 over %v): %v", s.w, s.at.Round(time.Millisecond), lo, hi, slowStart, seen)
		case s.w == 256 && float64(s.w) > hi:
			t.Fatalf("full weight after %v of the ramp, before its end (%v): %v", s.at.Round(time.Millisecond), slowStart, seen)
		}
		if s.w > 16 && s.w < 256 {
			distinct[s.w] = true
		}
	}
	t.Logf("effective weights (time into the ramp:weight): %v", seen)
	if w0 >= 128 || seen[len(seen)-1].w != 256 || len(distinct) < 5 {
		t.Fatalf("effective weights during a 3s slow start: %v; want a ramp from near 16, through several steps, ending at 256", seen)
	}
}

// rampSample is an effective weight seen during a slow start, and when.
type rampSample struct {
	at time.Duration // since the first sample
	w  int
}

func (s rampSample) String() string { return fmt.Sprintf("%v:%d", s.at.Round(time.Millisecond), s.w) }

func TestHTTPChecks(t *testing.T) {
	for _, tc := range []struct {
		name, check, reply, reason string
		delay                      time.Duration
	}{
		{"wrong status", `type = "http"`, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "HTTP status 503", 0},
		{"slow", `type = "http"`, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "timeout", 500 * time.Millisecond},
		{"wrong body", `type = "http"` + "\nbody = \"ready\"", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nstarting", `body does not contain`, 0},
		{"expected status", `type = "http"` + "\nexpect = [\"204\"]", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP status 200", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "s")
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go answerHTTP(ln, tc.reply, tc.delay)
			d := newDaemons(t, "")
			cfg := daemonConfigBackend(d.dir, d.port, `startup_timeout = "1s"`, fmt.Sprintf(`[backend.check]
%s
interval = "100ms"
timeout = "200ms"
rise = 1
fall = 1

[[backend.server]]
name = "s"
address = %q
check = { port = %d }
`, tc.check, s.addr(), ln.Addr().(*net.TCPAddr).Port))
			d.writeConfig(cfg)
			d.mustLaunch()
			waitHealth(t, d, "s", "down")
			if line := strings.Join(serverState(t, d, "s"), " "); !strings.Contains(line, tc.reason) {
				t.Errorf("show servers state: %s; want the reason %q", line, tc.reason)
			}
		})
	}
}

// answerHTTP answers every connection on ln with reply after delay.
func answerHTTP(ln net.Listener, reply string, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(buf); err != nil {
				return
			}
			time.Sleep(delay)
			_, _ = c.Write([]byte(reply))
		}()
	}
}

// TestReloadsRememberServers: a server that failed its checks, a drained one
// and a custom weight are known to every new generation from its first
// moment, across reloads under load: not one connection reaches them.
func TestReloadsRememberServers(t *testing.T) {
	dead, drained, heavy := startChecked(t, "dead"), startChecked(t, "drained"), startChecked(t, "heavy")
	d := newDaemons(t, "")
	cfg := healthConfig(d, "", "", dead, drained, heavy)
	d.writeConfig(cfg)
	d.mustLaunch()
	dead.checkDown()
	waitHealth(t, d, "dead", "down")
	if r := adminQuery(t, d.adminSock, "set server app/drained state drain"); r != "server app/drained is now drain\n" {
		t.Fatalf("set server state: %q", r)
	}
	if r := adminQuery(t, d.adminSock, "set server app/heavy weight 7"); r != "server app/heavy weight is now 7\n" {
		t.Fatalf("set server weight: %q", r)
	}
	// From here on, checks are slow: a new generation that forgot would
	// send traffic to "dead" for seconds.
	d.writeConfig(strings.Replace(cfg, `interval = "100ms"`, `interval = "5s"`, 1))
	deadBefore, drainedBefore := dead.accepted.Load(), drained.accepted.Load()

	l := startLoad(d.addr(), 4, 100000)
	for i := range 10 {
		time.Sleep(100 * time.Millisecond)
		d.mustLaunch()
		for _, want := range []struct{ server, field, value string }{
			{"dead", "health", "down"}, {"drained", "admin", "drain"}, {"heavy", "weight", "7"},
		} {
			f := serverState(t, d, want.server)
			got := map[string]string{"health": f[3], "admin": f[4], "weight": f[5]}[want.field]
			if got != want.value {
				t.Fatalf("reload %d: the new generation says %s %s=%s, want %s (line %v)", i+1, want.server, want.field, got, want.value, f)
			}
		}
	}
	ok, failed, errs := l.finish()
	if failed != 0 {
		t.Errorf("%d of %d connections failed: %v", failed, ok+failed, errs)
	}
	if n := dead.accepted.Load() - deadBefore; n != 0 {
		t.Errorf("%d connections reached the server marked down across 10 reloads", n)
	}
	if n := drained.accepted.Load() - drainedBefore; n != 0 {
		t.Errorf("%d connections reached the drained server across 10 reloads", n)
	}
	if !strings.Contains(d.log(), `"source":"the old generation"`) {
		t.Errorf("the new generations did not take the state over from the old ones:\n%s", d.log())
	}
}

func TestColdStartSendsNothingToADeadServer(t *testing.T) {
	dead, live := startChecked(t, "dead"), startChecked(t, "live")
	dead.checkDown()
	d := newDaemons(t, "")
	d.writeConfig(strings.Replace(healthConfig(d, "", "", dead, live), `interval = "100ms"`, `interval = "5s"`, 1))
	d.mustLaunch()
	for range 30 {
		if got := whoAnswers(t, d.addr(), ""); got != "live" {
			t.Fatalf("%q answered", got)
		}
	}
	if n := dead.accepted.Load(); n != 0 {
		t.Fatalf("a cold start sent %d connections to a server whose checks fail", n)
	}
	if f := serverState(t, d, "dead"); f[3] != "down" {
		t.Fatalf("show servers state: %v", f)
	}
}

func TestStateFileAfterRestart(t *testing.T) {
	dead, live := startChecked(t, "dead"), startChecked(t, "live")
	d := newDaemons(t, "")
	stateFile := filepath.Join(d.dir, "lb.state")
	cfg := healthConfig(d, fmt.Sprintf("state_file = %q", stateFile), "", dead, live)
	d.writeConfig(cfg)
	first := d.mustLaunch()
	dead.checkDown()
	waitHealth(t, d, "dead", "down")
	adminQuery(t, d.adminSock, "set server app/live weight 9")
	// A stop, then a fresh start: no old generation to ask.
	if err := syscall.Kill(first, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first, "lb after SIGTERM")
	if _, err := os.Stat(stateFile); err != nil {
		t.Fatalf("no state file after a stop: %v", err)
	}
	d.writeConfig(strings.Replace(cfg, `interval = "100ms"`, `interval = "5s"`, 1))
	d.mustLaunch()
	if f := serverState(t, d, "dead"); f[3] != "down" {
		t.Fatalf("after a restart, dead is %v", f)
	}
	if f := serverState(t, d, "live"); f[5] != "9" {
		t.Fatalf("after a restart, live's weight is %v", f)
	}
	if !strings.Contains(d.log(), `"source":"state file `+stateFile+`"`) {
		t.Fatalf("the restart did not read the state file:\n%s", d.log())
	}
}

func TestPassiveChecksActFirst(t *testing.T) {
	a, b := startChecked(t, "a"), startChecked(t, "b")
	d := newDaemons(t, "")
	cfg := healthConfig(d, "", "retries = 1", a, b)
	cfg = strings.Replace(cfg, `interval = "100ms"`, "interval = \"10s\"\nerror_limit = 2", 1)
	d.writeConfig(cfg)
	d.mustLaunch()
	a.close() // the traffic port dies; the check port still answers
	for range 10 {
		if got := whoAnswers(t, d.addr(), ""); got != "b" {
			t.Fatalf("%q answered", got)
		}
	}
	if f := serverState(t, d, "a"); f[3] != "down" {
		t.Fatalf("after traffic errors, a is %v; passive checks should have marked it down before the next active check (10s)", f)
	}
	if !strings.Contains(d.log(), "server app/a is DOWN: 2 consecutive connection errors") {
		t.Fatalf("no passive DOWN line:\n%s", d.log())
	}
}

func TestAdminServerCommands(t *testing.T) {
	a := startChecked(t, "a")
	d := newDaemons(t, "")
	d.writeConfig(healthConfig(d, "", "", a))
	d.mustLaunch()
	for _, tc := range []struct{ cmd, want string }{
		{"set server app/a state maint", "server app/a is now maint\n"},
		{"set server app/a state ready", "server app/a is now ready\n"},
		{"set server app/nope state drain", `error: no server "nope" in backend "app" (servers: a)` + "\n"},
		{"set server nope/a state drain", `error: no backend "nope"` + "\n"},
		{"set server app/a state sleeping", `error: unknown state "sleeping": use ready, drain or maint` + "\n"},
		{"set server app/a weight 300", "error: weight 300 is out of range (0 to 256)\n"},
		{"set server app/a weight heavy", `error: weight "heavy" is not a number` + "\n"},
		{"set server app/a", "error: usage: set server BACKEND/SERVER state ready|drain|maint, or set server BACKEND/SERVER weight 0-256\n"},
	} {
		if got := adminQuery(t, d.adminSock, tc.cmd); got != tc.want {
			t.Errorf("%q answered %q, want %q", tc.cmd, got, tc.want)
		}
	}
	whoAnswers(t, d.addr(), "") // "a\n" from the server, nothing from the client
	// lb counts a connection's bytes when it ends, a moment after the
	// client closed.
	var stat string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if stat = adminQuery(t, d.adminSock, "show stat"); strings.Contains(stat, "\napp a up ready 0 1 1 0 0 2 0 0 0 0\n") {
			break
		}
	}
	if !strings.HasPrefix(stat, "# backend server health admin active max total errors bytes_in bytes_out 2xx 4xx 5xx response_errors\n") ||
		!strings.Contains(stat, "\napp a up ready 0 1 1 0 0 2 0 0 0 0\n") {
		t.Errorf("show stat after one connection:\n%s", stat)
	}
	// Maintenance: no traffic, and no checks reach the server.
	adminQuery(t, d.adminSock, "set server app/a state maint")
	if r := whoAnswersOrNot(d.addr()); r != "" {
		t.Errorf("a server in maintenance answered %q", r)
	}
}

// whoAnswersOrNot is whoAnswers for a connection that may be refused: it
// returns "" when lb closes the connection without a server.
func whoAnswersOrNot(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	return strings.TrimSpace(string(buf[:n]))
}

// TestReloadHandoverRules: what a new generation takes over of a server
// depends on what changed in its configuration (README, Admin socket):
//   - unchanged: everything, down to how far through rise or fall its
//     checks are;
//   - its configured weight changed: the new weight wins over the runtime
//     one an operator set, but its admin state (drain) holds;
//   - its address changed: nothing; it starts fresh, with its own checks.
func TestReloadHandoverRules(t *testing.T) {
	falling, weighted, moved, target := startChecked(t, "falling"), startChecked(t, "weighted"), startChecked(t, "moved"), startChecked(t, "target")
	d := newDaemons(t, "")
	withKeys := func(cfg string, s *checked, keys string) string {
		return strings.Replace(cfg, fmt.Sprintf("check = { port = %d }", s.checkPort), keys+"\ncheck = { port = "+strconv.Itoa(s.checkPort)+" }", 1)
	}
	base := healthConfig(d, "", "", falling, weighted, moved)
	base = strings.Replace(base, "fall = 2", "fall = 20", 1)
	base = withKeys(base, weighted, "weight = 2")
	d.writeConfig(base)
	d.mustLaunch()
	waitHealth(t, d, "moved", "up")
	moved.checkDown()
	waitHealth(t, d, "moved", "down")
	for _, cmd := range []string{"set server app/weighted weight 7", "set server app/weighted state drain", "set server app/moved state maint"} {
		if r := adminQuery(t, d.adminSock, cmd); !strings.HasPrefix(r, "server app/") {
			t.Fatalf("%s: %q", cmd, r)
		}
	}
	// falling fails its checks: 20 in a row take it down, 100ms apart.
	falling.checkDown()
	progress := func() (int, int) {
		f := serverState(t, d, "falling")
		var n, of int
		if f[7] == "-" {
			return 0, 0 // no check counted toward a change
		}
		if _, err := fmt.Sscanf(f[7], "%d/%d", &n, &of); err != nil {
			t.Fatalf("check progress %q: %v", f[7], err)
		}
		return n, of
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := progress(); n < 3; n, _ = progress() {
		if time.Now().After(deadline) {
			t.Fatalf("falling's checks did not count 3 failures in 10s: %v", serverState(t, d, "falling"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	before, _ := progress()

	// The next generation: checks slowed down (no new result for 10s),
	// weighted's configured weight changed, moved's address moved.
	next := strings.Replace(base, `interval = "100ms"`, `interval = "10s"`, 1)
	next = strings.Replace(next, "weight = 2", "weight = 3", 1)
	next = strings.Replace(next, moved.addr(), target.addr(), 1)
	next = strings.Replace(next, fmt.Sprintf("port = %d", moved.checkPort), fmt.Sprintf("port = %d", target.checkPort), 1)
	d.writeConfig(next)
	d.mustLaunch()

	if n, of := progress(); n < before || of != 20 {
		t.Errorf("falling's check progress after the reload: %d/%d, want at least the %d/20 it had: rise and fall progress is handed over", n, of, before)
	}
	if f := serverState(t, d, "falling"); f[3] != "up" {
		t.Errorf("falling after the reload: %v, want still up (its checks had not reached fall)", f)
	}
	if f := serverState(t, d, "weighted"); f[5] != "3" || f[4] != "drain" {
		t.Errorf("weighted after its configured weight changed: %v; want weight 3 (the new configured one wins over the runtime 7) and still drain", f)
	}
	if f := serverState(t, d, "moved"); f[2] != target.addr() || f[3] != "up" || f[4] != "ready" || f[5] != "1" {
		t.Errorf("moved after its address changed: %v; want %s up (its own check), ready, weight 1: nothing of the old address's state", f, target.addr())
	}
}
