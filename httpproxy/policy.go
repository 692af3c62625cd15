package httpproxy

import (
	"strconv"
	"sync"
	"time"

	"lb/h1"
	"lb/proxy"
	"lb/proxyproto"
	"lb/rules"
	"lb/table"
)

// Policy is an HTTP frontend's traffic policy at the request and the
// response: the stick tables it counts requests in, and its request and
// response rules. (Connection rules and the PROXY protocol are
// proxy.Policy's, which runs first.)
type Policy struct {
	// Tracks are the tables the frontend tracks, in the order of
	// proxy.Policy.Tracks: those keyed by the client's address have their
	// entry from the connection, the others one per request.
	Tracks []proxy.Track
	// ReqRules and RespRules are the request and response rules.
	ReqRules, RespRules []*rules.Rule
	// Backends are the backends of use_backend rules, by target.
	Backends []*Backend
}

// errUntrustedProxy is a PROXY protocol header from a peer not listed in
// accept_proxy.
var errUntrustedProxy = &h1.Error{Status: 400, Reason: "a PROXY protocol header from a peer not listed in accept_proxy"}

// proxyHeader reports whether the bytes buffered start with a PROXY
// protocol signature.
func (cc *clientConn) proxyHeader() bool {
	b, _ := cc.br.Peek(min(cc.br.Buffered(), 12))
	return proxyproto.HasSignature(b)
}

// Ends of requests that rules answered, as logged.
const (
	endDenied   = "denied"
	endTarpit   = "tarpit"
	endRedirect = "redirect"
	endReturn   = "return"
)

// policyState is what a request's conditions see (sub), and its entries
// in the tables keyed by what the request carries (own), held until it
// ends. Exchanges take one from policies only when their frontend has
// conditions, so that the others stay small.
type policyState struct {
	sub rules.Subject
	own [rules.MaxTracked]*table.Entry
}

var policies = sync.Pool{New: func() any { return new(policyState) }}

// subj returns what conditions see of the request; nil when the frontend
// has none (a rule without when needs nothing).
func (x *exchange) subj() *rules.Subject {
	if x.pol == nil {
		return nil
	}
	return &x.pol.sub
}

// putPolicy gives the exchange's policy state back, releasing what an
// exchange that ended without finish still holds.
func (x *exchange) putPolicy() {
	ps := x.pol
	if ps == nil {
		return
	}
	for _, e := range ps.own {
		if e != nil {
			e.Release()
		}
	}
	*ps = policyState{}
	policies.Put(ps)
	x.pol = nil
}

// subject fills the request's facts for conditions, when the frontend
// has any, and counts the request in the tables it tracks (acquiring the
// entries of keys that come with the request, released by endPolicy).
func (x *exchange) subject() {
	f := x.f
	if f.Policy == nil && !f.Conditional {
		return
	}
	if x.pol == nil {
		x.pol = policies.Get().(*policyState)
	}
	s := &x.pol.sub
	s.Client, s.Method, s.Host, s.Target, s.Header = x.peer, x.req.Method, x.req.Host(), x.req.Target, &x.req.Head
	s.Status, s.Now = 0, x.tHead
	if x.conn != nil {
		s.Local = x.conn.Local()
	}
	if x.tls {
		if cs, ok := x.cl.tlsState(); ok {
			s.SNI = cs.ServerName
		}
	}
	p := f.Policy
	if p == nil || len(p.Tracks) == 0 {
		return
	}
	if s.Now.IsZero() {
		s.Now = time.Now()
	}
	var ci *proxy.ConnInfo
	if x.conn != nil {
		ci = x.conn.Info()
	}
	for i, t := range p.Tracks {
		if i >= len(s.Tracked) {
			break
		}
		var e *table.Entry
		if t.Kind == proxy.KeySrc {
			if ci != nil {
				e = ci.Tracked[i].Entry
			}
		} else if key := x.trackKey(t); len(key) > 0 {
			e = t.Table.Acquire(key, s.Now)
			x.pol.own[i] = e
		}
		s.Tracked[i] = rules.Track{Name: t.Table.Spec().Name, Entry: e}
		if e != nil {
			e.Request(s.Now)
		}
	}
}

// trackKey returns the request's key in a table not keyed by the client's
// address; nil when the request has none.
func (x *exchange) trackKey(t proxy.Track) []byte {
	switch t.Kind {
	case proxy.KeyHeader:
		v, _ := x.req.Get(t.Name)
		return v
	case proxy.KeyCookie:
		v, _ := x.req.Cookie(t.Name)
		return v
	case proxy.KeyURLParam:
		if q := x.query(); q != nil {
			v, _ := rules.QueryParam(q, t.Name)
			return v
		}
		return nil
	case proxy.KeyPath:
		return x.req.Path()
	}
	return nil
}

// endPolicy counts the exchange's outcome in its tracked entries (an
// error for a 4xx answer or a request that failed, the bytes of the
// bodies) and gives back those acquired for the request.
func (x *exchange) endPolicy(now time.Time) {
	ps := x.pol
	if ps == nil || x.tStart.IsZero() {
		return
	}
	failed := x.status >= 400 && x.status < 500 || x.status == 0 && x.end != endOK && x.end != ""
	for i := range ps.sub.Tracked {
		e := ps.sub.Tracked[i].Entry
		if e == nil {
			continue
		}
		if failed {
			e.Error(now)
		}
		e.Bytes(x.bytesIn, x.bytesOut, now)
		ps.sub.Tracked[i].Entry = nil
	}
	for i, e := range ps.own {
		if e != nil {
			e.Release()
			ps.own[i] = nil
		}
	}
}

// requestRules runs the request rules: it returns the backend a
// use_backend rule chose (nil: none), and whether the request goes on;
// when it does not, the rule answered it, and keep says whether the
// connection does.
func (x *exchange) requestRules() (be *Backend, goOn, keep bool) {
	p := x.f.Policy
	if p == nil || len(p.ReqRules) == 0 {
		return nil, true, false
	}
	v := rules.Evaluate(p.ReqRules, x.subj())
	if v.Target >= 0 && v.Target < len(p.Backends) {
		be = p.Backends[v.Target]
	}
	if v.Rule == nil || v.Rule.Action == rules.Allow {
		return be, true, false
	}
	return be, false, x.answer(v.Rule)
}

// responseRules runs the response rules on the response head in x.resp;
// it returns the deny rule that matched, or nil.
func (x *exchange) responseRules() *rules.Rule {
	p := x.f.Policy
	if p == nil || len(p.RespRules) == 0 {
		return nil
	}
	s := x.subj()
	s.Status = x.resp.Status
	return rules.Evaluate(p.RespRules, s).Rule
}

// answer sends the response a rule makes (deny, tarpit, redirect,
// return) to the request, and reports whether the connection goes on.
func (x *exchange) answer(r *rules.Rule) bool {
	keep := x.req.KeepAlive && !x.f.draining.Load()
	switch r.Action {
	case rules.Deny:
		x.end = endDenied
	case rules.Tarpit:
		x.end = endTarpit
		keep = false
		if !x.hold(r.Delay) {
			x.finish(false)
			return false
		}
	case rules.Redirect:
		x.end = endRedirect
	default:
		x.end = endReturn
	}
	if (r.Action == rules.Deny || r.Action == rules.Tarpit) && x.f.Counts != nil {
		x.f.Counts.DeniedReqs.Add(1)
	}
	if x.req.Body.Kind != h1.BodyNone {
		// lb read none of the body: the rest may still be coming.
		keep, x.early = false, true
	}
	return x.writeAnswer(r, keep)
}

// writeAnswer writes the response of rule r and finishes the exchange.
func (x *exchange) writeAnswer(r *rules.Rule, keep bool) bool {
	resp := &x.resp
	resp.Reset()
	resp.Minor, resp.Status = 1, r.Status
	resp.Reason = r.Reason
	for _, h := range r.Headers {
		resp.AddString(h[0], h[1])
	}
	if r.Action == rules.Redirect {
		loc := r.AppendLocation(x.scratch[:0], &x.env, x.req.Host(), x.req.Target)
		resp.Set("Location", loc)
		x.scratch = loc[:0]
	}
	if len(r.Body) > 0 {
		resp.AddString("Content-Type", r.ContentType)
	}
	resp.Set("Content-Length", strconv.AppendInt(x.scratch[:0], int64(len(r.Body)), 10))
	resp.AddString("Cache-Control", "no-cache")
	resp.Body = h1.Body{Kind: h1.BodyLength, Length: int64(len(r.Body))}
	x.status = r.Status
	w, _, err := x.cl.writeHead(resp, !keep)
	if err == nil && len(r.Body) > 0 && string(x.req.Method) != "HEAD" {
		var n int
		n, err = w.Write(r.Body)
		x.bytesOut += int64(n)
	}
	if err == nil {
		err = x.cl.endBody(nil)
	}
	x.headSent = true
	if err != nil {
		x.end, x.err = endClientAborted, err
		x.finish(false)
		return false
	}
	x.finish(true)
	return keep
}

// hold keeps a tarpitted client waiting for d; it reports false when the
// client went away meanwhile (HTTP/2: its stream was reset).
func (x *exchange) hold(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.clientDone(): // nil for HTTP/1.1: never
		x.end = endClientAborted
		return false
	}
}

// proxyHeader is the PROXY protocol header that tells a server about the
// request's client: its address, the one it connected to, and its TLS (the
// version and the server name it asked for), or what a PROXY protocol
// header from a load balancer in front said of it.
func (x *exchange) proxyHeader() proxyproto.Header {
	h := proxyproto.Header{Source: x.peer}
	if x.conn != nil {
		h.Dest = x.conn.Local()
		if ci := x.conn.Info(); ci != nil && ci.Proxied {
			h.ALPN, h.Authority, h.TLS, h.TLSVersion = ci.Proxy.ALPN, ci.Proxy.Authority, ci.Proxy.TLS, ci.Proxy.TLSVersion
		}
	}
	if x.tls {
		if cs, ok := x.cl.tlsState(); ok {
			h.TLS, h.Authority, h.ALPN = true, cs.ServerName, cs.NegotiatedProtocol
			h.TLSVersion = tlsVersionName(cs.Version)
		}
	}
	return h
}

// tlsVersionName is a TLS version as PROXY protocol v2 names it.
func tlsVersionName(v uint16) string {
	switch v {
	case 0x0304:
		return "TLSv1.3"
	case 0x0303:
		return "TLSv1.2"
	case 0x0302:
		return "TLSv1.1"
	case 0x0301:
		return "TLSv1"
	}
	return ""
}
