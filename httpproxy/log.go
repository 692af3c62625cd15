package httpproxy

import "time"

// finish logs the exchange.
func (x *exchange) finish(ok bool) {
	f := x.f
	e := f.Log.Info()
	if !ok && x.status >= 500 {
		e = f.Log.Warn()
	}
	if e == nil {
		return
	}
	now := time.Now()
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
