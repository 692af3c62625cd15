package httpproxy

import (
	"time"

	"lb/stats"
)

// finish counts and logs the exchange.
func (x *exchange) finish(ok bool) {
	now := time.Now()
	x.count(now)
	f := x.f
	e := f.Log.Info()
	if !ok && x.status >= 500 {
		e = f.Log.Warn()
	}
	if e == nil {
		return
	}
	var buf [64]byte
	e = e.Bytes("client", x.peer.AppendTo(buf[:0])).Str("frontend", f.Name)
	if x.be != nil {
		e = e.Str("backend", x.be.Name())
	}
	if x.env.Server != "" {
		e = e.Str("server", x.env.Server)
	}
	e = e.Bytes("method", x.req.Method).Bytes("host", x.req.Host()).Bytes("path", x.req.Path()).
		Int("status", x.status).Int64("bytes_in", x.bytesIn).Int64("bytes_out", x.bytesOut).
		Bytes("request_id", x.env.RequestID)
	if x.retries > 0 {
		e = e.Int("retries", x.retries)
	}
	e = e.Dur("t_request", x.tHead.Sub(x.tStart))
	if !x.tConnect.IsZero() {
		e = e.Dur("t_connect", x.tConnect.Sub(x.tHead))
	}
	if !x.tResp.IsZero() {
		e = e.Dur("t_response", x.tResp.Sub(x.tHead))
	}
	e = e.Dur("t_total", now.Sub(x.tStart)).Str("end", x.end)
	if x.err != nil {
		e = e.Err(x.err)
	}
	e.Msg("request")
}

// count adds the exchange, which ended at now, to the counters of its
// frontend, backend and server.
func (x *exchange) count(now time.Time) {
	if x.tStart.IsZero() {
		return // no request began
	}
	total := now.Sub(x.tStart)
	if c := x.f.Counts; c != nil {
		c.Exchange(x.status, x.bytesIn, x.bytesOut)
		c.Duration.Observe(total)
	}
	serverFailed := x.end == endServerError || x.end == endServerTimeout || x.end == endBadResponse
	if x.be != nil {
		c := &x.be.Counts
		c.Exchange(x.status, x.bytesIn, x.bytesOut)
		if serverFailed {
			c.ResponseErrors.Add(1)
		}
	}
	if srv := x.counted; srv != nil {
		c := &srv.Counts
		c.Exchange(x.status, x.bytesIn, x.bytesOut)
		if serverFailed {
			c.ResponseErrors.Add(1)
		}
		countLatency(&c.Latency, x, total)
	}
}

// countLatency adds the exchange's timings with its server to l.
func countLatency(l *stats.Latency, x *exchange, total time.Duration) {
	if !x.tConnect.IsZero() {
		l.Connect.Observe(x.tConnect.Sub(x.tHead))
	}
	if !x.tResp.IsZero() {
		l.FirstByte.Observe(x.tResp.Sub(x.tConnect))
	}
	l.Total.Observe(total)
}
