package httpproxy

import (
	"bytes"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"lb/balancer"
	"lb/h1"
)

// requestIDs numbers generated request ids; idSeed makes them differ
// between processes.
var (
	requestIDs atomic.Uint64
	idSeed     = uint64(time.Now().UnixNano()) ^ uint64(os.Getpid())<<32
)

const hexDigits = "0123456789abcdef"

// requestID keeps the client's request id, or makes one.
func (x *exchange) requestID() []byte {
	if name := x.f.RequestIDHeader; name != "" {
		if v, ok := x.req.Get(name); ok && len(v) > 0 && len(v) <= len(x.idbuf) {
			return x.idbuf[:copy(x.idbuf[:], v)]
		}
	}
	n := balancer.Mix(requestIDs.Add(1) ^ idSeed)
	b := x.idbuf[:16]
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[n&15]
		n >>= 4
	}
	return b
}

// run serves one request whose head is in x.req, and reports whether the
// client connection may carry another one.
func (x *exchange) run() bool {
	f := x.f
	x.env.Client, x.env.Frontend, x.env.Scheme = x.peer, f.Name, f.scheme()
	x.env.RequestID = x.requestID()
	x.env.Host = x.req.Host()
	if string(x.req.Method) == "CONNECT" {
		return x.fail(405, endBadRequest, errConnect)
	}
	if f.MaxBodyBytes > 0 && x.req.Body.Kind == h1.BodyLength && x.req.Body.Length > int64(f.MaxBodyBytes) {
		return x.fail(413, endTooLarge, nil)
	}
	x.subject()
	be, goOn, keepOn := x.requestRules()
	if !goOn {
		return keepOn
	}
	if be == nil {
		be = f.route(&x.req, x.subj())
	}
	x.be = be
	x.env.Backend = x.be.Name()
	keep := x.req.KeepAlive
	if x.req.Upgrade && !be.h2 {
		// (An HTTP/2 server gets the request without its Upgrade: a
		// server may ignore one, RFC 9110 7.8.)
		if v, ok := x.req.Get("Upgrade"); ok {
			x.upgrade = append(x.upgrade[:0], v...)
		}
	}
	expect := x.req.Expect100
	if !x.pickAndConnect() {
		return false
	}
	x.prepareRequest()
	if expect {
		if err := x.cl.continue100(); err != nil {
			x.drop(false)
			return x.clientGone(err)
		}
	}
	if x.call != nil {
		if !x.forwardH2() {
			return false
		}
	} else if !x.forward() {
		return false
	}
	if x.resp.Status == 101 {
		x.tunnel()
		return false
	}
	if x.early {
		keep = false
	}
	return x.respond(keep && !f.draining.Load())
}

// hashKey returns the request's key for hash balancing, or a key that
// spreads requests without one.
func (x *exchange) hashKey() uint64 {
	var key []byte
	switch x.be.Hash.Kind {
	case HashClient:
		return balancer.HashAddr(x.peer.Addr())
	case HashURI:
		key = x.req.Target
	case HashPath:
		key = x.req.Path()
	case HashHeader:
		key, _ = x.req.Get(x.be.Hash.Name)
	case HashCookie:
		key = cookieValue(&x.req.Head, x.be.Hash.Name)
	}
	if len(key) == 0 {
		return balancer.Mix(requestIDs.Add(1) ^ idSeed)
	}
	return balancer.HashBytes(key)
}

// cookieValue returns the value of the cookie name in h's Cookie fields, or
// nil.
func cookieValue(h *h1.Head, name string) []byte {
	v, ok := h.Cookie(name)
	if !ok || len(v) == 0 {
		return nil
	}
	return v
}

// prepareRequest turns the client's request head into the server's:
// hop-by-hop fields out, framing and X-Forwarded-* in, header rules
// applied.
func (x *exchange) prepareRequest() {
	req, f := &x.req, x.f
	req.Del("Expect")
	// TE is hop-by-hop, but "trailers" in it says the client takes
	// trailer fields (an HTTP/2 client's te: trailers, which gRPC sends):
	// lb passes them on, so the server may send them too.
	trailers := req.HasToken("TE", "trailers")
	req.RemoveHopByHop()
	if x.reqLen < 0 {
		req.CleanTrailerHeader()
	} else {
		req.Del("Trailer") // no trailer section can follow
	}
	if t := req.Target; len(t) > 0 && t[0] != '/' && t[0] != '*' {
		// Absolute form: servers get the origin form, and the authority
		// as Host (RFC 9112 3.2.2).
		host := req.Host()
		req.Set("Host", host)
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			rest := t[i+3:]
			j := bytes.IndexAny(rest, "/?")
			switch {
			case j < 0:
				req.Target = append(req.Target[:0:0], '/')
			case rest[j] == '?':
				req.Target = append([]byte{'/'}, rest[j:]...)
			default:
				req.Target = rest[j:]
			}
		}
	}
	switch {
	case x.upgrade != nil:
		req.Set("Connection", []byte("Upgrade"))
		req.Set("Upgrade", x.upgrade)
	case trailers:
		req.Set("TE", []byte("trailers"))
		req.Set("Connection", []byte("TE")) // a hop-by-hop field is named in Connection (RFC 9110 10.1.4)
	}
	switch {
	case x.reqLen < 0:
		req.Del("Content-Length")
		req.Set("Transfer-Encoding", []byte("chunked"))
	case x.reqLen > 0:
		req.Set("Content-Length", strconv.AppendInt(x.scratch[:0], x.reqLen, 10))
	}

	// X-Forwarded-For: the client's address appended to what came.
	b := x.scratch[:0]
	for i := req.Index("X-Forwarded-For", 0); i >= 0; i = req.Index("X-Forwarded-For", i+1) {
		if v := req.Fields[i].Value; len(v) > 0 {
			b = append(append(b, v...), ", "...)
		}
	}
	b = x.peer.Addr().Unmap().AppendTo(b)
	req.Set("X-Forwarded-For", b)
	req.Set("X-Forwarded-Proto", []byte(x.env.Scheme))
	if host := req.Host(); len(host) > 0 {
		req.Set("X-Forwarded-Host", host)
	}
	if f.Forwarded {
		b = b[:0]
		for i := req.Index("Forwarded", 0); i >= 0; i = req.Index("Forwarded", i+1) {
			if v := req.Fields[i].Value; len(v) > 0 {
				b = append(append(b, v...), ", "...)
			}
		}
		b = append(b, "for="...)
		if a := x.peer.Addr().Unmap(); a.Is6() {
			b = append(b, `"[`...)
			b = a.AppendTo(b)
			b = append(b, `]"`...)
		} else {
			b = a.AppendTo(b)
		}
		b = append(append(b, ";proto="...), x.env.Scheme...)
		if host := req.Host(); len(host) > 0 {
			b = strconv.AppendQuote(append(b, ";host="...), string(host))
		}
		req.Set("Forwarded", b)
	}
	if f.RequestIDHeader != "" {
		req.Set(f.RequestIDHeader, x.env.RequestID)
	}
	x.scratch = b[:0]
	for _, r := range f.ReqRules {
		if r.Applies(x.subj()) {
			x.scratch = r.Apply(req, &x.env, x.scratch[:0])
		}
	}
	for _, r := range x.be.ReqRules {
		if r.Applies(x.subj()) {
			x.scratch = r.Apply(req, &x.env, x.scratch[:0])
		}
	}
}
