package config

import "lb/fdlimit"

// MaxMaxConn is the largest maxconn of a frontend: Linux gives a process at
// most 2^31 file descriptors (fs.nr_open), and a connection holds one or
// two.
const MaxMaxConn = 1 << 30

// FDPlan describes what the configuration holds open, for fdlimit.Compute:
// its frontends (a maxconn of 0 asks for a default derived from the file
// descriptor limit), their listeners, the server connections of HTTP
// backends, the health checks, the admin socket and the log file.
//
// A TCP connection holds two descriptors. An HTTP connection holds one, plus
// one for a server when the frontend reaches a backend with a server that
// has no maxconn; the server connections of backends whose every server has
// a maxconn are counted apart, as the sum of those maxconn.
func (c *Config) FDPlan() fdlimit.Plan {
	bounded := make(map[string]int, len(c.Backends)) // backend: Σ server maxconn, or -1 for no bound
	p := fdlimit.Plan{AdminSocket: c.Global.AdminSocket != "", LogFile: c.Global.LogFile != ""}
	for i := range c.Backends {
		b := &c.Backends[i]
		sum := 0
		for j := range b.Servers {
			s := &b.Servers[j]
			if s.Check.Type != CheckNone {
				p.Checks++
			}
			if s.MaxConn <= 0 || sum < 0 {
				sum = -1
				continue
			}
			sum += s.MaxConn
		}
		bounded[b.Name] = sum
	}
	counted := map[string]bool{}
	for i := range c.Frontends {
		f := &c.Frontends[i]
		ff := fdlimit.Frontend{Name: f.Name, Listeners: len(f.Bind), MaxConn: f.MaxConn, PerConn: fdlimit.TCPConn}
		if f.Mode == ModeHTTP {
			ff.PerConn = fdlimit.HTTPConn
			for _, name := range f.backends() {
				switch n, ok := bounded[name]; {
				case !ok:
				case n < 0:
					ff.PerConn = fdlimit.HTTPConnWithServer
				case !counted[name]:
					counted[name] = true
					p.ServerConns += n
				}
			}
		}
		p.Frontends = append(p.Frontends, ff)
	}
	return p
}

// backends returns the names of the backends f sends connections or
// requests to: its default backend and its routes'.
func (f *Frontend) backends() []string {
	names := []string{f.DefaultBackend}
	for _, r := range f.Routes {
		names = append(names, r.Backend)
	}
	return names
}
