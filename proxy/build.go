package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
	"lb/config"
)

// Resolver looks up server host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the look-up of one server host name at start-up.
const resolveTimeout = 5 * time.Second

// Proxy is every frontend and backend of one configuration.
type Proxy struct {
	Frontends []*Frontend
	Backends  []*Backend
	// Checks are the health checks of the servers that have one.
	Checks []Check
}

// Check is one server's health check as configured, with the address to
// check resolved.
type Check struct {
	Backend *Backend
	Server  *balancer.Server
	Config  config.Check
	// Addr is the "ip:port" the check connects to.
	Addr string
}

// Build turns a validated configuration into frontends and backends ready to
// serve. Server host names are resolved once, here, with r (nil means
// net.DefaultResolver). Errors are config.Errors that name the server.
func Build(ctx context.Context, cfg *config.Config, r Resolver, log zerolog.Logger) (*Proxy, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	p := &Proxy{}
	byName := make(map[string]*Backend, len(cfg.Backends))
	var errs config.Errors
	type pending struct {
		srv  *balancer.Server
		conf config.Check
		addr string
	}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		servers := make([]*balancer.Server, 0, len(bc.Servers))
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
			checkAddr, err := resolve(ctx, r, checkAddress(sc.Address, sc.Check))
			if err != nil {
				errs = append(errs, &config.Error{Pos: sc.Pos.Key("check.address"), Object: object, Msg: "check: " + err.Error()})
				continue
			}
			checks = append(checks, pending{srv, sc.Check, checkAddr})
		}
		pool, err := balancer.NewPool(bc.Name, bc.Balance, servers)
		if err != nil {
			errs = append(errs, &config.Error{Pos: bc.Pos.Key("balance"), Msg: err.Error()})
			continue
		}
		b := &Backend{
			Pool:           pool,
			Retries:        bc.Retries,
			ConnectTimeout: bc.Timeout.Connect.D(),
			ServerTimeout:  bc.Timeout.Server.D(),
			QueueTimeout:   bc.Timeout.Queue.D(),
		}
		p.Backends = append(p.Backends, b)
		byName[bc.Name] = b
		for _, c := range checks {
			p.Checks = append(p.Checks, Check{Backend: b, Server: c.srv, Config: c.conf, Addr: c.addr})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for i := range cfg.Frontends {
		fc := &cfg.Frontends[i]
		p.Frontends = append(p.Frontends, &Frontend{
			Name:          fc.Name,
			Binds:         fc.Bind,
			Backend:       byName[fc.DefaultBackend],
			MaxConn:       fc.MaxConn,
			ClientTimeout: fc.Timeout.Client.D(),
			Log:           log,
		})
	}
	return p, nil
}

// checkAddress is the "host:port" a server's check connects to: the
// server's own, unless the check names another host or port.
func checkAddress(serverAddr string, c config.Check) string {
	host, port, err := net.SplitHostPort(serverAddr)
	if err != nil {
		return serverAddr
	}
	if c.Address != "" {
		host = c.Address
	}
	if c.Port != 0 {
		port = fmt.Sprint(c.Port)
	}
	return net.JoinHostPort(host, port)
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
