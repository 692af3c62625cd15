package health

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"lb/balancer"
)

func TestTCPDownAndUp(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t, "127.0.0.1:0")
	addr := ln.addr()
	pool, srv := newPool(t, "s1")
	logs, log := newLog()
	set := tcpSettings(addr)
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	start(t, c)

	waitFor(t, time.Second, "checks reach the server", func() bool { return ln.n.Load() >= 3 })
	if !srv[0].Up() {
		t.Fatal("a live server is down")
	}

	ln.close()
	took := waitFor(t, 2*time.Second, "server marked down", func() bool { return !srv[0].Up() })
	if bound := time.Duration(set.Fall)*set.Interval + set.Timeout; took > bound {
		t.Errorf("marked down after %v, want within Fall×Interval+Timeout = %v", took, bound)
	}
	if sn := state(t, c, "s1"); sn.State != (State{Up: false}) || sn.LastReason != "connect refused" {
		t.Errorf("state after going down = %+v", sn)
	}

	back := listenTCP(t, addr)
	want := []string{
		"server app/s1 is DOWN: connect refused, 3/3 checks failed",
		"server app/s1 is UP: 2/2 checks passed",
	}
	got := logs.waitTransitions(t, 2)
	if !srv[0].Up() {
		t.Error("server logged up is down")
	}
	// The listener counts a connection once it accepts it, a moment
	// after the check connected.
	waitFor(t, time.Second, "Rise checks reached the server", func() bool { return back.n.Load() >= int64(set.Rise) })
	if !slices.Equal(got, want) {
		t.Errorf("transition logs:\n got %q\nwant %q", got, want)
	}
	warns := logs.entries(t, "warn")
	if len(warns) != 1 {
		t.Fatalf("%d warn lines, want 1", len(warns))
	}
	for k, v := range map[string]string{"backend": "app", "server": "s1", "state": "DOWN", "reason": "connect refused", "checks": "3/3"} {
		if warns[0][k] != v {
			t.Errorf("DOWN line: %s = %v, want %q", k, warns[0][k], v)
		}
	}
	infos := logs.entries(t, "info")
	if len(infos) != 1 || infos[0]["state"] != "UP" || infos[0]["checks"] != "2/2" {
		t.Errorf("UP lines = %v", infos)
	}
}

func TestIntervals(t *testing.T) {
	t.Parallel()
	set := Settings{
		Type: TypeHTTP, Rise: 1000, Fall: 1000,
		Interval: 200 * time.Millisecond, FastInterval: 20 * time.Millisecond,
		DownInterval: 60 * time.Millisecond, Timeout: 100 * time.Millisecond,
	}
	cases := []struct {
		name      string
		healthy   bool
		start     State
		min, max  int64 // checks in one second
		whichIntv string
	}{
		{"up", true, State{Up: true}, 3, 7, "Interval"},
		{"failing while up", false, State{Up: true}, 20, 55, "FastInterval"},
		{"down", false, State{}, 8, 20, "DownInterval"},
		{"passing while down", true, State{}, 20, 55, "FastInterval"},
	}
	pool, srv := newPool(t, "a", "b", "c", "d")
	var targets []Target
	var servers []*httpServer
	for i, tc := range cases {
		code := 200
		if !tc.healthy {
			code = 503
		}
		hs := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
		servers = append(servers, hs)
		s := set
		s.Addr = hs.addr()
		targets = append(targets, Target{Backend: "app", Pool: pool, Server: srv[i], Settings: s, Start: tc.start})
	}
	_, log := newLog()
	c := New(targets, log)
	start(t, c)
	time.Sleep(300 * time.Millisecond) // past the spread first checks
	before := make([]int64, len(cases))
	for i, hs := range servers {
		before[i] = hs.n.Load()
	}
	time.Sleep(time.Second)
	for i, tc := range cases {
		n := servers[i].n.Load() - before[i]
		t.Logf("%s: %d checks/s", tc.name, n)
		if n < tc.min || n > tc.max {
			t.Errorf("%s: %d checks in 1s, want %d to %d (%s)", tc.name, n, tc.min, tc.max, tc.whichIntv)
		}
	}
}

func TestFirstChecksSpread(t *testing.T) {
	t.Parallel()
	const n = 10
	pool, _ := newPool(t)
	var targets []Target
	var lns []*tcpServer
	for i := range n {
		ln := listenTCP(t, "127.0.0.1:0")
		lns = append(lns, ln)
		s := tcpSettings(ln.addr())
		s.Interval = 500 * time.Millisecond
		targets = append(targets, Target{Backend: "app", Pool: pool, Server: balancer.NewServer(string(rune('a'+i)), ln.addr(), 1, 0, false),
			Settings: s, Start: State{Up: true}})
	}
	_, log := newLog()
	c := New(targets, log)
	begin := time.Now()
	start(t, c)
	waitFor(t, 2*time.Second, "every target checked", func() bool {
		for _, ln := range lns {
			if ln.first.Load() == 0 {
				return false
			}
		}
		return true
	})
	var firsts []time.Duration
	for _, ln := range lns {
		firsts = append(firsts, time.Duration(ln.first.Load()-begin.UnixNano()))
	}
	t.Logf("first checks at %v", firsts)
	if spread := slices.Max(firsts) - slices.Min(firsts); spread < 300*time.Millisecond {
		t.Errorf("first checks spread over %v, want about 450ms", spread)
	}
	if firsts[0] > 100*time.Millisecond {
		t.Errorf("first target's first check at %v, want at once", firsts[0])
	}
	if firsts[n-1] < 350*time.Millisecond {
		t.Errorf("last target's first check at %v, want about 450ms", firsts[n-1])
	}
}

func TestMaintIsNotChecked(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t, "127.0.0.1:0")
	pool, srv := newPool(t, "s1")
	srv[0].SetAdmin(balancer.AdminMaint)
	set := tcpSettings(ln.addr())
	set.Interval = 20 * time.Millisecond
	_, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.ColdStart(ctx)
	start(t, c)
	time.Sleep(300 * time.Millisecond)
	if n := ln.n.Load(); n != 0 {
		t.Fatalf("%d checks reached a server in maintenance", n)
	}
	// Draining servers are checked; the loop kept ticking meanwhile.
	srv[0].SetAdmin(balancer.AdminDrain)
	waitFor(t, time.Second, "checks after leaving maintenance", func() bool { return ln.n.Load() > 0 })
}

func TestStartState(t *testing.T) {
	t.Parallel()
	slow := 10 * time.Second // only the first check, at once, happens
	cases := []struct {
		name       string
		live       bool
		start      State
		wantChecks string // before the first check
		wantUp     bool
		wantLog    string
	}{
		{"down 1/2 passes once", true, State{Up: false, Count: 1}, "1/2", true, "server app/s1 is UP: 2/2 checks passed"},
		{"up 2/3 fails once", false, State{Up: true, Count: 2}, "2/3", false, "server app/s1 is DOWN: connect refused, 3/3 checks failed"},
		{"count out of range is clamped", false, State{Up: true, Count: 7}, "2/3", false, "server app/s1 is DOWN: connect refused, 3/3 checks failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := deadAddr(t)
			if tc.live {
				addr = listenTCP(t, "127.0.0.1:0").addr()
			}
			pool, srv := newPool(t, "s1")
			set := tcpSettings(addr)
			set.Interval, set.FastInterval, set.DownInterval = slow, slow, slow
			logs, log := newLog()
			c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: tc.start}}, log)
			if srv[0].Up() != tc.start.Up {
				t.Fatalf("New did not apply the start state: server up = %v", srv[0].Up())
			}
			if got := state(t, c, "s1").Checks; got != tc.wantChecks {
				t.Errorf("checks before the first check = %q, want %q", got, tc.wantChecks)
			}
			start(t, c)
			got := logs.waitTransitions(t, 1)
			if srv[0].Up() != tc.wantUp {
				t.Errorf("up = %v after one check, want %v", srv[0].Up(), tc.wantUp)
			}
			if !slices.Equal(got, []string{tc.wantLog}) {
				t.Errorf("logs = %q, want %q", got, tc.wantLog)
			}
		})
	}
}

func TestColdStart(t *testing.T) {
	t.Parallel()
	live := listenTCP(t, "127.0.0.1:0")
	hang := holdTCP(t)
	maint := listenTCP(t, "127.0.0.1:0")
	pool, srv := newPool(t, "live", "was-down", "dead", "hang", "maint")
	srv[4].SetAdmin(balancer.AdminMaint)
	hangSet := tcpSettings(hang.addr())
	hangSet.Type, hangSet.Timeout = TypeHTTP, 10*time.Second
	targets := []Target{
		{Backend: "app", Pool: pool, Server: srv[0], Settings: tcpSettings(live.addr()), Start: State{Up: true}},
		{Backend: "app", Pool: pool, Server: srv[1], Settings: tcpSettings(live.addr()), Start: State{}},
		{Backend: "app", Pool: pool, Server: srv[2], Settings: tcpSettings(deadAddr(t)), Start: State{Up: true}},
		{Backend: "app", Pool: pool, Server: srv[3], Settings: hangSet, Start: State{Up: true}},
		{Backend: "app", Pool: pool, Server: srv[4], Settings: tcpSettings(maint.addr()), Start: State{}},
	}
	logs, log := newLog()
	c := New(targets, log)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	c.ColdStart(ctx)
	if took := time.Since(begin); took > time.Second {
		t.Errorf("ColdStart took %v with a 300ms context", took)
	}
	for i, want := range []bool{true, true, false, true, false} {
		if srv[i].Up() != want {
			t.Errorf("%s: up = %v, want %v", srv[i].Name, srv[i].Up(), want)
		}
	}
	if sn := state(t, c, "dead"); sn.State != (State{}) || sn.LastReason != "connect refused" {
		t.Errorf("dead: %+v", sn)
	}
	if maint.n.Load() != 0 {
		t.Error("ColdStart checked a server in maintenance")
	}
	want := []string{
		"server app/dead is DOWN: connect refused, first check failed",
		"server app/was-down is UP: first check passed",
	}
	got := logs.transitions(t)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("logs:\n got %q\nwant %q", got, want)
	}
	// A cold start is no recovery: the servers it finds up do not ramp.
	// (Start up: SetUp(true) changes nothing.)
	if w := srv[0].EffectiveWeight(); w != 100 {
		t.Errorf("live server's weight after cold start = %d, want 100", w)
	}
}

func TestSlowStart(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t, "127.0.0.1:0")
	pool, srv := newPool(t, "s1", "s2")
	srv[0].SlowStart = time.Second
	set := tcpSettings(ln.addr())
	set.Rise = 1
	_, log := newLog()
	c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{}}}, log)
	start(t, c)
	waitFor(t, time.Second, "server up", srv[0].Up)
	up := time.Now()
	var weights []int
	for time.Since(up) < 1500*time.Millisecond {
		weights = append(weights, srv[0].EffectiveWeight())
		time.Sleep(20 * time.Millisecond)
	}
	full := slices.Index(weights, 100)
	t.Logf("weights every 20ms: %v", slices.Compact(slices.Clone(weights)))
	if weights[0] > 20 {
		t.Errorf("weight just after coming up = %d, want small", weights[0])
	}
	if !slices.IsSorted(weights) {
		t.Errorf("weight did not grow steadily: %v", weights)
	}
	if steps := len(slices.Compact(slices.Clone(weights))); steps < 4 {
		t.Errorf("weight grew in %d steps, want a ramp", steps)
	}
	if full < 0 {
		t.Fatalf("weight never reached 100: %v", weights)
	}
	if at := time.Duration(full) * 20 * time.Millisecond; at < 800*time.Millisecond {
		t.Errorf("full weight after %v, want about SlowStart (1s)", at)
	}
	if w := srv[1].EffectiveWeight(); w != 100 {
		t.Errorf("the other server's weight = %d", w)
	}
}

func TestStates(t *testing.T) {
	t.Parallel()
	pool, srv := newPool(t, "s1", "s2")
	_, log := newLog()
	c := New([]Target{
		{Backend: "app", Pool: pool, Server: srv[0], Settings: tcpSettings(deadAddr(t)), Start: State{Up: true, Count: 1}},
		{Backend: "app", Pool: pool, Server: srv[1], Settings: tcpSettings(deadAddr(t)), Start: State{}},
	}, log)
	want := []Snapshot{
		{Backend: "app", Server: "s1", State: State{Up: true, Count: 1}, Checks: "1/3"},
		{Backend: "app", Server: "s2", State: State{}, Checks: ""},
	}
	if got := c.states(); !slices.Equal(got, want) {
		t.Errorf("States() = %+v, want %+v", got, want)
	}
}

// holder is a listener that accepts connections and never answers.
type holder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func holdTCP(t *testing.T) *holder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{ln: ln, done: make(chan struct{})}
	go h.serve()
	t.Cleanup(func() {
		ln.Close()
		<-h.done
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

func (h *holder) serve() {
	defer close(h.done)
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}
}

func (h *holder) addr() string { return h.ln.Addr().String() }

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}
