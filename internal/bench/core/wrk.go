package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is what wrk printed.
type wrkResult struct {
	requests     int64         // completed requests, any status
	duration     time.Duration // as wrk measured it
	reqPerSec    float64
	p50, p99     time.Duration // from --latency
	socketErrors int64         // connect + read + write + timeout
	non2xx       int64         // "Non-2xx or 3xx responses"
}

// good is the requests answered 2xx or 3xx.
func (r wrkResult) good() int64 { return r.requests - r.non2xx }

// errors is every failed request and socket error.
func (r wrkResult) errors() int64 { return r.non2xx + r.socketErrors }

// runWrk runs `taskset -c cpus wrk -t1 -cN -dD --latency URL`, bounded,
// and parses what it prints.
func runWrk(ctx context.Context, wrk, cpus string, conns int, d time.Duration, url string) (wrkResult, error) {
	out, err := runPinned(ctx, cpus, d+30*time.Second, wrk, "-t1", "-c"+strconv.Itoa(conns), "-d"+wrkDuration(d), "--latency", url)
	if err != nil {
		return wrkResult{}, err
	}
	r, err := parseWrk(out)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk's output: %w:\n%s", err, bytes.TrimSpace(out))
	}
	return r, nil
}

// runPinned runs `taskset -c cpus argv...`, bounded by bound, and returns
// what it printed (standard output and error together).
func runPinned(ctx context.Context, cpus string, bound time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	args := append([]string{"-c", cpus}, argv...)
	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("taskset %s: %w; its output:\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// wrkDuration is d as wrk takes it: whole seconds, at least one.
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(int((d+time.Second/2)/time.Second), 1)) + "s"
}

// parseWrk parses the report of wrk 4 (run with --latency):
//
//	  624077 requests in 10.00s, 95.23MB read
//	  Socket errors: connect 0, read 0, write 0, timeout 0
//	  Non-2xx or 3xx responses: 5
//	Requests/sec:  62399.47
//
// and the 50% and 99% lines of "Latency Distribution". The requests line
// and Requests/sec are required; the others are optional.
func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	haveReq, haveRate, inDist := false, false, false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "Latency Distribution":
			inDist = true
			continue
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("latency line %q: %w", line, err)
			}
			switch f[0] {
			case "50%", "50.000%":
				r.p50 = d
			case "99%", "99.000%":
				r.p99 = d
			}
			continue
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("requests line %q: %w", line, err)
			}
			d, err := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("requests line %q: %w", line, err)
			}
			r.requests, r.duration, haveReq = n, d, true
		case strings.HasPrefix(line, "Socket errors:"):
			// connect 0, read 0, write 0, timeout 0
			for part := range strings.SplitSeq(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return r, fmt.Errorf("socket errors line %q", line)
				}
				n, err := strconv.ParseInt(kv[1], 10, 64)
				if err != nil {
					return r, fmt.Errorf("socket errors line %q: %w", line, err)
				}
				r.socketErrors += n
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return r, fmt.Errorf("non-2xx line %q: %w", line, err)
			}
			r.non2xx = n
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return r, fmt.Errorf("requests/sec line %q: %w", line, err)
			}
			r.reqPerSec, haveRate = v, true
		}
		inDist = false
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	switch {
	case !haveReq:
		return r, errors.New(`no "N requests in T" line`)
	case !haveRate:
		return r, errors.New(`no "Requests/sec:" line`)
	case r.duration <= 0:
		return r, errors.New("a run of no time")
	}
	return r, nil
}
