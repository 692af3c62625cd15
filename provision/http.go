package provision

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"lb/config"
	"lb/h1"
	"lb/httpproxy"
	"lb/proxy"
	"lb/rules"
	"lb/tlsconf"
)

// httpBackend makes the HTTP side of a backend on top of pb, its TCP side:
// stickiness, hash key, header rules, TLS to the servers.
func httpBackend(bc *config.Backend, pb *proxy.Backend) (*httpproxy.Backend, config.Errors) {
	var errs config.Errors
	obj := fmt.Sprintf("backend %q", bc.Name)
	b := httpproxy.NewBackend(pb)
	b.TunnelTimeout = bc.Timeout.Tunnel.D()
	b.Cookie = bc.Cookie
	if bc.Balance == config.BalanceHash {
		kind, name := bc.HashKeyParts()
		b.Hash = httpproxy.HashKey{Kind: hashKinds[kind], Name: name}
	}
	b.ReqRules, b.RespRules = headerRules(bc.Headers)
	if t := &bc.TLS; t.Enabled {
		tc, err := tlsconf.ClientConfig(t.CAFile, t.ServerName, t.InsecureSkipVerify)
		if err != nil {
			errs = append(errs, &config.Error{Pos: bc.Pos.Key("tls.ca_file"), Object: obj + ": tls", Msg: err.Error()})
		} else {
			// Each server's certificate is verified for the host it is
			// configured with (its name, not the address it resolved to).
			for j := range bc.Servers {
				sc := &bc.Servers[j]
				b.SetServerTLS(pb.Pool.Lookup(sc.Name), tlsconf.ForServer(tc, sc.Address))
			}
		}
	}
	if bc.Proto == config.ProtoH2 {
		b.UseHTTP2()
	}
	return b, errs
}

// hashKinds are the kinds of config.ParseHashKey, as httpproxy knows them.
var hashKinds = map[string]httpproxy.HashKind{
	config.HashURI:    httpproxy.HashURI,
	config.HashPath:   httpproxy.HashPath,
	config.HashHeader: httpproxy.HashHeader,
	config.HashCookie: httpproxy.HashCookie,
}

// httpFrontend makes the handler of an HTTP frontend, its routes to the
// backends (by name) compiled, its certificates read.
func httpFrontend(fc *config.Frontend, backends map[string]*httpproxy.Backend, log zerolog.Logger) (*httpproxy.Frontend, config.Errors) {
	var errs config.Errors
	obj := fmt.Sprintf("frontend %q", fc.Name)
	f := &httpproxy.Frontend{
		Name:             fc.Name,
		LogQuery:         fc.LogQuery,
		Default:          backends[fc.DefaultBackend],
		Limits:           h1.Limits{MaxHeaderBytes: fc.HTTP.MaxHeaderBytes, MaxHeaders: fc.HTTP.MaxHeaders},
		MaxBodyBytes:     fc.HTTP.MaxBodyBytes,
		RequestIDHeader:  fc.HTTP.RequestIDHeader,
		Forwarded:        fc.HTTP.Forwarded,
		ClientTimeout:    fc.Timeout.Client.D(),
		RequestTimeout:   fc.Timeout.HTTPRequest.D(),
		KeepAliveTimeout: fc.Timeout.HTTPKeepAlive.D(),
		Log:              log,
	}
	if len(fc.Routes) > 0 {
		routes := make([]*rules.Route, len(fc.Routes))
		targets := make([]int, len(fc.Routes))
		for i := range fc.Routes {
			rc := &fc.Routes[i]
			routes[i], targets[i] = rc.Rule(), i
			f.Targets = append(f.Targets, backends[rc.Backend])
		}
		f.Routes = rules.NewTable(routes, targets)
	}
	f.ReqRules, f.RespRules = headerRules(fc.Headers)
	if t := &fc.TLS; t.On() {
		certs := make([]tlsconf.Cert, len(t.Certs))
		for i, c := range t.Certs {
			certs[i] = tlsconf.Cert{CertFile: c.CertFile, KeyFile: c.KeyFile}
		}
		alpn := t.ALPN
		if len(alpn) == 0 {
			alpn = []string{"h2", "http/1.1"}
		}
		tc, err := tlsconf.ServerConfig(certs, t.MinVersion, alpn)
		if err != nil {
			pos := fc.Pos.Key("tls")
			var fe *tlsconf.FileError
			if errors.As(err, &fe) && fe.Index >= 0 && fe.Index < len(t.Certs) {
				pos = t.Certs[fe.Index].Pos.Key(fe.Key)
			}
			errs = append(errs, &config.Error{Pos: pos, Object: obj + ": tls", Msg: err.Error()})
		}
		f.TLS = tc
	}
	if f.Default == nil {
		errs = append(errs, &config.Error{Pos: fc.Pos.Key("default_backend"), Object: obj,
			Msg: fmt.Sprintf("default_backend %q is not an HTTP backend", fc.DefaultBackend)})
	}
	return f, errs
}

// headerRules splits compiled header rules by direction.
func headerRules(hs []config.HeaderRule) (req, resp []*rules.HeaderRule) {
	for i := range hs {
		r := hs[i].Rule()
		if r.Response() {
			resp = append(resp, r)
		} else {
			req = append(req, r)
		}
	}
	return req, resp
}
