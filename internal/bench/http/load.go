package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"lb/internal/bench/benchutil"
)

// Bounds of the clients.
const (
	dialTimeout = 5 * time.Second
	// ioTimeout bounds one request, from sending it to the end of the
	// response's body.
	ioTimeout = 5 * time.Second
	// maxRequestsPerClient bounds a client's loop in count; the end of the
	// measurement and the context bound it in time.
	maxRequestsPerClient = 1 << 40
	// reconnectPause is the pause after a failed connect, so that a target
	// that is down is not hammered.
	reconnectPause = 10 * time.Millisecond
	// maxSamples is how many error messages are kept, per client and per
	// measurement.
	maxSamples = 4
)

// tally is what clients count during the measurement window.
type tally struct {
	hist hist
	// ok counts the requests answered 200 with the whole body.
	ok uint64
	// errors counts the requests that failed: refused or failed connect,
	// a reset or closed connection, a time-out, another status, a wrong
	// body.
	errors uint64
	// reconnects counts the connections opened during the window: with
	// keep-alive working, none.
	reconnects uint64
	samples    []string
}

// add adds o to t.
func (t *tally) add(o *tally) {
	t.hist.merge(&o.hist)
	t.ok += o.ok
	t.errors += o.errors
	t.reconnects += o.reconnects
	for _, s := range o.samples {
		if len(t.samples) < maxSamples {
			t.samples = append(t.samples, s)
		}
	}
}

// client is one connection's worth of load: one keep-alive connection,
// one request after the other, reconnecting after an error.
type client struct {
	addr       string
	bodySize   int
	start, end time.Time // the measurement window
	t          tally
}

// load is the clients of one measurement.
type load struct {
	start, end time.Time
	clients    []*client
	wg         sync.WaitGroup
}

// startLoad starts clients, spread over addrs in turn, that warm up for
// warmup and are then measured for dur.
func startLoad(ctx context.Context, addrs []string, clients, bodySize int, warmup, dur time.Duration) *load {
	now := time.Now()
	l := &load{start: now.Add(warmup), end: now.Add(warmup + dur)}
	for i := range clients {
		c := &client{addr: addrs[i%len(addrs)], bodySize: bodySize, start: l.start, end: l.end}
		l.clients = append(l.clients, c)
		l.wg.Add(1)
		go c.run(ctx, &l.wg)
	}
	return l
}

// wait waits for the clients to stop, and returns their tally. The clients
// stop at the end of the window, each once its request in progress is done
// (at most dialTimeout or ioTimeout), or when ctx is done.
func (l *load) wait() (*tally, error) {
	bound := time.Until(l.end) + dialTimeout + ioTimeout + 5*time.Second
	if !benchutil.WaitBounded(&l.wg, bound) {
		return nil, fmt.Errorf("clients still running %v after the end of the measurement", bound)
	}
	var t tally
	for _, c := range l.clients {
		t.add(&c.t)
	}
	return &t, nil
}

// run sends requests until the end of the window or ctx is done.
func (c *client) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	r := bufio.NewReaderSize(nil, 16<<10)
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	d := net.Dialer{Timeout: dialTimeout}
	for range maxRequestsPerClient {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		if !t0.Before(c.end) {
			return
		}
		measuring := !t0.Before(c.start)
		if conn == nil {
			var err error
			conn, err = d.DialContext(ctx, "tcp4", c.addr)
			if err != nil {
				conn = nil
				c.fail(measuring, fmt.Errorf("connect: %w", err))
				benchutil.SleepCtx(ctx, reconnectPause)
				continue
			}
			if measuring {
				c.t.reconnects++
			}
			r.Reset(conn)
			t0 = time.Now()
		}
		_ = conn.SetDeadline(t0.Add(ioTimeout))
		keep, err := benchutil.Exchange(conn, r, c.bodySize)
		took := time.Since(t0)
		if err != nil {
			c.fail(measuring, err)
			conn.Close()
			conn = nil
			continue
		}
		if measuring {
			c.t.ok++
			c.t.hist.record(took)
		}
		if !keep {
			conn.Close()
			conn = nil
		}
	}
}

// fail counts a failed request, if in the window, and keeps its message
// (any time: failures of the warm-up tell what is wrong too).
func (c *client) fail(measuring bool, err error) {
	if measuring {
		c.t.errors++
	}
	if len(c.t.samples) < maxSamples {
		when := "warm-up"
		if measuring {
			when = "measured"
		}
		c.t.samples = append(c.t.samples, fmt.Sprintf("%s, %s: %v", c.addr, when, err))
	}
}
