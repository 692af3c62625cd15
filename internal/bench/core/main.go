// Command core is lb's one-core comparison with HAProxy: lb (GOMAXPROCS=1)
// and HAProxy (nbthread 1) each pinned to the same CPU, the load
// generators and the backend pinned to another, measured side by side in
// one run. `make bench-core` builds lb and runs it.
//
//	go run ./internal/bench/core -lb ./lb [-rounds 3] [-duration 10s] [-conns 8000] [-bulk-gb 4]
//
// What it measures, for lb and HAProxy in turn (lb, haproxy, lb, haproxy,
// ...), each on a freshly started proxy, -rounds times:
//
//	http       wrk -t1 -c50 -d DURATION, keep-alive, small responses, through
//	           the HTTP-mode frontend (and straight to the backend: direct):
//	           req/s, and the proxy's CPU time (utime+stime of
//	           /proc/PID/stat over the run) per request
//	tcp        the same load through the TCP-mode frontend
//	bulk       -bulk-gb GB through the TCP-mode frontend to a sink, over
//	           -streams connections at once: the proxy's CPU seconds per GB
//	idle-tcp   -conns connections through the TCP-mode frontend, each sending
//	           one request and reading its response (so that its server
//	           connection exists), then held: the proxy's resident memory
//	           (VmRSS) and open descriptors (/proc/PID/fd) per connection,
//	           over what it had before, and how many were served
//	idle-http  the same through the HTTP-mode frontend: keep-alive clients
//	           idle after one request each
//	h2         HTTP/2 over TLS (ECDSA P-256 certificate), h2load -c 20 -m 10
//	           for DURATION: req/s and CPU per request
//	h2-fwd     the same, HAProxy sending the server the request headers lb
//	           sends by default: X-Forwarded-For (option forwardfor),
//	           X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id
//	           (unique-id-header), as lb does the same work then
//	h2-h2      the same through a backend spoken to in HTTP/2 (h2c, a Go
//	           net/http server): lb's proto = "h2", HAProxy's proto h2
//	tls-ecdsa  new TLS connections with 10 HTTP/1.1 requests each (h2load
//	           --h1 -c 200 -n 2000, 10 times): CPU per connection
//	tls-rsa    the same with an RSA 2048 certificate
//	https-bulk -bulk-gb GB of 1 MiB responses downloaded over HTTPS
//	           (HTTP/1.1, 4 connections): CPU seconds per GB
//
// The HTTPS measures use self-signed certificates made for the run, the
// same for lb and HAProxy; h2load is the client (Debian's nghttp2-client).
//
// The backend is this program started again (-role backend): a small HTTP/1.1
// server that answers every request with 200 and a -body byte body, and a
// sink that counts what it reads, and a server of 1 MiB responses
// (https-bulk). The idle and bulk clients are this
// program too, each in a process of its own (so 8,000 client connections
// and the backend's 8,000 count against limits of their own), with the soft
// limit of open files raised to the hard one. Proxies run under
// `taskset -c PROXY_CPU`, everything else under `taskset -c LOAD_CPU`.
//
// Every wait is bounded; every process started is stopped (SIGTERM, then
// SIGKILL) after its measurement, on exit, on Ctrl-C and by a watchdog.
// HAProxy or wrk (or h2load, for an HTTPS measure) missing is a failure
// (exit status 1), said so in the report: the comparison is the point.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"lb/internal/bench/benchutil"
)

// options are the command line.
type options struct {
	lb, haproxy, wrk  string
	h2load            string
	rounds            int
	duration, warmup  time.Duration
	conns             int // idle connections
	loadConns         int // wrk -c
	bulkGB            float64
	streams           int
	body              int
	proxyCPU, loadCPU string
	settle            time.Duration
	measures          []string
}

// allMeasures are the measures, in the order of each round.
var allMeasures = []string{"http", "http-scraped", "http-limited", "tcp", "bulk", "idle-tcp", "idle-http",
	"h2", "h2-fwd", "h2-h2", "tls-ecdsa", "tls-rsa", "https-bulk"}

// httpsMeasures are the measures that need h2load and certificates.
var httpsMeasures = []string{"h2", "h2-fwd", "h2-h2", "tls-ecdsa", "tls-rsa", "https-bulk"}

// logf writes a progress line to standard error.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-core: "+format+"\n", args...)
}

// main runs a child role (-role), or parses and checks the flags and runs
// the benchmark.
func main() {
	if len(os.Args) > 2 && os.Args[1] == "-role" {
		os.Exit(runRole(os.Args[2], os.Args[3:]))
	}
	var o options
	var measures string
	flag.StringVar(&o.lb, "lb", "./lb", "the lb binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "the HAProxy binary, a path or a name looked up in PATH")
	flag.StringVar(&o.wrk, "wrk", "wrk", "the wrk binary, a path or a name looked up in PATH")
	flag.StringVar(&o.h2load, "h2load", "h2load", "the h2load binary (HTTPS measures), a path or a name looked up in PATH")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds: each measures lb and HAProxy once, in turn, on every measure")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "wrk's measured run, each target, each round (whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "a wrk run before each measured one, not counted; 0 for none")
	flag.IntVar(&o.conns, "conns", 8000, "idle connections, TCP mode and HTTP mode")
	flag.IntVar(&o.loadConns, "load-conns", 50, "wrk's connections (-c)")
	flag.Float64Var(&o.bulkGB, "bulk-gb", 4, "bulk: GB (10^9 bytes) through TCP mode, each target, each round")
	flag.IntVar(&o.streams, "streams", 4, "bulk: connections at once")
	flag.IntVar(&o.body, "body", 128, "the HTTP responses' body, bytes")
	flag.StringVar(&o.proxyCPU, "proxy-cpu", "0", "the CPU of lb and HAProxy (taskset -c)")
	flag.StringVar(&o.loadCPU, "load-cpu", "1", "the CPUs of wrk, the clients and the backend (taskset -c)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle: the pause after the last connection is open, before memory and descriptors are read")
	flag.StringVar(&measures, "measures", strings.Join(allMeasures, ","), "the measures to run, comma-separated, of "+strings.Join(allMeasures, ","))
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nlb (GOMAXPROCS=1) and HAProxy (nbthread 1) on the same single CPU, side by side: CPU per request, req/s, CPU per GB, memory and descriptors per idle connection.\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	for m := range strings.SplitSeq(measures, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(allMeasures, m) {
			fmt.Fprintf(os.Stderr, "bench-core: -measures: unknown measure %q (want some of %s)\n", m, strings.Join(allMeasures, ","))
			os.Exit(2)
		}
		if !slices.Contains(o.measures, m) {
			o.measures = append(o.measures, m)
		}
	}
	if msg := o.check(); msg != "" {
		fmt.Fprintln(os.Stderr, "bench-core: "+msg)
		os.Exit(2)
	}
	os.Exit(run(o))
}

// check returns what is wrong with o, or "".
func (o options) check() string {
	switch {
	case o.rounds < 1 || o.rounds > 50:
		return "-rounds must be 1 to 50"
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return "-duration must be 1s to 10m"
	case o.warmup < 0 || o.warmup > time.Minute:
		return "-warmup must be 0 to 1m"
	case o.conns < 1 || o.conns > 30000:
		return "-conns must be 1 to 30000"
	case o.loadConns < 1 || o.loadConns > 10000:
		return "-load-conns must be 1 to 10000"
	case o.bulkGB < 0.001 || o.bulkGB > 1000:
		return "-bulk-gb must be 0.001 to 1000"
	case o.streams < 1 || o.streams > 256:
		return "-streams must be 1 to 256"
	case o.body < 0 || o.body > 1<<20:
		return "-body must be 0 to 1 MiB"
	case o.settle < 0 || o.settle > time.Minute:
		return "-settle must be 0 to 1m"
	case o.proxyCPU == "" || o.loadCPU == "":
		return "-proxy-cpu and -load-cpu must name CPUs"
	}
	return ""
}

// Bounds of the measurements.
const (
	// wrkSlack is what a wrk run may take beyond its duration.
	wrkSlack = 30 * time.Second
	// idleOpenWait bounds the idle client's opening of its connections.
	idleOpenWait = 2 * time.Minute
	// childWait bounds a child's exit once told to stop.
	childWait = 10 * time.Second
)

// bulkBound bounds one bulk transfer: 50 MB/s at the least.
func (o options) bulkBound() time.Duration {
	return 30*time.Second + time.Duration(o.bulkGB*20*float64(time.Second))
}

// bound bounds the whole run.
func (o options) bound() time.Duration {
	load := 3 * (o.warmup + o.duration + 2*wrkSlack + 2*benchutil.ReadyWait) // direct, lb, haproxy
	perRound := 2*load + 2*(o.bulkBound()+benchutil.ReadyWait) + 4*(idleOpenWait+o.settle+childWait+benchutil.ReadyWait)
	// h2, h2-fwd and h2-h2 (lb, haproxy), tls-ecdsa and tls-rsa (tlsRuns and a
	// warm-up, each bounded by tlsRunBound), https-bulk.
	perRound += 6*(o.warmup+o.duration+2*wrkSlack+2*benchutil.ReadyWait) + 4*((tlsRuns+1)*tlsRunBound+benchutil.ReadyWait) +
		2*(o.bulkBound()+benchutil.ReadyWait)
	return time.Duration(o.rounds)*perRound + 5*time.Minute
}

// runner is one run of the benchmark.
type runner struct {
	o           options
	dir         string
	self        string // this program: the children
	wrk         string
	h2load      string // "" without an HTTPS measure
	ecdsa, rsa  certFiles
	reg         *benchutil.Registry
	backend     *benchutil.Proc
	backendAddr string
	sinkAddr    string
	bigAddr     string // bigBody responses, for https-bulk
	h2cAddr     string // the HTTP/2 backend (h2c), for h2-h2
	proxyCPUs   []int
	loadCPUs    []int
	seq         int // numbers the processes' logs
	res         *results
}

// run runs the benchmark and returns the exit status.
func run(o options) int {
	reg := &benchutil.Registry{}
	ctx, stop := reg.Supervise(o.bound(), logf)
	defer stop()

	r := &runner{o: o, reg: reg, res: newResults(o.rounds)}
	code := r.run(ctx)
	for _, err := range reg.StopAll() {
		logf("%v", err)
		code = 1
	}
	if code != 0 && r.dir != "" {
		logf("kept %s (configurations and logs) for inspection", r.dir)
	} else if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
	if ctx.Err() != nil {
		return 130
	}
	return code
}

// run finds the peers, starts the backend, measures every round and
// prints the report. It returns the exit status.
func (r *runner) run(ctx context.Context) int {
	o := r.o
	lb := &proxy{name: "lb", label: "lb"}
	ha := &proxy{name: "haproxy", label: "HAProxy"}
	proxies := []*proxy{lb, ha}
	fatal := func(format string, args ...any) int {
		fmt.Printf("FAIL: %s\n", fmt.Sprintf(format, args...))
		return 1
	}
	var err error
	if lb.bin, err = benchutil.LookBinary(o.lb, false); err != nil {
		return fatal("lb binary %s: %v (run `make build` first)", o.lb, err)
	}
	lb.version = benchutil.FirstLine(lb.bin, "-v")
	if ha.bin, err = benchutil.LookBinary(o.haproxy, true); err != nil {
		ha.missing = fmt.Sprintf("HAProxy is not installed (%v): `apt-get install -y haproxy` adds it", err)
		logf("%s; measuring lb alone, and the run fails", ha.missing)
	} else {
		ha.version = benchutil.FirstLine(ha.bin, "-v")
	}
	if r.wrk, err = benchutil.LookBinary(o.wrk, true); err != nil {
		return fatal("wrk is not installed (%v): `apt-get install -y wrk` adds it", err)
	}
	if slices.ContainsFunc(o.measures, func(m string) bool { return slices.Contains(httpsMeasures, m) }) {
		if r.h2load, err = benchutil.LookBinary(o.h2load, true); err != nil {
			return fatal("h2load is not installed (%v): `apt-get install -y nghttp2-client` adds it", err)
		}
	}
	for _, cpus := range []string{o.proxyCPU, o.loadCPU} {
		if err := pinCheck(ctx, cpus); err != nil {
			return fatal("%v", err)
		}
	}
	if r.proxyCPUs, err = benchutil.ParseCPUList(o.proxyCPU); err != nil {
		return fatal("-proxy-cpu: %v", err)
	}
	if r.loadCPUs, err = benchutil.ParseCPUList(o.loadCPU); err != nil {
		return fatal("-load-cpu: %v", err)
	}
	if r.self, err = os.Executable(); err != nil {
		return fatal("find this program, to start its children: %v", err)
	}
	if r.dir, err = os.MkdirTemp("", "lb-bench-core-"); err != nil {
		return fatal("%v", err)
	}
	if r.ecdsa, r.rsa, err = writeCerts(r.dir); err != nil {
		return fatal("certificates: %v", err)
	}
	if err := r.startBackend(ctx); err != nil {
		return fatal("start the backend: %v", err)
	}

	for round := range o.rounds {
		for _, m := range o.measures {
			if ctx.Err() != nil {
				break
			}
			if m == "http" {
				r.measureLoad(ctx, round, nil, m)
			}
			for _, p := range proxies {
				if p.missing != "" || ctx.Err() != nil {
					continue
				}
				switch m {
				case "http", "http-scraped", "http-limited", "tcp":
					r.measureLoad(ctx, round, p, m)
				case "bulk":
					r.measureBulk(ctx, round, p)
				case "idle-tcp", "idle-http":
					r.measureIdle(ctx, round, p, m)
				case "h2", "h2-fwd", "h2-h2":
					r.measureH2(ctx, round, p, m)
				case "tls-ecdsa", "tls-rsa":
					r.measureTLS(ctx, round, p, m)
				case "https-bulk":
					r.measureHTTPSBulk(ctx, round, p)
				}
			}
		}
	}
	if err := r.backend.Stop(); err != nil {
		r.res.note("backend: %v", err)
	}
	printReport(os.Stdout, r, proxies)
	switch {
	case ctx.Err() != nil:
		fmt.Println("Interrupted: the measurement in progress is left out.")
		return 130
	case ha.missing != "":
		fmt.Printf("FAIL: %s.\n", ha.missing)
		return 1
	case r.res.failed:
		fmt.Println("FAIL: some measurements could not be made: see above.")
		return 1
	}
	return 0
}

// pinCheck checks that taskset can pin a process to cpus.
func pinCheck(ctx context.Context, cpus string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "taskset", "-c", cpus, "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot pin to CPUs %q with taskset (Debian's util-linux): %w: %s", cpus, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startBackend starts the backend process, pinned to the load CPUs, and
// waits until it serves.
func (r *runner) startBackend(ctx context.Context) error {
	ports, err := benchutil.FreePorts(4)
	if err != nil {
		return err
	}
	r.backendAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	r.sinkAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	r.bigAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	r.h2cAddr = fmt.Sprintf("127.0.0.1:%d", ports[3])
	p, err := benchutil.StartProc(benchutil.Spec{
		Name: "backend", Bin: r.self, Dir: r.dir, CPUs: r.o.loadCPU,
		Args: []string{"-role", "backend", "-addr", r.backendAddr, "-sink", r.sinkAddr, "-big", r.bigAddr, "-h2c", r.h2cAddr,
			"-body", fmt.Sprint(r.o.body), "-life", r.o.bound().String()},
	})
	if err != nil {
		return err
	}
	r.reg.Add(p)
	r.backend = p
	for _, addr := range []string{r.backendAddr, r.sinkAddr, r.bigAddr, r.h2cAddr} {
		if err := p.WaitReady(ctx, addr); err != nil {
			return err
		}
	}
	if err := benchutil.Probe(ctx, r.backendAddr, r.o.body); err != nil {
		return fmt.Errorf("backend: a first request failed: %w", err)
	}
	return nil
}
