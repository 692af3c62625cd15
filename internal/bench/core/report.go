package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"lb/internal/bench/benchutil"
)

// results are the measurements of a run: for each metric and target, one
// value per round (NaN where there is none), and notes.
type results struct {
	rounds int
	vals   map[string]map[string][]float64
	notes  []string
	// failed marks a measurement that should have been made and was not.
	failed    bool
	loadStart string
	started   time.Time
	// windows counts the measurements through a proxy under load, and
	// noisy, by target, those during which the proxy's CPU was busy more
	// than noisyCores apart from the proxy.
	windows int
	noisy   map[string]int
}

func newResults(rounds int) *results {
	return &results{rounds: rounds, vals: map[string]map[string][]float64{}, noisy: map[string]int{},
		loadStart: benchutil.LoadAverage(), started: time.Now()}
}

// set records v as the value of key for target in round.
func (rs *results) set(key, target string, round int, v float64) {
	byTarget := rs.vals[key]
	if byTarget == nil {
		byTarget = map[string][]float64{}
		rs.vals[key] = byTarget
	}
	s := byTarget[target]
	if s == nil {
		s = make([]float64, rs.rounds)
		for i := range s {
			s[i] = math.NaN()
		}
		byTarget[target] = s
	}
	if round >= 0 && round < len(s) && !math.IsNaN(v) && !math.IsInf(v, 0) {
		s[round] = v
	}
}

// perRound returns key's values for target, NaN where there is none.
func (rs *results) perRound(key, target string) []float64 {
	return rs.vals[key][target]
}

// note adds a line under the report.
func (rs *results) note(format string, args ...any) {
	rs.notes = append(rs.notes, fmt.Sprintf(format, args...))
}

// fail records a measurement that could not be made.
func (rs *results) fail(round int, measure, target string, err error) {
	rs.failed = true
	msg := fmt.Sprintf("round %d: %s: %s: not measured: %v", round+1, measure, target, err)
	logf("%s", msg)
	rs.notes = append(rs.notes, msg)
}

// summary is the median, minimum and maximum of the values that are not
// NaN, and how many there are.
type summary struct {
	n                int
	median, min, max float64
}

func summarize(vals []float64) summary {
	var v []float64
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return summary{}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return summary{n: len(v), median: m, min: v[0], max: v[len(v)-1]}
}

// cell prints s with f: the median, and the range when there are several
// values.
func (s summary) cell(f func(float64) string) string {
	switch s.n {
	case 0:
		return "-"
	case 1:
		return f(s.median)
	}
	return fmt.Sprintf("%s (%s-%s)", f(s.median), f(s.min), f(s.max))
}

// ratioCell compares lb with HAProxy: the ratio of the medians, and the
// range of the per-round ratios.
func ratioCell(lb, ha []float64) string {
	sl, sh := summarize(lb), summarize(ha)
	if sl.n == 0 || sh.n == 0 || sh.median == 0 {
		return "-"
	}
	out := fmt.Sprintf("%.2fx", sl.median/sh.median)
	var per []float64
	for i := range min(len(lb), len(ha)) {
		if !math.IsNaN(lb[i]) && !math.IsNaN(ha[i]) && ha[i] != 0 {
			per = append(per, lb[i]/ha[i])
		}
	}
	if len(per) > 1 {
		sp := summarize(per)
		out += fmt.Sprintf(" (%.2f-%.2f)", sp.min, sp.max)
	}
	return out
}

// row is a line of the table: a heading when key is "".
type row struct {
	key    string
	label  string
	format func(float64) string
	ratio  bool // lb/HAProxy means something
	direct bool // a direct figure exists
}

// Formats of the cells.
func fmtInt(v float64) string  { return fmt.Sprintf("%.0f", v) }
func fmtF1(v float64) string   { return fmt.Sprintf("%.1f", v) }
func fmtF2(v float64) string   { return fmt.Sprintf("%.2f", v) }
func fmtF3(v float64) string   { return fmt.Sprintf("%.3f", v) }
func fmtMS(v float64) string   { return fmt.Sprintf("%.2fms", v) }
func fmtKRPS(v float64) string { return fmt.Sprintf("%.1fk", v/1000) }

// rows are the table's rows for o's measures.
func rows(o options) []row {
	var out []row
	for _, m := range o.measures {
		switch m {
		case "http", "http-scraped", "http-limited", "tcp":
			head := fmt.Sprintf("HTTP mode, wrk -t1 -c%d keep-alive, %d-byte responses", o.loadConns, o.body)
			switch m {
			case "tcp":
				head = "TCP mode, the same load"
			case "http-scraped":
				head = "HTTP mode, the same load, /metrics scraped every second (lb's stats listener, HAProxy's prometheus-exporter)"
			case "http-limited":
				head = "HTTP mode, the same load, a per-client rate limit on every request (a table tracking the client, a deny rule reading its rate)"
			}
			out = append(out,
				row{label: head},
				row{key: m + ".cpu_us", label: "  CPU µs per request", format: fmtF1, ratio: true},
				row{key: m + ".rps", label: "  req/s", format: fmtKRPS, ratio: true, direct: m == "http"},
				row{key: m + ".p99", label: "  p99 latency", format: fmtMS, ratio: true, direct: m == "http"},
				row{key: m + ".cores", label: "  proxy's CPU time / wall time", format: fmtF2},
				row{key: m + ".other", label: fmt.Sprintf("  CPU %s busy apart from the proxy, cores", o.proxyCPU), format: fmtF2},
				row{key: m + ".load_cpu", label: fmt.Sprintf("  CPU %s (load) busy, cores", o.loadCPU), format: fmtF2, direct: m == "http"},
			)
			if m == "http-scraped" {
				out = append(out, row{key: m + ".scrapes", label: "  scrapes that worked", format: fmtInt})
			}
		case "bulk":
			out = append(out,
				row{label: fmt.Sprintf("bulk TCP, %g GB over %d connections", o.bulkGB, o.streams)},
				row{key: "bulk.cpu_per_gb", label: "  CPU s per GB", format: fmtF3, ratio: true},
				row{key: "bulk.gbps", label: "  GB/s", format: fmtF2, ratio: true},
				row{key: "bulk.other", label: fmt.Sprintf("  CPU %s busy apart from the proxy, cores", o.proxyCPU), format: fmtF2},
				row{key: "bulk.load_cpu", label: fmt.Sprintf("  CPU %s (load) busy, cores", o.loadCPU), format: fmtF2},
			)
		case "h2", "h2-fwd", "h2-h2":
			what := "HTTP/2 over TLS (ECDSA P-256 certificate)"
			switch m {
			case "h2-fwd":
				what = "HTTP/2, the same, HAProxy adding the headers lb adds by default (X-Forwarded-*, X-Request-Id)"
			case "h2-h2":
				what = "HTTP/2 over TLS to the proxy, HTTP/2 (h2c) to the server"
			}
			out = append(out,
				row{label: fmt.Sprintf("%s, h2load -c %d -m %d, %d-byte responses", what, h2Clients, h2Streams, o.body)},
				row{key: m + ".cpu_us", label: "  CPU µs per request", format: fmtF1, ratio: true},
				row{key: m + ".rps", label: "  req/s", format: fmtKRPS, ratio: true},
				row{key: m + ".other", label: fmt.Sprintf("  CPU %s busy apart from the proxy, cores", o.proxyCPU), format: fmtF2},
				row{key: m + ".load_cpu", label: fmt.Sprintf("  CPU %s (load) busy, cores", o.loadCPU), format: fmtF2},
			)
		case "tls-ecdsa", "tls-rsa":
			cert := "ECDSA P-256"
			if m == "tls-rsa" {
				cert = "RSA 2048"
			}
			out = append(out,
				row{label: fmt.Sprintf("new TLS connections (%s certificate), %d HTTP/1.1 requests each: h2load --h1 -c %d, %d times", cert, tlsRequests, tlsConns, tlsRuns)},
				row{key: m + ".cpu_ms", label: "  CPU ms per connection", format: fmtF3, ratio: true},
				row{key: m + ".other", label: fmt.Sprintf("  CPU %s busy apart from the proxy, cores", o.proxyCPU), format: fmtF2},
				row{key: m + ".load_cpu", label: fmt.Sprintf("  CPU %s (load) busy, cores", o.loadCPU), format: fmtF2},
			)
		case "https-bulk":
			out = append(out,
				row{label: fmt.Sprintf("HTTPS download (ECDSA), %g GB of 1 MiB responses over %d HTTP/1.1 connections", o.bulkGB, bulkHTTPSConns)},
				row{key: "https-bulk.cpu_per_gb", label: "  CPU s per GB", format: fmtF3, ratio: true},
				row{key: "https-bulk.gbps", label: "  GB/s", format: fmtF2, ratio: true},
				row{key: "https-bulk.other", label: fmt.Sprintf("  CPU %s busy apart from the proxy, cores", o.proxyCPU), format: fmtF2},
				row{key: "https-bulk.load_cpu", label: fmt.Sprintf("  CPU %s (load) busy, cores", o.loadCPU), format: fmtF2},
			)
		case "idle-tcp", "idle-http":
			head := fmt.Sprintf("TCP mode, %d idle connections, each with its server connection", o.conns)
			if m == "idle-http" {
				head = fmt.Sprintf("HTTP mode, %d idle keep-alive clients, one request each", o.conns)
			}
			out = append(out,
				row{label: head},
				row{key: m + ".served", label: "  connections served", format: fmtInt},
				row{key: m + ".alive", label: "  still open when measured", format: fmtInt},
				row{key: m + ".kb", label: "  RSS KiB per connection", format: fmtF2, ratio: true},
				row{key: m + ".fds", label: "  fds per connection", format: fmtF2, ratio: true},
			)
		}
	}
	return out
}

// printReport prints the table, the commands, the per-round figures and
// the notes.
func printReport(w io.Writer, r *runner, proxies []*proxy) {
	o, rs := r.o, r.res
	fmt.Fprintf(w, "\nOne core each: lb (GOMAXPROCS=1) and HAProxy (nbthread 1) pinned to CPU %s; wrk, the clients and the backend pinned to CPU %s. "+
		"%d round(s), in the order lb, HAProxy for each measure, each on a freshly started proxy; wrk runs %v after %v of warm-up; %d-byte responses. "+
		"Cells: median (min-max) over the rounds; lb/HAProxy: ratio of the medians (range of the per-round ratios).\n",
		o.proxyCPU, o.loadCPU, o.rounds, o.duration, o.warmup, o.body)
	fmt.Fprintf(w, "Machine: Linux %s, %d CPUs, load average %s before the run and %s after; %s.", benchutil.Kernel(), runtime.NumCPU(), rs.loadStart, benchutil.LoadAverage(), time.Since(rs.started).Round(time.Second))
	for _, p := range proxies {
		if p.version != "" {
			fmt.Fprintf(w, " %s: %s.", p.label, p.version)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tHAProxy\tlb\tlb/HAProxy\tdirect\t")
	for _, rw := range rows(o) {
		if rw.key == "" {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\n", rw.label)
			continue
		}
		lb, ha := rs.perRound(rw.key, "lb"), rs.perRound(rw.key, "haproxy")
		ratio, direct := "", ""
		if rw.ratio {
			ratio = ratioCell(lb, ha)
		}
		if rw.direct {
			direct = summarize(rs.perRound(rw.key, "direct")).cell(rw.format)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", rw.label, summarize(ha).cell(rw.format), summarize(lb).cell(rw.format), ratio, direct)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "lb/HAProxy below 1 is better for lb on CPU, latency, memory and descriptors; above 1 on req/s and GB/s.")
	fmt.Fprintf(w, "CPU %s busy apart from the proxy is other processes and the kernel's softirq work (loopback delivery), counted in no process: "+
		"much of it means a noisy run. Where CPU %s (load) is busy about one core per CPU, req/s is bounded by wrk and the backend, not by the proxy: compare CPU per request.\n",
		o.proxyCPU, o.loadCPU)
	fmt.Fprintln(w)
	for _, p := range proxies {
		if p.bin != "" {
			fmt.Fprintf(w, "  %-8s %s\n", p.name+":", p.command(o.proxyCPU))
		}
	}
	fmt.Fprintf(w, "  %-8s taskset -c %s wrk -t1 -c%d -d%s --latency http://FRONTEND/bench (after a %s run not counted)\n", "load:", o.loadCPU, o.loadConns, wrkDuration(o.duration), wrkDuration(o.warmup))
	if slices.ContainsFunc(o.measures, func(m string) bool { return slices.Contains(httpsMeasures, m) }) {
		fmt.Fprintf(w, "  %-8s taskset -c %s h2load ... https://FRONTEND/ (h2, h2-fwd, h2-h2: -c %d -m %d -D %s after a %s run not counted; tls-*: --h1 -c %d -n %d, %d times after one not counted; https-bulk: --h1 -c %d, 1 MiB responses)\n",
			"https:", o.loadCPU, h2Clients, h2Streams, wrkDuration(o.duration), wrkDuration(o.warmup), tlsConns, tlsConns*tlsRequests, tlsRuns, bulkHTTPSConns)
	}
	fmt.Fprintf(w, "  %-8s proxy CPU: utime+stime of /proc/PID/stat over the wrk or h2load run (or the transfer) / requests (or connections, or GB); idle: VmRSS and /proc/PID/fd after - before / connections served\n", "how:")

	if o.rounds > 1 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Per round, lb / HAProxy:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		head := "measure\t"
		for i := range o.rounds {
			head += fmt.Sprintf("round %d\t", i+1)
		}
		fmt.Fprintln(tw, head)
		for _, rw := range rows(o) {
			if rw.key == "" {
				fmt.Fprintln(tw, rw.label+strings.Repeat("\t", o.rounds+1))
				continue
			}
			if !rw.ratio {
				continue
			}
			lb, ha := rs.perRound(rw.key, "lb"), rs.perRound(rw.key, "haproxy")
			line := rw.label + "\t"
			for i := range o.rounds {
				line += valueAt(lb, i, rw.format) + " / " + valueAt(ha, i, rw.format) + "\t"
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	for _, p := range proxies {
		if p.missing != "" {
			fmt.Fprintf(w, "%s: not measured: %s.\n", p.label, p.missing)
		}
	}
	for _, n := range rs.notes {
		fmt.Fprintln(w, n)
	}
	if n := rs.noisy["lb"] + rs.noisy["haproxy"]; n > 0 {
		fmt.Fprintf(w, "Noisy run: CPU %s was busy more than %.2f cores apart from the proxy in %d of %d measurements under load (lb %d, HAProxy %d): "+
			"other processes ran there. CPU per request and per GB hold up fairly well; req/s and latency do not.\n",
			o.proxyCPU, noisyCores, n, rs.windows, rs.noisy["lb"], rs.noisy["haproxy"])
	}
	fmt.Fprintln(w, "These figures come from one run on a shared machine: compare the columns with each other, never with another run or machine.")
}

// valueAt prints vals[i], or "-".
func valueAt(vals []float64, i int, f func(float64) string) string {
	if i >= len(vals) || math.IsNaN(vals[i]) {
		return "-"
	}
	return f(vals[i])
}
