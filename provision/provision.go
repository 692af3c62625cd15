// Package provision turns a validated configuration into the objects that
// serve it, once, before the generation binds anything: backends with
// their pools and health checks, frontends each with its connection
// handler (a proxy.TCP in TCP mode, an httpproxy.Frontend in HTTP mode),
// with the routes, header rules, hash keys and expect lists that
// config.Validate compiled, server names resolved, certificates read. Objects refer to each other by
// name, as the configuration does.
//
// It is where package config meets the serving path: proxy, httpproxy,
// health and balancer get runtime values and never import config. Its
// errors are config.Errors, which name the file, the line and the setting.
package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
	"lb/config"
	"lb/health"
	"lb/httpproxy"
	"lb/proxy"
	"lb/tlsconf"
)

// Resolver looks up server host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the look-up of one server host name at start-up.
const resolveTimeout = 5 * time.Second

// Build turns a validated configuration into frontends and backends ready
// to serve. Server host names are resolved once, here, with r (nil means
// net.DefaultResolver); certificate files are read here, so a new
// generation picks up new ones. Errors are config.Errors that name the
// setting: first those of the servers' addresses (after which Build looks
// no further), then those of HTTP backends and frontends.
func Build(ctx context.Context, cfg *config.Config, r Resolver, log zerolog.Logger) (*proxy.Proxy, error) {
	if !cfg.Validated() {
		return nil, errors.New("provision: the configuration was not validated (config.Parse or Config.Validate)")
	}
	if r == nil {
		r = net.DefaultResolver
	}
	p := &proxy.Proxy{}
	var tracks map[string]proxy.Track
	p.Tables, tracks = tables(cfg)
	backends := make(map[string]*proxy.Backend, len(cfg.Backends))
	var errs config.Errors
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		b, checks, err := tcpBackend(ctx, r, bc)
		errs = append(errs, err...)
		if b == nil {
			continue
		}
		b.SendProxy = sendProxy(bc.SendProxy)
		if bc.Stick != "" && bc.Mode == config.ModeTCP {
			b.Stick = tracks[bc.Stick].Table
		}
		p.Backends = append(p.Backends, b)
		p.Checks = append(p.Checks, checks...)
		backends[bc.Name] = b
	}
	if len(errs) > 0 {
		return nil, errs
	}
	httpBackends := map[string]*httpproxy.Backend{}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		if bc.Mode != config.ModeHTTP {
			continue
		}
		// A backend with errors is still known to the frontends, so that
		// they do not report it missing on top of its own errors.
		b, err := httpBackend(bc, backends[bc.Name])
		errs = append(errs, err...)
		if bc.Stick != "" {
			b.Stick = tracks[bc.Stick]
		}
		httpBackends[bc.Name] = b
	}
	// The backends of use_backend rules, by their index in the
	// configuration (nil where the mode differs).
	byIndex := make([]*proxy.Backend, len(cfg.Backends))
	httpByIndex := make([]*httpproxy.Backend, len(cfg.Backends))
	for i := range cfg.Backends {
		byIndex[i], httpByIndex[i] = backends[cfg.Backends[i].Name], httpBackends[cfg.Backends[i].Name]
	}
	var httpFrontends []*httpproxy.Frontend
	for i := range cfg.Frontends {
		fc := &cfg.Frontends[i]
		f := &proxy.Frontend{
			Name:    fc.Name,
			Binds:   fc.Bind,
			Backend: backends[fc.DefaultBackend],
			MaxConn: fc.MaxConn,
			Log:     log,
		}
		f.Policy = connPolicy(fc, tracks, byIndex)
		if fc.Mode == config.ModeHTTP {
			h, err := httpFrontend(fc, httpBackends, log)
			errs = append(errs, err...)
			h.Policy = httpPolicy(fc, tracks, httpByIndex)
			h.Conditional = conditional(fc, cfg)
			f.Handler = h
			h.Counts, h.Active = &f.Counts, f.Active
			httpFrontends = append(httpFrontends, h)
			if h.TLS != nil {
				p.TLS = append(p.TLS, h.TLS)
			}
		} else {
			f.Handler = &proxy.TCP{Name: fc.Name, Backend: f.Backend, ClientTimeout: fc.Timeout.Client.D(), Log: log}
		}
		p.Frontends = append(p.Frontends, f)
	}
	if path := cfg.Global.TicketKeysFile; path != "" {
		keys, err := tlsconf.ReadTicketKeysFile(path)
		if err != nil {
			errs = append(errs, &config.Error{Pos: cfg.GlobalPos("ticket_keys_file"), Object: "global", Msg: "ticket_keys_file: " + err.Error()})
		}
		p.TicketKeys = keys
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// One budget for the unfinished request heads of the whole process.
	httpproxy.ShareHeadBudget(int64(cfg.Global.HTTPHeadBudget), httpFrontends...)
	return p, nil
}

// tcpBackend makes a backend's pool of servers, their addresses resolved,
// and their health checks. It returns a nil backend when a server's
// address cannot be resolved or the pool cannot be made.
func tcpBackend(ctx context.Context, r Resolver, bc *config.Backend) (*proxy.Backend, []proxy.Check, config.Errors) {
	var errs config.Errors
	servers := make([]*balancer.Server, 0, len(bc.Servers))
	type pending struct {
		srv      *balancer.Server
		settings health.Settings
	}
	var checks []pending
	for j := range bc.Servers {
		sc := &bc.Servers[j]
		object := fmt.Sprintf("backend %q: server %q", bc.Name, sc.Name)
		addr, err := resolve(ctx, r, sc.Address)
		if err != nil {
			errs = append(errs, &config.Error{Pos: sc.Pos.Key("address"), Object: object, Msg: err.Error()})
			continue
		}
		srv := balancer.NewServer(sc.Name, addr, sc.Weight, int64(sc.MaxConn), sc.Backup)
		srv.SlowStart = bc.SlowStart.D()
		servers = append(servers, srv)
		if sc.Check.Type == config.CheckNone {
			continue
		}
		settings, cerr := checkSettings(ctx, r, sc, object, sendProxy(bc.SendProxy))
		if cerr != nil {
			errs = append(errs, cerr)
			continue
		}
		if bc.Proto == config.ProtoH2 {
			// The check speaks HTTP/2 as the requests do.
			settings.HTTP2 = true
			if t := &bc.TLS; t.Enabled {
				// A bad CA file is reported by httpBackend.
				if tc, err := tlsconf.ClientConfig(t.CAFile, t.ServerName, t.InsecureSkipVerify); err == nil {
					settings.TLS = tlsconf.ForServer(tc, sc.Address)
				}
			}
		}
		checks = append(checks, pending{srv, settings})
	}
	pool, err := balancer.NewPool(bc.Name, bc.Balance, servers)
	if err != nil {
		errs = append(errs, &config.Error{Pos: bc.Pos.Key("balance"), Msg: err.Error()})
		return nil, nil, errs
	}
	b := &proxy.Backend{
		Pool:           pool,
		Retries:        bc.Retries,
		ConnectTimeout: bc.Timeout.Connect.D(),
		ServerTimeout:  bc.Timeout.Server.D(),
		QueueTimeout:   bc.Timeout.Queue.D(),
	}
	out := make([]proxy.Check, len(checks))
	for i, c := range checks {
		out[i] = proxy.Check{Backend: b, Server: c.srv, Settings: c.settings}
	}
	return b, out, errs
}

// resolve turns "host:port" into "ip:port", looking the host up when it is a
// name. An IPv4 address is preferred when a name has both kinds.
func resolve(ctx context.Context, r Resolver, hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("bad address %q: %w", hostport, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return hostport, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("cannot resolve %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("cannot resolve %q: no addresses", host)
	}
	pick := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			pick = a.Unmap()
			break
		}
	}
	return net.JoinHostPort(pick.String(), port), nil
}
