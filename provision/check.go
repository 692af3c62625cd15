package provision

import (
	"context"
	"fmt"
	"net"
	"time"

	"lb/config"
	"lb/health"
	"lb/proxyproto"
)

// checkSettings resolves a server's configured check for the checker: the
// address to check looked up, the intervals left at 0 replaced by
// check.interval. object names the server in an error.
func checkSettings(ctx context.Context, r Resolver, sc *config.Server, object string, sendProxy int) (health.Settings, *config.Error) {
	cc := &sc.Check
	addr, err := resolve(ctx, r, checkAddress(sc.Address, cc))
	if err != nil {
		return health.Settings{}, &config.Error{Pos: sc.Pos.Key("check.address"), Object: object, Msg: "check: " + err.Error()}
	}
	iv := cc.Interval.D()
	orInterval := func(d config.Duration) time.Duration {
		if d > 0 {
			return d.D()
		}
		return iv
	}
	return health.Settings{
		Type: cc.Type, Interval: iv, FastInterval: orInterval(cc.FastInterval), DownInterval: orInterval(cc.DownInterval),
		Timeout: orInterval(cc.Timeout), Rise: cc.Rise, Fall: cc.Fall, Addr: addr,
		Method: cc.Method, Path: cc.Path, Host: cc.Host, Expect: cc.ExpectRanges(), Body: cc.Body,
		ErrorLimit: cc.ErrorLimit, OnError: cc.OnError, ProxyHeader: checkProxyHeader(sendProxy),
	}, nil
}

// checkAddress is the "host:port" a server's check connects to: the
// server's own, unless the check names another host or port.
func checkAddress(serverAddr string, c *config.Check) string {
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

// checkProxyHeader is the PROXY protocol header a check sends to a server
// that expects one (send_proxy): it speaks for no client, so v1 says
// UNKNOWN and v2 LOCAL, as HAProxy's check-send-proxy does.
func checkProxyHeader(version int) []byte {
	switch version {
	case 1:
		return proxyproto.AppendV1(nil, proxyproto.Header{Local: true})
	case 2:
		return proxyproto.AppendV2(nil, proxyproto.Header{Local: true})
	}
	return nil
}
