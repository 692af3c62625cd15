package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"lb/internal/bench/benchutil"
)

// Bounds of the steps of one system's run.
const (
	reloadTimeout = 30 * time.Second // one reload command
	portWait      = 20 * time.Second // the first start's port to accept
	warmUp        = 300 * time.Millisecond
	settle        = 1500 * time.Millisecond // after the last reload: longer than lb's default handshake_grace (1s)
	clientsStop   = 20 * time.Second        // > dialTimeout + ioTimeout
	drainWait     = 5 * time.Second         // old generations exiting on their own
	termWait      = 10 * time.Second        // SIGTERM, then SIGKILL
	maxInFlight   = 64                      // reload commands running at once; a tick beyond is skipped
	procSample    = 50 * time.Millisecond   // how often the processes alive are counted
)

// system is one way of reloading: lb taking the sockets over through the
// admin socket beside its pid file (plain -sf), lb with -x naming it, lb
// with no admin socket (SO_REUSEPORT and BPF steering), optionally with
// net.ipv4.tcp_migrate_req=1 in a network namespace of its own, or HAProxy
// with -sf.
type system struct {
	Name     string // as printed
	kind     string // "lb" or "haproxy"
	bin      string
	takeover bool // -x ADMIN_SOCKET
	noAdmin  bool // admin_socket = "none"
	netns    bool // run in a network namespace with tcp_migrate_req=1
}

func (s system) slug() string {
	return strings.NewReplacer(" ", "", "-", "_", ",", "", "=", "").Replace(s.Name)
}

// reloadCommand is the reload command, as an operator would type it.
func (s system) reloadCommand() string {
	name := "lb"
	if s.kind == "haproxy" {
		name = "haproxy"
	}
	cmd := fmt.Sprintf("%s -f CFG -p PIDFILE -D -sf $(cat PIDFILE)", name)
	if s.takeover {
		cmd += " -x ADMIN_SOCKET"
	}
	if s.noAdmin {
		cmd += "   (admin_socket = \"none\")"
	}
	if s.netns {
		cmd += "   (tcp_migrate_req=1)"
	}
	return cmd
}

// result is what one storm measured.
type result struct {
	System          string   `json:"system"`
	Interval        string   `json:"interval"`
	Command         string   `json:"reload_command"`
	Reloads         int      `json:"reloads"`
	Skipped         int      `json:"ticks_skipped"`
	FailedReloads   int      `json:"failed_reloads"`
	ReloadErrors    []string `json:"reload_errors,omitempty"`
	OK              int64    `json:"exchanges_ok"`
	Failed          int64    `json:"exchanges_failed"`
	FailedNew       int64    `json:"failed_new_connection"`
	FailedKeepAlive int64    `json:"failed_keep_alive"`
	FailedStream    int64    `json:"failed_long_stream"`
	Refused         int64    `json:"failed_refused"`
	Reset           int64    `json:"failed_reset"`
	Timeout         int64    `json:"failed_timeout"`
	Other           int64    `json:"failed_other"`
	Samples         []string `json:"failure_samples,omitempty"`
	FailedPerReload float64  `json:"failed_per_reload"`
	NewConnPerSec   float64  `json:"new_connections_per_second"`
	ReloadMedianMS  float64  `json:"reload_median_ms"`
	ReloadP99MS     float64  `json:"reload_p99_ms"`
	MaxProcs        int      `json:"most_processes_alive"`
	LoadSeconds     float64  `json:"load_seconds"`
	Cut             string   `json:"cut_short,omitempty"`
	Lingering       int      `json:"old_generations_lingering"`
	Left            []int    `json:"processes_left,omitempty"`
	Error           string   `json:"error,omitempty"`
}

// runner drives one storm of one system: its files live in dir.
type runner struct {
	sys     system
	dir     string
	cfg     string
	pidFile string
	sock    string
	logFile string
	port    int
	tr      *tracker

	mu        sync.Mutex
	launchers map[int]bool // reload commands running, by pid
}

func (r *runner) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *runner) config(backends []*backend, lbLogLevel string) string {
	var b strings.Builder
	if r.sys.kind == "haproxy" {
		fmt.Fprintf(&b, `global
    hard-stop-after 10m
    stats socket %s mode 600 level admin expose-fd listeners

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend web
    bind %s
    default_backend app

backend app
    balance roundrobin
`, r.sock, r.addr())
		for _, be := range backends {
			fmt.Fprintf(&b, "    server %s %s\n", be.name, be.addr())
		}
		return b.String()
	}
	admin := r.sock
	if r.sys.noAdmin {
		admin = "none"
	}
	fmt.Fprintf(&b, `[global]
admin_socket = %q
log_file = %q
log_level = %q

[defaults.timeout]
connect = "2s"
client = "30s"
server = "30s"

[[frontend]]
name = "web"
bind = [%q]
default_backend = "app"

[[backend]]
name = "app"
`, admin, r.logFile, lbLogLevel, r.addr())
	for _, be := range backends {
		fmt.Fprintf(&b, "\n[[backend.server]]\nname = %q\naddress = %q\n", be.name, be.addr())
	}
	return b.String()
}

// pid returns the pid in the pid file, or 0.
func (r *runner) pid() int {
	b, err := os.ReadFile(r.pidFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// launch runs the start or reload command, `BIN -f CFG -p PIDFILE -D -sf
// $(cat PIDFILE)` (plus `-x SOCKET` for a takeover reload), waits for it to
// exit, and returns how long it took. An error means the reload failed: a
// non-zero exit, a time-out, or a pid file that did not change.
func (r *runner) launch(ctx context.Context) (time.Duration, error) {
	args := []string{"-f", r.cfg, "-p", r.pidFile, "-D"}
	old := r.pid()
	if old != 0 {
		args = append(args, "-sf", strconv.Itoa(old))
		if r.sys.takeover {
			args = append(args, "-x", r.sock)
		}
	}
	// Output goes to a file, not a pipe: a daemon that kept the launcher's
	// stdout or stderr could never make Wait hang.
	out, err := os.CreateTemp(r.dir, "cmd-*.out")
	if err != nil {
		return 0, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.sys.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C on the terminal reaches this program,
	// which then stops what it started in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err = cmd.Start()
	if err == nil {
		r.mu.Lock()
		r.launchers[cmd.Process.Pid] = true
		r.mu.Unlock()
		err = cmd.Wait()
		r.mu.Lock()
		delete(r.launchers, cmd.Process.Pid)
		r.mu.Unlock()
	}
	took := time.Since(start)
	newPid := r.pid()
	r.tr.add(newPid)
	if err == nil && (newPid == 0 || newPid == old) {
		err = fmt.Errorf("exited 0 but the pid file says %d (was %d)", newPid, old)
	}
	if err != nil {
		if cctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no exit within %v", reloadTimeout)
		}
		_, _ = out.Seek(0, io.SeekStart)
		text, _ := io.ReadAll(io.LimitReader(out, 2048))
		msg := strings.Join(strings.Fields(string(text)), " ")
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return took, fmt.Errorf("%s %s: %w", filepath.Base(r.sys.bin), strings.Join(args, " "), err)
	}
	return took, nil
}

// waitPort waits until addr accepts a connection, at most bound.
func waitPort(ctx context.Context, addr string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing accepts on %s after %v: %v", addr, bound, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// generations counts the system's processes alive, not counting the reload
// commands still running: the generations, old and new.
func (r *runner) generations() int {
	r.tr.scan()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.tr.live() {
		if !r.launchers[p] {
			n++
		}
	}
	return n
}

// runStorm starts sys, puts the clients' load on it, launches a reload
// every interval for the storm's duration (or o.reloads of them) whether or
// not the previous one has finished, stops everything it started and
// returns what it measured.
func runStorm(ctx context.Context, sys system, every time.Duration, o options, backends []*backend, root string, tr *tracker) result {
	res := result{System: sys.Name, Interval: every.String(), Command: sys.reloadCommand()}
	dir := filepath.Join(root, sys.slug()+"-"+every.String())
	r := &runner{
		sys: sys, dir: dir, tr: tr, launchers: map[int]bool{},
		pidFile: filepath.Join(dir, "pid"),
		sock:    filepath.Join(dir, "admin.sock"),
		logFile: filepath.Join(dir, "lb.log"),
		cfg:     filepath.Join(dir, "lb.toml"),
	}
	if sys.kind == "haproxy" {
		r.cfg = filepath.Join(dir, "haproxy.cfg")
		r.sock = filepath.Join(dir, "haproxy.sock")
	}
	fail := func(err error) result {
		res.Error = err.Error()
		res.Left = tr.stopAll(termWait)
		logf("%s every %v: kept %s for inspection", sys.Name, every, dir)
		return res
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	// Every daemon of this system names its configuration, in dir, on its
	// command line.
	tr.addMarker(dir + string(filepath.Separator))
	port, err := benchutil.FreePort()
	if err != nil {
		return fail(err)
	}
	r.port = port
	if err := os.WriteFile(r.cfg, []byte(r.config(backends, o.lbLogLevel)), 0o644); err != nil {
		return fail(err)
	}

	logf("%s: starting on %s (%s), a reload every %v for %v", sys.Name, r.addr(), dir, every, o.storm)
	if _, err := r.launch(ctx); err != nil {
		return fail(fmt.Errorf("first start failed: %w", err))
	}
	if err := waitPort(ctx, r.addr(), portWait); err != nil {
		return fail(err)
	}

	var names []string
	for _, be := range backends {
		names = append(names, be.name)
	}
	loadStart := time.Now()
	l := startLoad(r.addr(), o.clients, o.keepAlive, o.streams, names)
	benchutil.SleepCtx(ctx, warmUp)
	newBefore := l.newOK.Load()

	var (
		mu        sync.Mutex
		durations []time.Duration
		wg        sync.WaitGroup
		inFlight  atomic.Int32
	)
	sampleStop := make(chan struct{})
	sampled := make(chan int)
	go func() { sampled <- r.sampleProcs(sampleStop) }()

	tick := time.NewTicker(every)
	end := time.Now().Add(o.storm)
	for n := 0; n < o.reloads; n++ {
		select {
		case <-ctx.Done():
			res.Cut = "interrupted"
		case <-tick.C:
		}
		if res.Cut != "" || time.Now().After(end) {
			break
		}
		if inFlight.Load() >= maxInFlight {
			res.Skipped++
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			took, err := r.launch(ctx)
			mu.Lock()
			defer mu.Unlock()
			durations = append(durations, took)
			res.Reloads++
			if err != nil {
				res.FailedReloads++
				if len(res.ReloadErrors) < maxSamples {
					res.ReloadErrors = append(res.ReloadErrors, err.Error())
				}
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	stormTook := time.Since(loadStart) - warmUp
	benchutil.SleepCtx(ctx, settle)
	newAfter := l.newOK.Load()

	stopped := l.finish(clientsStop)
	close(sampleStop)
	res.MaxProcs = <-sampled
	res.LoadSeconds = time.Since(loadStart).Seconds()
	res.OK, res.Failed = l.ok.Load(), l.failed.Load()
	res.FailedNew = l.byCli[clientNew].Load()
	res.FailedKeepAlive = l.byCli[clientKeepAlive].Load()
	res.FailedStream = l.byCli[clientStream].Load()
	res.Refused = l.byKind[kindRefused].Load()
	res.Reset = l.byKind[kindReset].Load()
	res.Timeout = l.byKind[kindTimeout].Load()
	res.Other = l.byKind[kindOther].Load()
	res.Samples = l.sampleList()
	res.NewConnPerSec = float64(newAfter-newBefore) / (stormTook + settle).Seconds()
	if res.Reloads > 0 {
		res.FailedPerReload = float64(res.Failed) / float64(res.Reloads)
	}
	res.ReloadMedianMS = ms(percentile(durations, 0.50))
	res.ReloadP99MS = ms(percentile(durations, 0.99))
	logf("%s every %v: %d reloads (%d failed), %d exchanges ok, %d failed, reload p50 %.0f ms p99 %.0f ms, at most %d processes",
		sys.Name, every, res.Reloads, res.FailedReloads, res.OK, res.Failed, res.ReloadMedianMS, res.ReloadP99MS, res.MaxProcs)

	// Old generations should finish and exit on their own once the clients
	// are gone; count those that do not, then stop everything.
	cur := r.pid()
	tr.scan()
	var old []int
	for _, p := range tr.live() {
		if p != cur {
			old = append(old, p)
		}
	}
	res.Lingering = len(tr.waitGone(old, drainWait))
	res.Left = tr.stopAll(termWait)
	if !stopped {
		res.Error = fmt.Sprintf("clients still running %v after being told to stop", clientsStop)
	}
	if len(res.Left) > 0 {
		res.Error = strings.TrimPrefix(res.Error+"; ", "; ") + fmt.Sprintf("processes still running after SIGKILL: %v", res.Left)
	}
	if res.Error == "" && res.FailedReloads == 0 {
		_ = os.RemoveAll(dir)
	} else {
		logf("%s every %v: kept %s for inspection", sys.Name, every, dir)
	}
	return res
}

// sampleProcs counts the system's generations every procSample until stop
// is closed, and returns the most seen at once.
func (r *runner) sampleProcs(stop <-chan struct{}) int {
	t := time.NewTicker(procSample)
	defer t.Stop()
	most := 0
	for {
		most = max(most, r.generations())
		select {
		case <-stop:
			return most
		case <-t.C:
		}
	}
}

// percentile returns the nearest-rank p-quantile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
