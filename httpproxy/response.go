package httpproxy

import (
	"bufio"
	"io"

	"lb/h1"
	"lb/proxy"
	"lb/rules"
)

// The response stage, once the server's response head is in x.resp: decide
// which connections go on, turn the head into the client's, tell the
// passive check, write the head, copy the body and its trailer, release
// the server connection.

// respond sends the response to the client; keep says the client may
// carry on with the connection. It reports whether the connection goes on.
// The response comes from an HTTP/1.1 server connection (x.sc) or an
// HTTP/2 server's stream (x.call, h2up.go); the steps are the same.
func (x *exchange) respond(keep bool) bool {
	x.status = x.resp.Status
	keep = x.keepClient(keep)
	if r := x.responseRules(); r != nil && r.Action == rules.Deny {
		// The server's answer does not go out: lb's does, and the server
		// connection, its response unread, closes (an HTTP/2 server's
		// stream is reset).
		x.observeResponse()
		whole := x.call == nil || x.call.body.whole()
		x.drop(false)
		if x.f.Counts != nil {
			x.f.Counts.DeniedResps.Add(1)
		}
		x.end = endDenied
		return x.writeAnswer(r, keep && whole && x.uploadComplete())
	}
	serverKeep := x.keepServer()
	x.prepareResponse()
	x.observeResponse()
	w, out, err := x.cl.writeHead(&x.resp, !keep)
	if err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	x.headSent = true
	if err, fromServer := x.copyResponse(w, out); err != nil {
		return x.responseCut(err, fromServer)
	}
	if err := x.cl.endBody(x.responseTrailer()); err != nil {
		x.drop(false)
		return x.clientGone(err)
	}
	if !x.uploadComplete() {
		serverKeep, keep = false, false
	}
	if c := x.call; c != nil {
		if !c.body.whole() {
			// The server answered before it had the whole body: the
			// rest is still coming on an HTTP/1.1 client's connection.
			x.early, keep = true, false
		}
		x.bytesIn = c.body.count()
		x.drop(false)
	} else {
		x.releaseServer(serverKeep)
	}
	x.end = endOK
	x.finish(true)
	return keep
}

// keepClient says whether the client connection may go on after this
// response; keep says whether the request allowed it.
func (x *exchange) keepClient(keep bool) bool {
	resp := &x.resp
	if x.up.running && !resp.KeepAlive {
		// The server answers and closes before it has the whole body:
		// lb will close too, and says so, so that the client stops
		// sending (RFC 9112 9.5).
		return false
	}
	if x.req.Minor == 0 && (resp.Body.Kind == h1.BodyChunked || resp.Body.Kind == h1.BodyUntilClose) {
		return false // an HTTP/1.0 client learns where the body ends from the close
	}
	return keep
}

// keepServer says whether the server connection may serve another request
// once this response is complete: the server keeps it open, the request
// body went whole, and the body does not end with the close.
func (x *exchange) keepServer() bool {
	return x.resp.KeepAlive && !x.early && x.resp.Body.Kind != h1.BodyUntilClose
}

// prepareResponse turns the server's response head into the client's:
// hop-by-hop fields out, the persistence cookie in, header rules applied
// (the backend's, then the frontend's).
func (x *exchange) prepareResponse() {
	resp, be := &x.resp, x.be
	resp.RemoveHopByHop()
	switch resp.Body.Kind {
	case h1.BodyChunked:
		resp.CleanTrailerHeader()
	case h1.BodyLength, h1.BodyUntilClose:
		resp.Del("Trailer") // no trailer section can follow
	}
	if be.Cookie != "" && !x.stuck {
		b := append(x.scratch[:0], be.Cookie...)
		b = append(append(append(b, '='), x.srv.Name...), "; Path=/; HttpOnly"...)
		if x.tls {
			b = append(b, "; Secure"...)
		}
		resp.Add("Set-Cookie", b)
		x.scratch = b[:0]
	}
	if s := x.subj(); s != nil {
		s.Status = resp.Status
	}
	for _, r := range be.RespRules {
		if r.Applies(x.subj()) {
			x.scratch = r.Apply(resp, &x.env, x.scratch[:0])
		}
	}
	for _, r := range x.f.RespRules {
		if r.Applies(x.subj()) {
			x.scratch = r.Apply(resp, &x.env, x.scratch[:0])
		}
	}
}

// observeResponse tells the passive check how the server answered: a 5xx
// counts against it, except 501 and 505, which blame the request.
func (x *exchange) observeResponse() {
	if s := x.resp.Status; s >= 500 && s != 501 && s != 505 {
		x.be.Observe(x.srv, errServer5xx)
	} else {
		x.be.Observe(x.srv, nil)
	}
}

// copyResponse copies the response body from the server to w (out is the
// buffer under w, flushed when the server's body pauses), counting it in
// x.bytesOut. fromServer says the error came from the server's side: the
// body failed or ended short.
func (x *exchange) copyResponse(w io.Writer, out *bufio.Writer) (err error, fromServer bool) {
	if x.call != nil {
		return x.call.copyResponse(w, out)
	}
	resp, sc := &x.resp, x.sc
	var src io.Reader
	var in *bufio.Reader // what src reads through, where it reads no more than that holds
	switch resp.Body.Kind {
	case h1.BodyLength:
		x.lr = io.LimitedReader{R: sc.br, N: resp.Body.Length}
		src, in = &x.lr, sc.br
	case h1.BodyChunked:
		x.scr.Reset(sc.br, x.f.Limits) // may read past what the buffer holds
		src = &x.scr
	case h1.BodyUntilClose:
		src, in = sc.br, sc.br
	}
	if src == nil {
		return nil, false
	}
	x.sr.r, x.sr.in = src, in
	n, err, fromServer := copyBody(w, out, &x.sr, sc.br, 0)
	x.bytesOut = n
	if err == nil && resp.Body.Kind == h1.BodyLength && n < resp.Body.Length {
		err, fromServer = io.ErrUnexpectedEOF, true
	}
	return err, fromServer
}

// responseCut ends an exchange whose response body failed with err after
// the head went out. A request body the client failed meanwhile is the
// cause; else a failure on the server's side (fromServer) cuts the
// response, which the client must see as such, and one on the client's
// side means the client went away.
func (x *exchange) responseCut(err error, fromServer bool) bool {
	if x.call != nil {
		return x.responseCutH2(err, fromServer)
	}
	if x.up.running {
		x.endUpload(true)
		if x.up.failed.Load() {
			x.drop(false)
			return x.clientGone(x.up.err)
		}
	}
	if !fromServer {
		x.drop(false)
		return x.clientGone(err)
	}
	x.be.Observe(x.srv, proxy.ErrServerReset)
	x.drop(true)
	x.end, x.err = endServerError, err
	if isTimeout(err) {
		x.end = endServerTimeout
	}
	x.finish(false)
	return false
}

// responseTrailer returns the trailer fields of a chunked response that
// may go on to the client, or nil.
func (x *exchange) responseTrailer() *h1.Head {
	if x.call != nil {
		return x.call.responseTrailer()
	}
	if x.resp.Body.Kind != h1.BodyChunked {
		return nil
	}
	trailer := x.scr.Trailer()
	if trailer != nil {
		trailer.RemoveDisallowedTrailers()
	}
	return trailer
}

// uploadComplete ends the upload, if one still runs, once the response is
// complete: a server that wanted the rest of the body has had it; the rest
// is not for it. It reports whether the whole body went, without which
// neither connection can carry another request.
func (x *exchange) uploadComplete() bool {
	if !x.up.running {
		return true
	}
	x.endUpload(true)
	if x.up.err != nil {
		x.early = true
		return false
	}
	return true
}

// releaseServer gives the server connection back to the backend's pool
// when it can serve another request (reuse), else closes it, and frees
// the server's slot.
func (x *exchange) releaseServer(reuse bool) {
	x.sc.rAt, x.sc.wAt = x.sr.At, x.sw.At
	if cc, ok := x.cl.(*clientConn); ok && reuse && x.be.SendProxy != 0 {
		cc.keepPrivate(x.sc) // it carries this client's PROXY header
	} else {
		x.tEnd = x.since() // finish's too: one clock read
		x.be.release(x.sc, reuse, x.tEnd.Sub(processStart))
	}
	x.sc = nil
	x.srv.Release()
	x.srv = nil
}
