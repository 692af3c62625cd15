package provision

import (
	"lb/config"
	"lb/httpproxy"
	"lb/proxy"
	"lb/rules"
	"lb/table"
)

// keyKinds are the table key kinds of package config, as proxy knows them.
var keyKinds = map[string]proxy.KeyKind{
	config.KeySrc:      proxy.KeySrc,
	config.KeyHeader:   proxy.KeyHeader,
	config.KeyCookie:   proxy.KeyCookie,
	config.KeyURLParam: proxy.KeyURLParam,
	config.KeyPath:     proxy.KeyPath,
}

// tables makes the stick tables, empty, and returns them by name with
// their keys.
func tables(cfg *config.Config) ([]*table.Table, map[string]proxy.Track) {
	list := make([]*table.Table, 0, len(cfg.Tables))
	byName := make(map[string]proxy.Track, len(cfg.Tables))
	for i := range cfg.Tables {
		tc := &cfg.Tables[i]
		t := table.New(tc.Spec())
		kind, name := tc.KeyParts()
		list = append(list, t)
		byName[tc.Name] = proxy.Track{Table: t, Kind: keyKinds[kind], Name: name}
	}
	return list, byName
}

// sendProxy is a backend's send_proxy as a version number.
func sendProxy(v string) int {
	switch v {
	case config.ProxyV1:
		return 1
	case config.ProxyV2:
		return 2
	}
	return 0
}

// connPolicy makes a frontend's policy at the connection, or returns nil
// when it has none: no PROXY protocol, no table, no connection rule.
func connPolicy(fc *config.Frontend, tracks map[string]proxy.Track, backends []*proxy.Backend) *proxy.Policy {
	p := &proxy.Policy{Trusted: fc.TrustedPrefixes(), Backends: backends}
	for _, name := range fc.Track {
		p.Tracks = append(p.Tracks, tracks[name])
	}
	for i := range fc.Rules {
		if r := fc.Rules[i].Rule(); r.Phase == rules.LevelConnection {
			p.Rules = append(p.Rules, r)
			p.PeekSNI = p.PeekSNI || r.When.UsesSNI()
		}
	}
	if len(p.Trusted) == 0 && len(p.Tracks) == 0 && len(p.Rules) == 0 {
		return nil
	}
	return p
}

// httpPolicy makes an HTTP frontend's policy at the request and the
// response, or returns nil when it has none.
func httpPolicy(fc *config.Frontend, tracks map[string]proxy.Track, backends []*httpproxy.Backend) *httpproxy.Policy {
	p := &httpproxy.Policy{Backends: backends}
	for _, name := range fc.Track {
		p.Tracks = append(p.Tracks, tracks[name])
	}
	for i := range fc.Rules {
		switch r := fc.Rules[i].Rule(); r.Phase {
		case rules.LevelRequest:
			p.ReqRules = append(p.ReqRules, r)
		case rules.LevelResponse:
			p.RespRules = append(p.RespRules, r)
		}
	}
	if len(p.Tracks) == 0 && len(p.ReqRules) == 0 && len(p.RespRules) == 0 {
		return nil
	}
	return p
}

// conditional reports whether a frontend's routes or header rules, or the
// header rules of its backends, have when expressions.
func conditional(fc *config.Frontend, cfg *config.Config) bool {
	for i := range fc.Routes {
		if fc.Routes[i].When != "" {
			return true
		}
	}
	for i := range fc.Headers {
		if fc.Headers[i].When != "" {
			return true
		}
	}
	for i := range cfg.Backends {
		for j := range cfg.Backends[i].Headers {
			if cfg.Backends[i].Headers[j].When != "" {
				return true
			}
		}
	}
	return false
}
