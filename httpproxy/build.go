package httpproxy

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/rs/zerolog"

	"lb/config"
	"lb/h1"
	"lb/proxy"
	"lb/rules"
	"lb/tlsconf"
)

// Build makes the HTTP-mode frontends and backends of cfg on top of p, the
// TCP proxy that proxy.Build made of it: each HTTP frontend gets a handler.
// Certificate files are read here, so a new generation picks up new ones.
// Errors are config.Errors that name the file and the setting.
func Build(cfg *config.Config, p *proxy.Proxy, log zerolog.Logger) error {
	var errs config.Errors
	backends := map[string]*Backend{}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		if bc.Mode != config.ModeHTTP {
			continue
		}
		// A backend with errors is still known to the frontends, so that
		// they do not report it missing on top of its own errors.
		b, err := buildBackend(bc, p.Backends[i])
		errs = append(errs, err...)
		backends[bc.Name] = b
	}
	// One budget for the unfinished request heads of the whole process.
	heads := newHeadBudget(int64(cfg.Global.HTTPHeadBudget))
	for i := range cfg.Frontends {
		fc := &cfg.Frontends[i]
		if fc.Mode != config.ModeHTTP {
			continue
		}
		f, err := buildFrontend(fc, backends, log)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		f.heads = heads
		p.Frontends[i].Handler = f
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func buildBackend(bc *config.Backend, pb *proxy.Backend) (*Backend, config.Errors) {
	var errs config.Errors
	obj := fmt.Sprintf("backend %q", bc.Name)
	b := NewBackend(pb)
	b.TunnelTimeout = bc.Timeout.Tunnel.D()
	b.QueueTimeout = bc.Timeout.Queue.D()
	b.Cookie = bc.Cookie
	if bc.Balance == config.BalanceHash {
		kind, name, err := config.ParseHashKey(bc.HashKey)
		if err != nil {
			errs = append(errs, &config.Error{Pos: bc.Pos.Key("hash_key"), Object: obj, Msg: err.Error()})
		}
		b.Hash = HashKey{Kind: kind, Name: name}
	}
	var err error
	b.ReqRules, b.RespRules, err = headerRules(bc.Headers)
	if err != nil {
		errs = append(errs, &config.Error{Pos: bc.Pos.Key("header"), Object: obj, Msg: err.Error()})
	}
	if t := &bc.TLS; t.Enabled {
		tc, err := tlsconf.ClientConfig(t.CAFile, t.ServerName, t.InsecureSkipVerify)
		if err != nil {
			errs = append(errs, &config.Error{Pos: bc.Pos.Key("tls.ca_file"), Object: obj + ": tls", Msg: err.Error()})
		} else {
			// Each server's certificate is verified for the host it is
			// configured with (its name, not the address it resolved to).
			for j, s := range pb.Pool.Servers {
				b.servers[s].tls = tlsconf.ForServer(tc, bc.Servers[j].Address)
			}
		}
	}
	return b, errs
}

func buildFrontend(fc *config.Frontend, backends map[string]*Backend, log zerolog.Logger) (*Frontend, config.Errors) {
	var errs config.Errors
	obj := fmt.Sprintf("frontend %q", fc.Name)
	f := &Frontend{
		Name:             fc.Name,
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
		routes := make([]*rules.Route, 0, len(fc.Routes))
		targets := make([]int, 0, len(fc.Routes))
		for i := range fc.Routes {
			rc := &fc.Routes[i]
			r, err := rules.CompileRoute(config.RouteSpec(rc))
			if err != nil {
				errs = append(errs, &config.Error{Pos: rc.Pos, Object: obj + ": route #" + strconv.Itoa(i+1), Msg: err.Error()})
				continue
			}
			routes = append(routes, r)
			targets = append(targets, len(f.Targets))
			f.Targets = append(f.Targets, backends[rc.Backend])
		}
		f.Routes = rules.NewTable(routes, targets)
	}
	var err error
	f.ReqRules, f.RespRules, err = headerRules(fc.Headers)
	if err != nil {
		errs = append(errs, &config.Error{Pos: fc.Pos.Key("header"), Object: obj, Msg: err.Error()})
	}
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

// headerRules compiles header rules, split by direction.
func headerRules(hs []config.HeaderRule) (req, resp []*rules.HeaderRule, err error) {
	for i := range hs {
		r, e := rules.CompileHeaderRule(config.HeaderRuleSpec(&hs[i]))
		if e != nil {
			return nil, nil, fmt.Errorf("header rule #%d: %w", i+1, e)
		}
		if r.Response() {
			resp = append(resp, r)
		} else {
			req = append(req, r)
		}
	}
	return req, resp, nil
}
