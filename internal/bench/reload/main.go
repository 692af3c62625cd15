// Command reload is a reload storm benchmark: it reloads lb on a fixed
// cadence under continuous load, and HAProxy with `-D -sf` on the same load
// where HAProxy is installed, and prints side by side the reloads done,
// how long each reload command took (p50, p99), the failed exchanges of
// each kind of client, and the most processes alive at once. `make
// bench-reload` builds lb and runs it.
//
//	go run ./internal/bench/reload -lb ./lb -intervals 200ms,100ms -storm 20s
//
// Systems, in order, each on its own port in front of the same two
// in-process echo backends, one storm per interval:
//
//	lb             lb -f CFG -p PIDFILE -D -sf $(cat PIDFILE)              (sockets taken over through the admin socket)
//	lb -x          lb -f CFG -p PIDFILE -D -sf $(cat PIDFILE) -x SOCKET    (the same, the socket named)
//	lb no admin    the first command, admin_socket = "none"                (SO_REUSEPORT and BPF steering)
//	lb no admin, migrate=1   the same in a network namespace of its own with net.ipv4.tcp_migrate_req=1 (root only)
//	haproxy        haproxy -f CFG -p PIDFILE -D -sf $(cat PIDFILE)         (plain SO_REUSEPORT)
//
// A reload command is launched every interval whether or not the previous
// one has finished (at most 64 at once), as a busy service-discovery hook
// or several cron jobs would. Clients: new-connection clients open one
// connection per exchange (connect, send a line, read the server's name
// line and the echo, close); keep-alive clients keep a connection and
// exchange a line on it every 10 ms; long streams keep a connection and
// echo 16 KiB at a time through it. A failure is classified as connect
// refused, reset, timeout or other. Every wait is bounded, and every
// process the benchmark starts is stopped (SIGTERM, then SIGKILL) and
// checked gone before the next storm runs.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"lb/internal/bench/benchutil"
)

type options struct {
	lb         string
	haproxy    string
	intervals  []time.Duration
	storm      time.Duration
	reloads    int
	clients    int
	keepAlive  int
	streams    int
	json       bool
	lbLogLevel string
	migrate    bool
	only       string // run this system alone (inside its network namespace) and print JSON
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-reload: "+format+"\n", args...)
}

func main() {
	var o options
	var ivs string
	flag.StringVar(&o.lb, "lb", "./lb", "the lb binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "the HAProxy binary, a path or a name looked up in PATH; \"\" to leave HAProxy out")
	flag.StringVar(&ivs, "intervals", "200ms,100ms", "reload cadences, comma-separated: one storm per system and cadence")
	flag.DurationVar(&o.storm, "storm", 20*time.Second, "how long each storm reloads")
	flag.IntVar(&o.reloads, "reloads", 10000, "cap on the reloads of one storm")
	flag.IntVar(&o.clients, "clients", 16, "new-connection clients, each opening one connection after another")
	flag.IntVar(&o.keepAlive, "keepalive", 8, "keep-alive clients, each exchanging a line every 10 ms on one connection")
	flag.IntVar(&o.streams, "streams", 2, "long streams, each echoing 16 KiB at a time on one connection")
	flag.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	flag.StringVar(&o.lbLogLevel, "lb-log-level", "warn", "lb's global.log_level (HAProxy is configured without logs; \"info\" logs one line per connection)")
	flag.BoolVar(&o.migrate, "migrate", true, "add lb with tcp_migrate_req=1 in a network namespace of its own (needs root and unshare(1))")
	flag.StringVar(&o.only, "only", "", "internal: run this one system and print JSON")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nReload storms on a fixed cadence: lb vs HAProxy -sf under the same load.\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, f := range strings.Split(ivs, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "bench-reload: -intervals %q: %q is not a positive duration\n", ivs, f)
			os.Exit(2)
		}
		o.intervals = append(o.intervals, d)
	}
	if o.reloads < 1 || o.clients < 0 || o.keepAlive < 0 || o.streams < 0 || o.storm <= 0 {
		fmt.Fprintln(os.Stderr, "bench-reload: -reloads and -storm must be positive, the client counts not negative")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// report is everything printed, in -json form.
type report struct {
	Storm        string   `json:"storm"`
	Clients      string   `json:"clients"`
	Kernel       string   `json:"kernel"`
	CPUs         int      `json:"cpus"`
	MigrateReq   string   `json:"tcp_migrate_req"`
	LBVersion    string   `json:"lb_version"`
	HAProxy      string   `json:"haproxy_version,omitempty"`
	Notes        []string `json:"notes,omitempty"`
	Results      []result `json:"results"`
	Note         string   `json:"note"`
	FinishedTime string   `json:"finished"`
}

const note = "These figures come from one run on a shared, noisy machine: compare the rows with each other only, side by side, never with another run or machine."

// migrateName is the system run in a network namespace of its own.
const migrateName = "lb no admin, migrate=1"

func run(o options) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := newTracker()

	// First Ctrl-C (or SIGTERM): stop the storm, clean up and report what
	// was measured. A second one: clean up at once and exit.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("%v: stopping; a second signal stops at once", s)
		cancel()
		<-sigs
		logf("stopping every process started, at once")
		tr.stopAll(2 * time.Second)
		os.Exit(130)
	}()

	rep := report{
		Storm:   fmt.Sprintf("%v per storm, cadences %v", o.storm, o.intervals),
		Clients: fmt.Sprintf("%d new-connection, %d keep-alive, %d long-stream", o.clients, o.keepAlive, o.streams),
		Kernel:  benchutil.Kernel(), CPUs: runtime.NumCPU(), MigrateReq: readTrim("/proc/sys/net/ipv4/tcp_migrate_req"),
		Note: note,
	}
	lbBin, err := filepath.Abs(o.lb)
	if err == nil {
		_, err = os.Stat(lbBin)
	}
	if err != nil {
		logf("lb binary %s: %v (run `make build` first)", o.lb, err)
		return 1
	}
	rep.LBVersion = benchutil.FirstLine(lbBin, "-v")
	systems := []system{
		{Name: "lb", kind: "lb", bin: lbBin},
		{Name: "lb -x", kind: "lb", bin: lbBin, takeover: true},
		{Name: "lb no admin", kind: "lb", bin: lbBin, noAdmin: true},
		{Name: migrateName, kind: "lb", bin: lbBin, noAdmin: true, netns: true},
	}
	switch hp, err := exec.LookPath(o.haproxy); {
	case o.haproxy == "":
		rep.Notes = append(rep.Notes, "HAProxy left out (-haproxy \"\")")
	case err != nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("HAProxy was not available (%v): lb measured alone", err))
	default:
		rep.HAProxy = benchutil.FirstLine(hp, "-v")
		systems = append(systems, system{Name: "haproxy", kind: "haproxy", bin: hp})
	}
	if o.only != "" {
		var only []system
		for _, s := range systems {
			if s.Name == o.only {
				only = append(only, s)
			}
		}
		systems = only
	}

	root, err := os.MkdirTemp("", "lb-bench-reload-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.Remove(root) // only if empty: directories of failed storms are kept
	var backends []*backend
	for _, name := range []string{"s1", "s2"} {
		b, err := startBackend(name)
		if err != nil {
			logf("echo backend: %v", err)
			return 1
		}
		defer b.close()
		backends = append(backends, b)
	}

	code := 0
	for _, every := range o.intervals {
		for _, sys := range systems {
			if ctx.Err() != nil {
				break
			}
			var res result
			switch {
			case sys.netns && o.only == "":
				if !o.migrate {
					continue
				}
				var note string
				res, note = runInNetns(ctx, o, sys, every)
				if note != "" {
					rep.Notes = append(rep.Notes, note)
					continue
				}
			default:
				res = runStorm(ctx, sys, every, o, backends, root, tr)
			}
			if res.Error != "" {
				logf("%s every %v: %s", sys.Name, every, res.Error)
				code = 1
			}
			rep.Results = append(rep.Results, res)
		}
	}
	if left := tr.stopAll(termWait); len(left) > 0 {
		logf("processes still running after SIGKILL: %v", left)
		code = 1
	}
	if ctx.Err() != nil && code == 0 {
		code = 130
	}
	rep.FinishedTime = time.Now().UTC().Format(time.RFC3339)
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(os.Stdout, rep)
	}
	return code
}

// runInNetns runs one storm of sys in a new network namespace with
// net.ipv4.tcp_migrate_req=1, by running this program again there with
// -only, and returns its result; or a note saying why it could not.
func runInNetns(ctx context.Context, o options, sys system, every time.Duration) (result, string) {
	if os.Geteuid() != 0 {
		return result{}, sys.Name + ": left out: making a network namespace needs root"
	}
	self, err := os.Executable()
	if err != nil {
		return result{}, sys.Name + ": left out: " + err.Error()
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return result{}, sys.Name + ": left out: unshare(1) is missing (Debian: util-linux)"
	}
	args := []string{"-n", "sh", "-c", `ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && exec "$0" "$@"`,
		self, "-only", sys.Name, "-json", "-lb", sys.bin, "-haproxy", "", "-intervals", every.String(),
		"-storm", o.storm.String(), "-reloads", fmt.Sprint(o.reloads), "-clients", fmt.Sprint(o.clients),
		"-keepalive", fmt.Sprint(o.keepAlive), "-streams", fmt.Sprint(o.streams), "-lb-log-level", o.lbLogLevel}
	cctx, cancel := context.WithTimeout(ctx, o.storm+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "unshare", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		return result{}, fmt.Sprintf("%s: left out: the run in its network namespace failed: %v", sys.Name, err)
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Results) != 1 {
		return result{}, fmt.Sprintf("%s: left out: no result from its network namespace (%v)", sys.Name, err)
	}
	return rep.Results[0], ""
}

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nReload storms: %s; a reload command launched on each tick, whether or not the previous one finished. Clients: %s.\n",
		rep.Storm, rep.Clients)
	fmt.Fprintf(w, "Machine: Linux %s, %d CPUs, net.ipv4.tcp_migrate_req=%s. lb: %s.", rep.Kernel, rep.CPUs, rep.MigrateReq, rep.LBVersion)
	if rep.HAProxy != "" {
		fmt.Fprintf(w, " HAProxy: %s.", rep.HAProxy)
	}
	fmt.Fprintln(w)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "%s.\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tevery\treloads\tfailed reloads\treload p50\treload p99\tmost procs\tnew conns/s\tfailed new/keep-alive/stream\trefused/reset/timeout/other\t")
	for _, r := range rep.Results {
		if r.Reloads == 0 && r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.System, r.Interval)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f ms\t%.0f ms\t%d\t%.0f\t%d/%d/%d\t%d/%d/%d/%d\t\n",
			r.System, r.Interval, r.Reloads, r.FailedReloads, r.ReloadMedianMS, r.ReloadP99MS, r.MaxProcs, r.NewConnPerSec,
			r.FailedNew, r.FailedKeepAlive, r.FailedStream, r.Refused, r.Reset, r.Timeout, r.Other)
	}
	tw.Flush()
	fmt.Fprintln(w)
	seen := map[string]bool{}
	for _, r := range rep.Results {
		if !seen[r.System] {
			seen[r.System] = true
			fmt.Fprintf(w, "  %-24s %s\n", r.System+":", r.Command)
		}
	}
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		what := r.System + " every " + r.Interval
		if r.Cut != "" {
			fmt.Fprintf(w, "%s: cut short (%s) after %d reloads.\n", what, r.Cut, r.Reloads)
		}
		if r.Skipped > 0 {
			fmt.Fprintf(w, "%s: %d ticks skipped: %d reload commands were still running.\n", what, r.Skipped, maxInFlight)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s: ERROR: %s\n", what, r.Error)
		}
		for _, e := range r.ReloadErrors {
			fmt.Fprintf(w, "%s: failed reload: %s\n", what, e)
		}
		if r.Lingering > 0 {
			fmt.Fprintf(w, "%s: %d old generation(s) still running %v after the clients stopped (then stopped).\n", what, r.Lingering, drainWait)
		}
		if len(r.Samples) > 0 {
			fmt.Fprintf(w, "%s: first failures: %s\n", what, strings.Join(r.Samples[:min(len(r.Samples), 3)], "; "))
		}
	}
	fmt.Fprintln(w, rep.Note)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
