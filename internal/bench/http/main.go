// Command http is lb's HTTP keep-alive benchmark: requests per second and
// latency through lb in HTTP mode, through HAProxy in HTTP mode and
// straight to the backends, measured side by side in one run, with the
// ratios of lb to the others. `make bench-http` builds lb and runs it.
//
//	go run ./internal/bench/http -lb ./lb [-clients 32] [-duration 10s] [-servers 2] [-body 128] [-rounds 1]
//
// The backends are small HTTP/1.1 servers in this process, on loopback,
// that answer every request with 200 and a body of -body bytes. The
// targets, each on its own port in front of the same backends:
//
//	direct   the backends themselves (client i on backend i mod N)
//	lb       lb -f CFG -q             (mode = "http", roundrobin, no checks)
//	haproxy  haproxy -f CFG -db       (mode http, http-keep-alive, http-reuse safe, roundrobin, no checks)
//
// HAProxy is measured when it is on PATH; otherwise the report says so. If
// lb does not start (a configuration it rejects, say), its output is shown
// and the others are measured all the same.
//
// Each client holds one keep-alive connection and sends
// "GET /bench HTTP/1.1" on it, one request after the other, reading each
// response whole (Content-Length or chunked); after an error it counts it
// and reconnects. Each measurement warms up first, then counts -duration
// of requests. With -rounds N the targets are measured N times, in turn
// (direct, lb, haproxy, direct, ...), so that a slow spell of a shared
// machine is spread over all of them.
//
// Every wait is bounded; every process started is stopped (SIGTERM, then
// SIGKILL) on exit, on Ctrl-C and by a watchdog.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"lb/internal/bench/benchutil"
)

// options are the command line.
type options struct {
	lb       string
	haproxy  string
	clients  int
	duration time.Duration
	warmup   time.Duration
	servers  int
	body     int
	rounds   int
	threads  int
}

// logf writes a progress line to standard error.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-http: "+format+"\n", args...)
}

// main parses and checks the flags, and runs the benchmark.
func main() {
	var o options
	flag.StringVar(&o.lb, "lb", "./lb", "the lb binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "the HAProxy binary, a path or a name looked up in PATH; \"\" leaves HAProxy out")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients, each on its own keep-alive connection")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measurement of each target, each round")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each measurement, not counted")
	flag.IntVar(&o.servers, "servers", 2, "backend servers")
	flag.IntVar(&o.body, "body", 128, "response body size, bytes")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds: each measures every target once, in turn")
	flag.IntVar(&o.threads, "haproxy-threads", 0, "HAProxy's nbthread; 0 leaves HAProxy's default (one thread per CPU)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nHTTP keep-alive requests/s and latency: direct, through lb and through HAProxy, side by side.\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	switch {
	case o.clients < 1 || o.clients > 10000:
		fmt.Fprintln(os.Stderr, "bench-http: -clients must be 1 to 10000")
		os.Exit(2)
	case o.duration <= 0 || o.duration > time.Hour:
		fmt.Fprintln(os.Stderr, "bench-http: -duration must be positive and at most 1h")
		os.Exit(2)
	case o.warmup < 0 || o.warmup > time.Minute:
		fmt.Fprintln(os.Stderr, "bench-http: -warmup must be 0 to 1m")
		os.Exit(2)
	case o.servers < 1 || o.servers > 100:
		fmt.Fprintln(os.Stderr, "bench-http: -servers must be 1 to 100")
		os.Exit(2)
	case o.body < 0 || o.body > 64<<20:
		fmt.Fprintln(os.Stderr, "bench-http: -body must be 0 to 64 MiB")
		os.Exit(2)
	case o.rounds < 1 || o.rounds > 100:
		fmt.Fprintln(os.Stderr, "bench-http: -rounds must be 1 to 100")
		os.Exit(2)
	case o.threads < 0 || o.threads > 64:
		fmt.Fprintln(os.Stderr, "bench-http: -haproxy-threads must be 0 to 64")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// target is one way to the backends.
type target struct {
	name    string
	command string          // as printed
	addrs   []string        // the clients spread over these
	proc    *benchutil.Proc // nil for direct
	// skip is why the target is not (or no longer) measured.
	skip string
	// failed marks a target that should have been measured and was not
	// (lb that did not start, a proxy that died): the exit status is 1.
	failed bool
	rounds []roundResult
	total  tally
	cpu    time.Duration // the proxy's CPU time over all its windows
	cpuOK  bool
}

// roundResult is one measurement of a target.
type roundResult struct {
	reqPerSec float64
	p99       time.Duration
}

// note is printed under every report.
const note = "These figures come from one run on a shared, noisy machine: compare the rows with each other only, never with another run or machine. " +
	"Clients, backends and proxy share the machine's CPUs."

// run runs the benchmark and returns the exit status.
func run(o options) int {
	// Every step is bounded; this bounds them all.
	perTarget := o.warmup + o.duration + dialTimeout + ioTimeout + 10*time.Second
	bound := time.Duration(o.rounds)*3*perTarget + 3*benchutil.ReadyWait + 2*time.Minute
	reg := &benchutil.Registry{}
	ctx, stop := reg.Supervise(bound, logf)
	defer stop()

	loadStart := benchutil.LoadAverage()
	dir, err := os.MkdirTemp("", "lb-bench-http-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	keepDir := false
	defer func() {
		if keepDir {
			logf("kept %s (configurations and logs) for inspection", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	bctx, stopBackends := context.WithCancel(context.Background())
	defer stopBackends()
	var backends []*benchutil.HTTPBackend
	for i := range o.servers {
		b, err := benchutil.StartHTTPBackend(bctx, "127.0.0.1:0", fmt.Sprintf("s%d", i+1), o.body)
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer b.Close()
		backends = append(backends, b)
	}
	var direct []string
	for _, b := range backends {
		direct = append(direct, b.Addr())
	}

	lbVersion, haVersion := "", ""
	targets := []*target{{name: "direct", command: fmt.Sprintf("%d in-process HTTP/1.1 servers", o.servers), addrs: direct}}
	lbT := &target{name: "lb", command: "lb -f CFG -q"}
	targets = append(targets, lbT)
	if bin, err := benchutil.LookBinary(o.lb, false); err != nil {
		lbT.skip, lbT.failed = fmt.Sprintf("lb binary %s: %v (run `make build` first)", o.lb, err), true
	} else {
		lbVersion = benchutil.FirstLine(bin, "-v")
		startProxy(ctx, lbT, bin, func(port int) ([]string, error) {
			cfg := filepath.Join(dir, "lb.toml")
			return []string{"-f", cfg, "-q"}, os.WriteFile(cfg, []byte(lbConfig(port, backends)), 0o644)
		}, dir, reg, o.body)
	}
	haT := &target{name: "haproxy", command: "haproxy -f CFG -db"}
	targets = append(targets, haT)
	if o.haproxy == "" {
		haT.skip = "left out (-haproxy \"\")"
	} else if bin, err := benchutil.LookBinary(o.haproxy, true); err != nil {
		haT.skip = fmt.Sprintf("not installed (%v): `apt-get install -y haproxy` adds it; lb and direct measured alone", err)
	} else {
		haVersion = benchutil.FirstLine(bin, "-v")
		startProxy(ctx, haT, bin, func(port int) ([]string, error) {
			cfg := filepath.Join(dir, "haproxy.cfg")
			return []string{"-f", cfg, "-db"}, os.WriteFile(cfg, []byte(haproxyConfig(port, backends, o.threads)), 0o644)
		}, dir, reg, o.body)
	}
	for _, t := range targets {
		if t.skip != "" {
			logf("%s: not measured: %s", t.name, t.skip)
		}
	}

	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		for _, t := range targets {
			if t.skip != "" || ctx.Err() != nil {
				continue
			}
			measure(ctx, t, o, round)
		}
	}

	code := 0
	for _, err := range reg.StopAll() {
		logf("%v", err)
		code = 1
	}
	for _, t := range targets {
		if t.failed {
			code = 1
		}
	}
	if code != 0 {
		keepDir = true
	}
	printReport(os.Stdout, o, targets, lbVersion, haVersion, loadStart, ctx.Err() != nil)
	if ctx.Err() != nil {
		return 130
	}
	return code
}

// startProxy starts a proxy target: writes its configuration for a free
// port (setup does, and returns the proxy's arguments), starts it, waits
// until it accepts and answers one request. On failure it marks the target
// not measured, with the reason.
func startProxy(ctx context.Context, t *target, bin string, setup func(port int) (args []string, err error),
	dir string, reg *benchutil.Registry, bodySize int) {
	fail := func(err error) {
		t.skip, t.failed = err.Error(), true
		if t.proc != nil {
			if err := t.proc.Stop(); err != nil {
				logf("%v", err)
			}
		}
	}
	port, err := benchutil.FreePort()
	if err != nil {
		fail(err)
		return
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args, err := setup(port)
	if err != nil {
		fail(fmt.Errorf("write the configuration: %w", err))
		return
	}
	logf("%s: starting on %s: %s %s", t.name, addr, bin, strings.Join(args, " "))
	p, err := benchutil.StartProc(benchutil.Spec{Name: t.name, Bin: bin, Args: args, Dir: dir})
	if err != nil {
		fail(err)
		return
	}
	reg.Add(p)
	t.proc, t.addrs = p, []string{addr}
	if err := p.WaitReady(ctx, addr); err != nil {
		fail(err)
		return
	}
	if err := benchutil.Probe(ctx, addr, bodySize); err != nil {
		if gone, how := p.Exited(); gone {
			fail(p.ExitError(how, " after its first request"))
			return
		}
		fail(fmt.Errorf("it accepts on %s but a first request failed: %w; its output (%s):\n%s", addr, err, p.LogPath, benchutil.Indent(p.LogTail(4096))))
	}
}

// measure runs one measurement of t and adds it to t's results.
func measure(ctx context.Context, t *target, o options, round int) {
	logf("round %d/%d: %s: %d clients, %v warm-up, %v measured", round, o.rounds, t.name, o.clients, o.warmup, o.duration)
	l := startLoad(ctx, t.addrs, o.clients, o.body, o.warmup, o.duration)
	var cpu time.Duration
	cpuOK := false
	if t.proc != nil {
		benchutil.SleepCtx(ctx, time.Until(l.start))
		cpu0, ok0 := t.proc.CPU()
		benchutil.SleepCtx(ctx, time.Until(l.end))
		cpu1, ok1 := t.proc.CPU()
		cpu, cpuOK = cpu1-cpu0, ok0 && ok1
	}
	res, err := l.wait()
	if err != nil {
		t.skip, t.failed = err.Error(), true
		return
	}
	if ctx.Err() != nil {
		return // cut short: not a full measurement
	}
	t.total.add(res)
	t.cpu += cpu
	t.cpuOK = (len(t.rounds) == 0 || t.cpuOK) && cpuOK
	secs := o.duration.Seconds()
	t.rounds = append(t.rounds, roundResult{reqPerSec: float64(res.ok) / secs, p99: res.hist.quantile(0.99)})
	logf("round %d/%d: %s: %.0f req/s, %d errors, p99 %v", round, o.rounds, t.name, float64(res.ok)/secs, res.errors, fmtDur(res.hist.quantile(0.99)))
	if t.proc != nil {
		if gone, how := t.proc.Exited(); gone {
			t.skip, t.failed = t.proc.ExitError(how, " during the measurement").Error(), true
			logf("%s", t.skip)
		}
	}
}

// fmtDur prints a latency with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// measured reports whether t has results.
func (t *target) measured() bool { return len(t.rounds) > 0 }

// reqPerSec is t's requests per second over all its rounds.
func (t *target) reqPerSec(o options) float64 {
	return float64(t.total.ok) / (float64(len(t.rounds)) * o.duration.Seconds())
}

// printReport prints the table, the ratios and what was not measured.
func printReport(w io.Writer, o options, targets []*target, lbVersion, haVersion, loadStart string, interrupted bool) {
	fmt.Fprintf(w, "\nHTTP keep-alive: %d clients, each on one keep-alive connection sending GET /bench and reading a %d-byte body; %d backend(s); %v measured per target per round after %v warm-up; %d round(s), in the order direct, lb, haproxy.\n",
		o.clients, o.body, o.servers, o.duration, o.warmup, o.rounds)
	fmt.Fprintf(w, "Machine: Linux %s, %d CPUs, load average %s before the run and %s after.", benchutil.Kernel(), runtime.NumCPU(), loadStart, benchutil.LoadAverage())
	if lbVersion != "" {
		fmt.Fprintf(w, " lb: %s.", lbVersion)
	}
	if haVersion != "" {
		fmt.Fprintf(w, " HAProxy: %s.", haVersion)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\trequests\terrors\treconnects\treq/s\tp50\tp99\tp99.9\tmax\tproxy CPU\tCPU/req\t")
	for _, t := range targets {
		if !t.measured() {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", t.name)
			continue
		}
		h := &t.total.hist
		cpu, perReq := "-", "-"
		if t.proc != nil && t.cpuOK {
			wall := float64(len(t.rounds)) * o.duration.Seconds()
			cpu = fmt.Sprintf("%.2f cores", t.cpu.Seconds()/wall)
			if t.total.ok > 0 {
				perReq = fmt.Sprintf("%.1fµs", float64(t.cpu.Microseconds())/float64(t.total.ok))
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, t.total.ok, t.total.errors, t.total.reconnects,
			t.reqPerSec(o), fmtDur(h.quantile(0.5)), fmtDur(h.quantile(0.99)), fmtDur(h.quantile(0.999)), fmtDur(time.Duration(h.max)), cpu, perReq)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, t := range targets {
		fmt.Fprintf(w, "  %-8s %s\n", t.name+":", t.command)
	}
	fmt.Fprintln(w)

	byName := map[string]*target{}
	for _, t := range targets {
		byName[t.name] = t
	}
	lb := byName["lb"]
	for _, other := range []string{"haproxy", "direct"} {
		fmt.Fprintln(w, ratioLine(o, lb, byName[other]))
	}
	if o.rounds > 1 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Per round, req/s:")
		for i := range o.rounds {
			var parts []string
			for _, t := range targets {
				if i < len(t.rounds) {
					parts = append(parts, fmt.Sprintf("%s %.0f", t.name, t.rounds[i].reqPerSec))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "  round %d: %s\n", i+1, strings.Join(parts, ", "))
			}
		}
	}
	fmt.Fprintln(w)
	for _, t := range targets {
		if t.skip != "" {
			fmt.Fprintf(w, "%s: not measured: %s\n", t.name, t.skip)
		}
		for _, s := range t.total.samples {
			fmt.Fprintf(w, "%s: error: %s\n", t.name, s)
		}
	}
	if interrupted {
		fmt.Fprintln(w, "Interrupted: the measurement in progress is left out.")
	}
	fmt.Fprintln(w, note)
}

// ratioLine compares lb with other: req/s (higher is better for lb) and
// p99 (lower is better).
func ratioLine(o options, lb, other *target) string {
	label := "lb/" + other.name
	if !lb.measured() || !other.measured() {
		var missing []string
		for _, t := range []*target{lb, other} {
			if !t.measured() {
				missing = append(missing, t.name)
			}
		}
		return fmt.Sprintf("%s: no ratio, %s not measured.", label, strings.Join(missing, " and "))
	}
	rps := lb.reqPerSec(o) / other.reqPerSec(o)
	line := fmt.Sprintf("%s: req/s %.2fx (higher is better for lb)", label, rps)
	lp, op := lb.total.hist.quantile(0.99), other.total.hist.quantile(0.99)
	if op > 0 {
		line += fmt.Sprintf(", p99 %.2fx (lower is better)", float64(lp)/float64(op))
	}
	if lb.cpuOK && other.cpuOK && lb.total.ok > 0 && other.total.ok > 0 && other.cpu > 0 {
		perLB := lb.cpu.Seconds() / float64(lb.total.ok)
		perOther := other.cpu.Seconds() / float64(other.total.ok)
		line += fmt.Sprintf(", CPU per request %.2fx (lower is better)", perLB/perOther)
	}
	if n := min(len(lb.rounds), len(other.rounds)); n > 1 {
		lo, hi := 0.0, 0.0
		for i := range n {
			r := lb.rounds[i].reqPerSec / other.rounds[i].reqPerSec
			if i == 0 || r < lo {
				lo = r
			}
			if i == 0 || r > hi {
				hi = r
			}
		}
		line += fmt.Sprintf("; req/s ratio per round %.2fx..%.2fx", lo, hi)
	}
	return line + "."
}
