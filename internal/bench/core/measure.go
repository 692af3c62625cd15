package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"lb/internal/bench/benchutil"
)

// measureLoad runs wrk through p's HTTP-mode or TCP-mode frontend (mode
// "http" or "tcp"), or straight to the backend when p is nil, and records
// req/s, and p's CPU time per request.
func (r *runner) measureLoad(ctx context.Context, round int, p *proxy, mode string) {
	target, addr := "direct", r.backendAddr
	var in *instance
	if p != nil {
		target = p.name
		var err error
		if in, err = r.startProxy(ctx, p); err != nil {
			r.fail(ctx, round, mode, target, err)
			return
		}
		defer r.stopProxy(in)
		addr = in.fe.http
		switch mode {
		case "tcp":
			addr = in.fe.tcp
		case "http-limited":
			addr = in.fe.limited
		}
	}
	var scrapes *scraper
	if mode == "http-scraped" && in != nil {
		scrapes = startScraper(ctx, "http://"+in.fe.stats+"/metrics", time.Second)
	}
	url := "http://" + addr + "/bench"
	if r.o.warmup > 0 {
		if _, err := runWrk(ctx, r.wrk, r.o.loadCPU, r.o.loadConns, r.o.warmup, url); err != nil {
			r.fail(ctx, round, mode, target, fmt.Errorf("warm-up: %w", err))
			return
		}
	}
	win := r.openWindow(in)
	w, err := runWrk(ctx, r.wrk, r.o.loadCPU, r.o.loadConns, r.o.duration, url)
	r.closeWindow(&win, mode, target, round)
	if scrapes != nil {
		ok, failed := scrapes.stop()
		r.res.set(mode+".scrapes", target, round, float64(ok))
		if failed > 0 || ok == 0 {
			r.res.note("round %d: %s: %s: %d scrapes of /metrics failed, %d worked", round+1, mode, target, failed, ok)
		}
	}
	if ctx.Err() != nil {
		return // cut short: not a measurement
	}
	if err != nil {
		r.fail(ctx, round, mode, target, err)
		return
	}
	if in != nil {
		if err := in.alive(" during the measurement"); err != nil {
			r.fail(ctx, round, mode, target, err)
			return
		}
	}
	good := w.good()
	if good <= 0 {
		r.fail(ctx, round, mode, target, fmt.Errorf("no request answered 2xx (%d requests, %d errors)", w.requests, w.errors()))
		return
	}
	if n := w.errors(); n > 0 {
		r.res.note("round %d: %s: %s: %d of %d requests failed (non-2xx or socket errors)", round+1, mode, target, n, w.requests+w.socketErrors)
	}
	secs := w.duration.Seconds()
	rps := float64(good) / secs
	r.res.set(mode+".rps", target, round, rps)
	r.res.set(mode+".p99", target, round, float64(w.p99)/float64(time.Millisecond))
	line := fmt.Sprintf("round %d/%d: %s: %s: %.0f req/s, p99 %v", round+1, r.o.rounds, mode, target, rps, w.p99)
	if win.proxyOK {
		cpu := win.proxy
		r.res.set(mode+".cpu_us", target, round, float64(cpu.Microseconds())/float64(good))
		r.res.set(mode+".cores", target, round, cpu.Seconds()/secs)
		line += fmt.Sprintf(", %.1f µs CPU per request, %.2f cores busy", float64(cpu.Microseconds())/float64(good), cpu.Seconds()/secs)
	}
	logf("%s%s", line, win.String())
}

// measureBulk sends -bulk-gb GB through p's TCP-mode frontend to the sink
// and records p's CPU seconds per GB.
func (r *runner) measureBulk(ctx context.Context, round int, p *proxy) {
	const measure = "bulk"
	in, err := r.startProxy(ctx, p)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	defer r.stopProxy(in)
	bytes := int64(r.o.bulkGB * 1e9)
	name := fmt.Sprintf("bulk-%02d", r.seq)
	outPath := filepath.Join(r.dir, name+".json")
	out, err := os.Create(outPath)
	if err != nil {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("bulk client's report: %w", err))
		return
	}
	win := r.openWindow(in)
	child, err := benchutil.StartProc(benchutil.Spec{
		Name: name, Bin: r.self, Dir: r.dir, CPUs: r.o.loadCPU, Stdout: out,
		Args: []string{"-role", "bulk", "-addr", in.fe.bulk, "-bytes", fmt.Sprint(bytes),
			"-streams", fmt.Sprint(r.o.streams), "-life", r.o.bulkBound().String()},
	})
	out.Close()
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	r.reg.Add(child)
	defer r.stopChild(child)
	if err := waitExit(ctx, child, r.o.bulkBound()+childWait); err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	r.closeWindow(&win, measure, p.name, round)
	if err := in.alive(" during the transfer"); err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	if !child.Succeeded() {
		_, how := child.Exited()
		r.fail(ctx, round, measure, p.name, child.ExitError(how, ""))
		return
	}
	b, err := os.ReadFile(outPath)
	if err != nil {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("bulk client's report: %w", err))
		return
	}
	var rep bulkReport
	if err := json.Unmarshal(b, &rep); err != nil {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("bulk client's report %q: %w", b, err))
		return
	}
	if len(rep.Errors) > 0 || rep.Bytes != bytes {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("%d of %d bytes went through: %s", rep.Bytes, bytes, strings.Join(rep.Errors, "; ")))
		return
	}
	gb := float64(rep.Bytes) / 1e9
	r.res.set("bulk.gbps", p.name, round, gb/rep.Seconds)
	line := fmt.Sprintf("round %d/%d: bulk: %s: %.2f GB in %.2fs (%.2f GB/s)", round+1, r.o.rounds, p.name, gb, rep.Seconds, gb/rep.Seconds)
	if win.proxyOK {
		cpu := win.proxy.Seconds()
		r.res.set("bulk.cpu_per_gb", p.name, round, cpu/gb)
		line += fmt.Sprintf(", %.3f CPU s per GB", cpu/gb)
	}
	logf("%s%s", line, win.String())
}

// measureIdle opens -conns connections through p's TCP-mode (idle-tcp) or
// HTTP-mode (idle-http) frontend, each with one request, holds them, and
// records p's resident memory and descriptors per connection over what it
// had before, and how many connections were served.
func (r *runner) measureIdle(ctx context.Context, round int, p *proxy, measure string) {
	in, err := r.startProxy(ctx, p)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	defer r.stopProxy(in)
	addr := in.fe.tcp
	if measure == "idle-http" {
		addr = in.fe.http
	}
	benchutil.SleepCtx(ctx, settleTime)
	u0, err := in.proc.Usage()
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}

	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("idle client's pipe: %w", err))
		return
	}
	defer stdinW.Close()
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		r.fail(ctx, round, measure, p.name, fmt.Errorf("idle client's pipe: %w", err))
		return
	}
	defer stdoutR.Close()
	name := fmt.Sprintf("idle-%02d", r.seq)
	child, err := benchutil.StartProc(benchutil.Spec{
		Name: name, Bin: r.self, Dir: r.dir, CPUs: r.o.loadCPU, Stdin: stdinR, Stdout: stdoutW,
		Args: []string{"-role", "idle", "-addr", addr, "-conns", fmt.Sprint(r.o.conns), "-body", fmt.Sprint(r.o.body),
			"-life", (idleOpenWait + r.o.settle + 2*childWait).String()},
	})
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	r.reg.Add(child)
	defer func() {
		stdinW.Close() // the end of its input: the idle client closes its connections and exits
		r.stopChild(child)
	}()
	lctx, stopLines := context.WithCancel(ctx)
	defer stopLines()
	lines := make(chan string)
	go readLines(lctx, stdoutR, lines)

	opened, err := awaitReport(ctx, lines, child, "opened", idleOpenWait)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	benchutil.SleepCtx(ctx, r.o.settle)
	u1, err := in.proc.Usage()
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	if _, err := fmt.Fprintln(stdinW, "check"); err != nil {
		r.fail(ctx, round, measure, p.name, fmt.Errorf("idle client: %w", err))
		return
	}
	checked, err := awaitReport(ctx, lines, child, "checked", childWait)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	if ctx.Err() != nil {
		return
	}

	r.res.set(measure+".served", p.name, round, float64(opened.Served))
	r.res.set(measure+".alive", p.name, round, float64(checked.Alive))
	line := fmt.Sprintf("round %d/%d: %s: %s: %d of %d connections served in %.1fs, %d still open after %v",
		round+1, r.o.rounds, measure, p.name, opened.Served, r.o.conns, opened.Seconds, checked.Alive, r.o.settle)
	if opened.Served > 0 {
		kb := float64(u1.RSS-u0.RSS) / 1024 / float64(opened.Served)
		fds := float64(u1.FDs-u0.FDs) / float64(opened.Served)
		r.res.set(measure+".kb", p.name, round, kb)
		r.res.set(measure+".fds", p.name, round, fds)
		line += fmt.Sprintf("; %.2f KiB and %.2f fds per connection (RSS %.1f -> %.1f MiB, fds %d -> %d)",
			kb, fds, float64(u0.RSS)/(1<<20), float64(u1.RSS)/(1<<20), u0.FDs, u1.FDs)
	}
	logf("%s", line)
	if opened.Failed > 0 {
		var reasons []string
		for k, v := range opened.Reasons {
			reasons = append(reasons, fmt.Sprintf("%d %s", v, k))
		}
		slices.Sort(reasons)
		msg := fmt.Sprintf("round %d: %s: %s: %d of %d connections not served (%s; first: %s)",
			round+1, measure, p.name, opened.Failed, r.o.conns, strings.Join(reasons, ", "), strings.Join(opened.Samples[:min(len(opened.Samples), 1)], "; "))
		if el := in.errorLines(1); len(el) > 0 {
			msg += "; its log: " + el[0]
		}
		r.res.note("%s", msg)
	}
	if checked.Closed+checked.Reset > 0 {
		r.res.note("round %d: %s: %s: %d served connections closed and %d reset before the end of the measurement",
			round+1, measure, p.name, checked.Closed, checked.Reset)
	}
}

// awaitReport waits, at most bound, for the child's next report line, which
// must be of phase.
func awaitReport(ctx context.Context, lines <-chan string, child *benchutil.Proc, phase string, bound time.Duration) (idleReport, error) {
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case line, ok := <-lines:
		if !ok {
			gone, how := child.Exited()
			if !gone {
				how = errors.New("its output closed")
			}
			return idleReport{}, child.ExitError(how, " before its "+phase+" report")
		}
		var rep idleReport
		if err := json.Unmarshal([]byte(line), &rep); err != nil || rep.Phase != phase {
			return rep, fmt.Errorf("%s: want its %s report, got %q (%v)", child.Name, phase, line, err)
		}
		return rep, nil
	case <-t.C:
		return idleReport{}, fmt.Errorf("%s: no %s report within %v; its output (%s):\n%s", child.Name, phase, bound, child.LogPath, benchutil.Indent(child.LogTail(2048)))
	case <-ctx.Done():
		return idleReport{}, ctx.Err()
	}
}

// waitExit waits, at most bound, for p to exit.
func waitExit(ctx context.Context, p *benchutil.Proc, bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-p.Done():
		return nil
	case <-t.C:
		return fmt.Errorf("%s still running after %v; its output (%s):\n%s", p.Name, bound, p.LogPath, benchutil.Indent(p.LogTail(2048)))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopChild lets a child that was told to finish exit on its own, for a
// while, then stops it.
func (r *runner) stopChild(p *benchutil.Proc) {
	t := time.NewTimer(childWait)
	defer t.Stop()
	select {
	case <-p.Done():
		return
	case <-t.C:
	}
	if err := p.Stop(); err != nil {
		r.res.note("%v", err)
	}
}

// fail records a measurement that could not be made, unless the run is
// being interrupted: then the measurement is merely left out.
func (r *runner) fail(ctx context.Context, round int, measure, target string, err error) {
	if ctx.Err() != nil {
		return
	}
	r.res.fail(round, measure, target, err)
}

// window is the CPU time spent during a measurement: the proxy's own, and
// all of the proxy's CPU and of the load CPUs (other processes and the
// kernel's softirq work included), which tells whether the load CPU was
// the bottleneck and whether something else ran on the proxy's CPU.
type window struct {
	in                       *instance
	start                    time.Time
	proxy                    time.Duration // the proxy process
	proxyOK                  bool
	proxyCPU, loadCPU        time.Duration // the CPUs, busy
	cpusOK                   bool
	wall                     time.Duration
	otherCores, loadCPUCores float64
}

// openWindow samples the CPU times at the start of a measurement through
// in (nil: direct).
func (r *runner) openWindow(in *instance) window {
	w := window{in: in, start: time.Now()}
	if in != nil {
		w.proxy, w.proxyOK = in.proc.CPU()
	}
	var err1, err2 error
	w.proxyCPU, err1 = benchutil.CPUBusy(r.proxyCPUs)
	w.loadCPU, err2 = benchutil.CPUBusy(r.loadCPUs)
	w.cpusOK = err1 == nil && err2 == nil
	return w
}

// closeWindow samples them again, keeps the differences in w, and records
// the CPUs' figures.
func (r *runner) closeWindow(w *window, measure, target string, round int) {
	w.wall = time.Since(w.start)
	if w.in != nil && w.proxyOK {
		cpu, ok := w.in.proc.CPU()
		w.proxy, w.proxyOK = cpu-w.proxy, ok
	}
	proxyCPU, err1 := benchutil.CPUBusy(r.proxyCPUs)
	loadCPU, err2 := benchutil.CPUBusy(r.loadCPUs)
	if !w.cpusOK || err1 != nil || err2 != nil || w.wall <= 0 {
		w.cpusOK = false
		return
	}
	w.proxyCPU, w.loadCPU = proxyCPU-w.proxyCPU, loadCPU-w.loadCPU
	other := w.proxyCPU
	if w.proxyOK {
		other -= w.proxy
	}
	w.otherCores = max(other.Seconds(), 0) / w.wall.Seconds()
	w.loadCPUCores = w.loadCPU.Seconds() / w.wall.Seconds()
	r.res.set(measure+".load_cpu", target, round, w.loadCPUCores)
	if w.in != nil && w.proxyOK {
		r.res.set(measure+".other", target, round, w.otherCores)
		r.res.windows++
		if w.otherCores > noisyCores {
			r.res.noisy[target]++
		}
	}
}

// noisyCores is how busy, in cores, the proxy's CPU may be apart from the
// proxy before the report says the round was noisy: the kernel's softirq
// work outside the proxy's time slices is some of it, on a quiet machine.
const noisyCores = 0.3

// String is the CPUs' figures for a progress line.
func (w *window) String() string {
	if !w.cpusOK {
		return ""
	}
	s := fmt.Sprintf("; load CPU busy %.2f cores", w.loadCPUCores)
	if w.in != nil && w.proxyOK {
		s += fmt.Sprintf(", proxy CPU busy apart from the proxy %.2f cores", w.otherCores)
	}
	return s
}

// scraper GETs a metrics URL on a fixed cadence, as Prometheus does, until
// stopped.
type scraper struct {
	cancel     context.CancelFunc
	done       chan struct{}
	ok, failed int
}

// startScraper scrapes url every period.
func startScraper(ctx context.Context, url string, period time.Duration) *scraper {
	ctx, cancel := context.WithCancel(ctx)
	s := &scraper{cancel: cancel, done: make(chan struct{})}
	go s.run(ctx, url, period)
	return s
}

func (s *scraper) run(ctx context.Context, url string, period time.Duration) {
	defer close(s.done)
	c := &http.Client{Timeout: period}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		resp, err := c.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			s.failed++
		} else {
			s.ok++
		}
	}
}

// stop stops the scraper and returns how many scrapes worked and failed.
func (s *scraper) stop() (ok, failed int) {
	s.cancel()
	<-s.done
	return s.ok, s.failed
}
