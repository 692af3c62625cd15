package httpproxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"lb/stats"
)

// dialAt is the time, as sinceStart, at which DialServer takes an idle
// server connection: when the request head came, microseconds ago, for a
// first attempt that did not wait in the queue (no clock read); now after
// a wait or a failed dial, which can last seconds, so that the idle age
// of the connections stays true.
func (x *exchange) dialAt() time.Duration {
	if x.tHead.IsZero() || x.dial.Queued || x.dial.Attempts > 1 {
		return sinceStart()
	}
	return x.tHead.Sub(processStart)
}

// since returns the time now as the exchange's start plus the time since,
// which reads the monotonic clock alone (time.Now reads the wall clock
// too): for the times lb measures from the start, or logs beside it.
func (x *exchange) since() time.Time {
	if x.tStart.IsZero() {
		return time.Now()
	}
	return x.tStart.Add(time.Since(x.tStart))
}

// finish counts and logs the exchange.
func (x *exchange) finish(ok bool) {
	now := x.tEnd
	if now.IsZero() {
		now = x.since()
	}
	x.count(now)
	x.endPolicy(now)
	if cc, isH1 := x.cl.(*clientConn); isH1 && cc.conn != nil {
		cc.conn.CountBytes(x.bytesIn, x.bytesOut)
	}
	f := x.f
	if f.HTTPLog != nil {
		// The lines of log_format = "httplog" are info lines too: -q
		// leaves them out.
		if f.Log.GetLevel() <= zerolog.InfoLevel {
			x.httplog(now)
		}
		return
	}
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
	e = e.Bytes("method", x.req.Method).Bytes("host", x.req.Host()).Bytes("path", x.req.Path())
	if q := x.query(); f.LogQuery && q != nil {
		e = e.Bytes("query", q)
	}
	e = e.Str("http", x.httpVersion())
	if ua, ok := x.req.Get("User-Agent"); ok {
		e = e.Bytes("user_agent", ua)
	}
	if x.tls {
		if cs, ok := x.cl.tlsState(); ok {
			e = e.Str("tls", tls.VersionName(cs.Version))
			if cs.DidResume {
				e = e.Bool("tls_resumed", true) // a ticket or PSK: no full handshake
			}
			if cs.ServerName != "" {
				e = e.Str("sni", cs.ServerName) // none for an IP address (RFC 6066)
			}
		}
	}
	e = e.Int("status", x.status).Int64("bytes_in", x.bytesIn).Int64("bytes_out", x.bytesOut).
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
	t := x.termination()
	e = e.Dur("t_total", now.Sub(x.tStart)).Str("end", x.end).Bytes("term", t[:])
	if x.err != nil {
		e = e.Err(x.err)
	}
	e.Msg("request")
}

// query returns the request target's query string, without the "?"; nil
// when there is none.
func (x *exchange) query() []byte {
	t := x.req.Target
	i := bytes.IndexByte(t, '?')
	if i < 0 {
		return nil
	}
	q := t[i+1:]
	if j := bytes.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	return q
}

// httpVersion is the client's HTTP version: "1.0", "1.1" or "2.0".
func (x *exchange) httpVersion() string {
	if _, ok := x.cl.(*h2Stream); ok {
		return "2.0"
	}
	if x.req.Minor == 0 {
		return "1.0"
	}
	return "1.1"
}

// termination is the exchange's termination state as HAProxy writes it:
// who or what ended it (- for nobody: it went well; C the client, S the
// server, P lb, R a resource limit; lower case c and s for their
// timeouts), then where it was (R reading the request, Q waiting in the
// queue, C connecting, H waiting for or reading the response head, D
// sending the body, - done).
func (x *exchange) termination() [2]byte {
	stage := byte('H')
	if x.headSent {
		stage = 'D'
	}
	switch x.end {
	case endOK, endTunnel:
		return [2]byte{'-', '-'}
	case endClientAborted:
		if x.tConnect.IsZero() {
			return [2]byte{'C', 'R'}
		}
		return [2]byte{'C', stage}
	case endClientTimeout:
		if x.tConnect.IsZero() {
			return [2]byte{'c', 'R'}
		}
		return [2]byte{'c', stage}
	case endBadRequest, endTooLarge:
		return [2]byte{'P', 'R'}
	case endHeadBudget:
		return [2]byte{'R', 'R'}
	case endNoServer:
		return [2]byte{'S', 'C'}
	case endQueueTimeout:
		return [2]byte{'s', 'Q'}
	case endConnectFailed:
		return [2]byte{'S', 'C'}
	case endServerError:
		return [2]byte{'S', stage}
	case endServerTimeout:
		return [2]byte{'s', stage}
	case endBadResponse:
		return [2]byte{'P', 'H'}
	case endDenied:
		if x.pol != nil && x.pol.sub.Status != 0 {
			return [2]byte{'P', 'H'} // a response rule denied the server's answer
		}
		return [2]byte{'P', 'R'}
	case endTarpit:
		return [2]byte{'P', 'T'}
	case endRedirect, endReturn:
		return [2]byte{'L', 'R'}
	}
	return [2]byte{'-', '-'}
}

// ms is d in milliseconds for the httplog line, -1 when the stage was
// not reached (from or to is zero).
func ms(from, to time.Time) int64 {
	if from.IsZero() || to.IsZero() {
		return -1
	}
	return to.Sub(from).Milliseconds()
}

// httplog writes the exchange's line in the format of HAProxy's option
// httplog: client [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta
// status bytes request-cookie response-cookie termination-state
// actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue "request".
func (x *exchange) httplog(now time.Time) {
	f := x.f
	b := x.scratch[:0]
	b = x.peer.AppendTo(b)
	b = append(b, " ["...)
	b = x.tStart.UTC().AppendFormat(b, "02/Jan/2006:15:04:05.000")
	b = append(b, "] "...)
	b = append(b, f.Name...)
	if x.tls {
		b = append(b, '~')
	}
	b = append(b, ' ')
	if x.be != nil {
		b = append(b, x.be.Name()...)
	} else {
		b = append(b, f.Name...)
	}
	b = append(b, '/')
	if x.env.Server != "" {
		b = append(b, x.env.Server...)
	} else {
		b = append(b, "<NOSRV>"...)
	}
	b = fmt.Appendf(b, " %d/%d/%d/%d/%d %d %d - - %s-- ", ms(x.tStart, x.tHead), 0, ms(x.tHead, x.tConnect),
		ms(x.tConnect, x.tResp), now.Sub(x.tStart).Milliseconds(), x.status, x.bytesOut, x.termination())
	var fe, be, srv int64
	if f.Active != nil {
		fe = f.Active()
	}
	if x.counted != nil {
		srv = x.counted.Active()
	}
	if x.be != nil {
		for _, s := range x.be.Pool.Servers {
			be += max(s.Active(), 0)
		}
	}
	b = fmt.Appendf(b, "%d/%d/%d/%d/%d 0/0 \"", fe, fe, be, srv, x.retries)
	b = append(b, x.req.Method...)
	b = append(b, ' ')
	if f.LogQuery {
		b = append(b, x.req.Target...)
	} else {
		b = append(b, x.req.Path()...)
	}
	b = append(b, " HTTP/"...)
	b = append(b, x.httpVersion()...)
	b = append(b, "\"\n"...)
	_, _ = f.HTTPLog.Write(b)
	x.scratch = b[:0]
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

// countLatency adds the exchange's timings with its server to l: the
// connect time only for a connection made for it (a pooled one takes no
// time to count).
func countLatency(l *stats.Latency, x *exchange, total time.Duration) {
	if !x.tConnect.IsZero() && x.tConnect != x.tHead {
		l.Connect.Observe(x.tConnect.Sub(x.tHead))
	}
	if !x.tResp.IsZero() {
		l.FirstByte.Observe(x.tResp.Sub(x.tConnect))
	}
	l.Total.Observe(total)
}
