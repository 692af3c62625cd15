// Command reload is a reload storm benchmark: it reloads lb many times under
// continuous connection load, and HAProxy with `-D -sf` on the same load
// where HAProxy is installed, and prints the failed connections per reload
// of each side by side. `make bench-reload` builds lb and runs it.
//
//	go run ./internal/bench/reload -lb ./lb -reloads 200 -clients 4
//
// Systems, in order, each on its own port in front of the same two
// in-process echo backends:
//
//	lb       lb -f CFG -p PIDFILE -D -sf $(cat PIDFILE)                    (SO_REUSEPORT, BPF steering)
//	lb -x    lb -f CFG -p PIDFILE -D -sf $(cat PIDFILE) -x ADMIN_SOCKET    (listening sockets taken over)
//	haproxy  haproxy -f CFG -p PIDFILE -D -sf $(cat PIDFILE)               (plain SO_REUSEPORT)
//
// Each client opens one connection after another: connect, send a line,
// read the server's name line and the echoed line, close. A failure is
// classified as connect refused, reset, timeout or other. Every wait is
// bounded, and every process the benchmark starts is stopped (SIGTERM,
// then SIGKILL) and checked gone before the next system runs.
package main

import (
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
	reloads    int
	interval   interval
	clients    int
	duration   time.Duration
	json       bool
	lbLogLevel string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-reload: "+format+"\n", args...)
}

func main() {
	var o options
	var iv string
	flag.StringVar(&o.lb, "lb", "./lb", "the lb binary")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "the HAProxy binary, a path or a name looked up in PATH; \"\" to leave HAProxy out")
	flag.IntVar(&o.reloads, "reloads", 200, "reloads per system")
	flag.StringVar(&iv, "interval", "100ms..200ms", "pause before each reload: MIN..MAX (random, uniform) or one duration")
	flag.IntVar(&o.clients, "clients", 4, "concurrent clients, each opening one connection after another")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "cap on the reload storms of the whole run, shared equally among the systems; each stops early when its share is used up")
	flag.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	flag.StringVar(&o.lbLogLevel, "lb-log-level", "warn", "lb's global.log_level (HAProxy is configured without logs; \"info\" logs one line per connection)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags]\n\nReload storm: lb vs HAProxy -sf under the same load; prints failed connections per reload.\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if o.interval, err = parseInterval(iv); err != nil {
		fmt.Fprintf(os.Stderr, "bench-reload: -interval %q: %v\n", iv, err)
		os.Exit(2)
	}
	if o.reloads < 1 || o.clients < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "bench-reload: -reloads, -clients and -duration must be positive")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// report is everything printed, in -json form.
type report struct {
	Reloads      int      `json:"reloads_per_system"`
	Interval     string   `json:"interval"`
	Clients      int      `json:"clients"`
	Kernel       string   `json:"kernel"`
	CPUs         int      `json:"cpus"`
	MigrateReq   string   `json:"tcp_migrate_req"`
	LBVersion    string   `json:"lb_version"`
	HAProxy      string   `json:"haproxy_version,omitempty"`
	HAProxyNote  string   `json:"haproxy_note,omitempty"`
	Results      []result `json:"results"`
	Ratio        string   `json:"ratio"`
	Note         string   `json:"note"`
	FinishedTime string   `json:"finished"`
}

const note = "These figures come from one run on a shared, noisy machine: compare the rows with each other only, side by side, never with another run or machine."

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
	// Whatever happens, the run ends: every step is bounded, and this is
	// the bound of them all.
	watchdog := time.AfterFunc(o.duration+5*time.Minute, func() {
		logf("watchdog: the run took over %v; stopping every process started", o.duration+5*time.Minute)
		tr.stopAll(5 * time.Second)
		os.Exit(3)
	})
	defer watchdog.Stop()

	rep := report{
		Reloads: o.reloads, Interval: o.interval.String(), Clients: o.clients,
		Kernel: benchutil.Kernel(), CPUs: runtime.NumCPU(), MigrateReq: readTrim("/proc/sys/net/ipv4/tcp_migrate_req"),
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
	}
	switch {
	case o.haproxy == "":
		rep.HAProxyNote = "HAProxy left out (-haproxy \"\")"
	default:
		hp, err := exec.LookPath(o.haproxy)
		if err != nil {
			rep.HAProxyNote = fmt.Sprintf("HAProxy was not available (%v): lb measured alone", err)
		} else {
			rep.HAProxy = benchutil.FirstLine(hp, "-v")
			systems = append(systems, system{Name: "haproxy", kind: "haproxy", bin: hp})
		}
	}
	if rep.HAProxyNote != "" {
		logf("%s", rep.HAProxyNote)
	}

	root, err := os.MkdirTemp("", "lb-bench-reload-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.Remove(root) // only if empty: directories of failed systems are kept
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

	end := time.Now().Add(o.duration)
	code := 0
	for i, sys := range systems {
		if ctx.Err() != nil {
			break
		}
		share := time.Until(end) / time.Duration(len(systems)-i)
		res := runSystem(ctx, sys, o, backends, root, tr, time.Now().Add(share))
		if res.Error != "" {
			logf("%s: %s", sys.Name, res.Error)
			code = 1
		}
		rep.Results = append(rep.Results, res)
	}
	if left := tr.stopAll(termWait); len(left) > 0 {
		logf("processes still running after SIGKILL: %v", left)
		code = 1
	}
	if ctx.Err() != nil && code == 0 {
		code = 130
	}
	rep.Ratio = ratio(rep.Results)
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

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nReload storm: %d reloads per system, one every %s (random), under %d clients that each connect, send a line, read the name and the echo, close, in a loop.\n",
		rep.Reloads, rep.Interval, rep.Clients)
	fmt.Fprintf(w, "Machine: Linux %s, %d CPUs, net.ipv4.tcp_migrate_req=%s. lb: %s.", rep.Kernel, rep.CPUs, rep.MigrateReq, rep.LBVersion)
	if rep.HAProxy != "" {
		fmt.Fprintf(w, " HAProxy: %s.", rep.HAProxy)
	}
	fmt.Fprintln(w)
	if rep.HAProxyNote != "" {
		fmt.Fprintf(w, "%s.\n", rep.HAProxyNote)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\treloads\tfailed reloads\tconns ok\tconns/s\tfailed\tfailed/reload\tfailed/10k conns\trefused/reset/timeout/other\treload median\treload p99\t")
	for _, r := range rep.Results {
		if r.Reloads == 0 && r.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.System)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%d\t%.3f\t%.2f\t%d/%d/%d/%d\t%.0f ms\t%.0f ms\t\n",
			r.System, r.Reloads, r.FailedReloads, r.OK, r.ConnPerSec, r.Failed, r.FailedPerReload, r.FailedPer10k,
			r.Refused, r.Reset, r.Timeout, r.Other, r.ReloadMedianMS, r.ReloadP99MS)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "  %-8s %s\n", r.System+":", r.Command)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, rep.Ratio)
	for _, r := range rep.Results {
		if r.Cut != "" {
			fmt.Fprintf(w, "%s: cut short (%s) after %d reloads.\n", r.System, r.Cut, r.Reloads)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s: ERROR: %s\n", r.System, r.Error)
		}
		for _, e := range r.ReloadErrors {
			fmt.Fprintf(w, "%s: failed %s\n", r.System, e)
		}
		if r.Lingering > 0 {
			fmt.Fprintf(w, "%s: %d old generation(s) still running %v after the clients stopped (then stopped).\n", r.System, r.Lingering, drainWait)
		}
		if len(r.Samples) > 0 {
			fmt.Fprintf(w, "%s: first failures: %s\n", r.System, strings.Join(r.Samples[:min(len(r.Samples), 3)], "; "))
		}
	}
	fmt.Fprintln(w, rep.Note)
}

// ratio is the line comparing HAProxy's failures with lb's.
func ratio(rs []result) string {
	var h *result
	for i := range rs {
		if rs[i].System == "haproxy" && rs[i].Reloads > 0 {
			h = &rs[i]
		}
	}
	var parts []string
	for _, r := range rs {
		if r.System == "haproxy" {
			continue
		}
		switch {
		case r.Reloads == 0:
			parts = append(parts, fmt.Sprintf("%s: not measured", r.System))
		case r.Failed == 0:
			parts = append(parts, fmt.Sprintf("%s: 0 failures in %d reloads", r.System, r.Reloads))
		case h == nil:
			parts = append(parts, fmt.Sprintf("%s: %d failures in %d reloads", r.System, r.Failed, r.Reloads))
		default:
			parts = append(parts, fmt.Sprintf("haproxy / %s: %.1fx the failures per reload (%d in %d vs %d in %d)",
				r.System, h.FailedPerReload/r.FailedPerReload, h.Failed, h.Reloads, r.Failed, r.Reloads))
		}
	}
	if h != nil {
		parts = append(parts, fmt.Sprintf("haproxy: %d failures in %d reloads", h.Failed, h.Reloads))
	} else {
		parts = append(parts, "haproxy: not measured")
	}
	return "Failures: " + strings.Join(parts, "; ") + "."
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
