// Package fdlimit accounts for lb's file descriptors, as HAProxy does: what
// a configuration needs (Compute), what the process may open (Raise raises
// the soft RLIMIT_NOFILE to the hard limit), the maxconn of a frontend that
// sets none, derived from the limit, and the Budget of descriptors that the
// frontends' connections share while lb runs, so that it never accepts a
// connection it has no descriptor left to serve.
//
// It knows nothing of the configuration's format: package config describes
// a configuration as a Plan.
package fdlimit

import (
	"fmt"
	"strings"
)

// What lb sets aside besides its connections. README.md ("File
// descriptors") documents each number.
const (
	// Reserve is what lb holds for itself: stdin, stdout and stderr, the
	// Go runtime's epoll and eventfd descriptors and cgroup files, DNS
	// look-ups at start-up, the pid and state files while they are
	// written, the pipes and sockets of a reload, and systemd's notify
	// socket.
	Reserve = 32
	// SplicePipes is how many pipes lb plans for at once to move bytes
	// with splice(2) (TCP connections and HTTP tunnels), two descriptors
	// each. Pipes are taken for a transfer and given back, so this is a
	// small pool, not one per connection.
	SplicePipes = 16
	// AdminDescriptors is the admin socket's listener and up to three
	// commands at once.
	AdminDescriptors = 4
	// MaxLimit bounds the limit that default maxconn values are derived
	// from, like HAProxy's fd-hard-limit: some hosts and containers set a
	// hard limit of 2^30, which would give every frontend hundreds of
	// millions of connections that memory cannot hold. An explicit
	// maxconn is checked against the real limit.
	MaxLimit = 1 << 20
)

// Descriptors one client connection holds.
const (
	// TCPConn: the client's connection and the server's.
	TCPConn = 2
	// HTTPConn: the client's connection, when the server connections are
	// counted apart (Plan.ServerConns): every server of its backends has
	// a maxconn.
	HTTPConn = 1
	// HTTPConnWithServer: the client's connection and one server
	// connection, for an HTTP frontend that reaches a server without
	// maxconn. An HTTP/1.1 client has one request in flight at a time, and
	// lb dials a server only when no idle connection to it is left, so
	// there are no more server connections than client connections.
	HTTPConnWithServer = 2
)

// Frontend is what one frontend needs.
type Frontend struct {
	// Name is the frontend's name, for messages.
	Name string
	// Listeners is the number of addresses it binds.
	Listeners int
	// MaxConn is its configured maxconn; 0 asks for a default derived
	// from the limit.
	MaxConn int
	// PerConn is the descriptors one of its connections holds: TCPConn,
	// HTTPConn or HTTPConnWithServer.
	PerConn int
}

// Plan is what a configuration holds open, as Compute needs it.
type Plan struct {
	Frontends []Frontend
	// ServerConns is the server connections counted apart from the
	// frontends' connections: the sum of the maxconn of every server of
	// the HTTP backends whose servers all have one (lb never holds more
	// connections to a server than its maxconn, idle ones included).
	ServerConns int
	// Checks is the number of servers with an active health check: one
	// connection each while a check is in flight.
	Checks int
	// AdminSocket says whether global.admin_socket is set.
	AdminSocket bool
	// LogFile says whether global.log_file is set.
	LogFile bool
}

// Result is a Plan checked against a limit.
type Result struct {
	// Limit is the soft limit the plan was made for.
	Limit int
	// Fixed is the descriptors that do not depend on the connections:
	// Reserve, the splice pipes, listeners, checks, server connections
	// counted apart, the admin socket and the log file.
	Fixed int
	// Frontends are the frontends of the plan, in order, with the maxconn
	// they get.
	Frontends []FrontendResult
	// Need is what the configuration needs with every frontend full:
	// Fixed plus each frontend's maxconn times its PerConn.
	Need int
	// Budget is the descriptors that the connections of every frontend
	// may hold at once: Limit minus Fixed, but at least one connection's
	// worth. lb does not accept a connection that would go beyond it.
	Budget int
}

// FrontendResult is the maxconn a frontend gets.
type FrontendResult struct {
	Name    string
	MaxConn int
	// Derived says that MaxConn was derived from the limit: the frontend
	// set none.
	Derived bool
	PerConn int
}

// Compute works out what p needs under a soft limit of limit descriptors,
// and gives each frontend that sets no maxconn a default derived from the
// limit, as HAProxy's global maxconn: every connection the limit leaves
// after the fixed part and the frontends that set a maxconn,
//
//	rest    = min(limit, MaxLimit) - Fixed - Σ maxconn × PerConn of the frontends that set one
//	maxconn = rest / PerConn of the frontend
//
// The frontends without a maxconn share rest first come, first served (the
// Budget enforces it: lb accepts no connection it has no descriptors
// for), so one busy frontend may take it all while the others are quiet.
// When the frontends that set a maxconn already take more than the limit
// (rest < PerConn), the others may take what the limit leaves after the
// fixed part. Every maxconn is at least 1.
func Compute(p Plan, limit int) Result {
	r := Result{Limit: limit, Fixed: p.fixed()}
	planned := min(limit, MaxLimit)
	rest, widest := planned-r.Fixed, 1
	for _, f := range p.Frontends {
		per := max(f.PerConn, 1)
		widest = max(widest, per)
		if f.MaxConn > 0 {
			rest -= f.MaxConn * per
		}
	}
	shared := rest
	if shared < widest {
		shared = planned - r.Fixed
	}
	r.Need = r.Fixed
	sharing := 0 // what the frontends without a maxconn need at most, together
	for _, f := range p.Frontends {
		fr := FrontendResult{Name: f.Name, MaxConn: f.MaxConn, PerConn: max(f.PerConn, 1)}
		if fr.MaxConn <= 0 {
			fr.MaxConn, fr.Derived = max(shared/fr.PerConn, 1), true
			sharing = max(sharing, fr.MaxConn*fr.PerConn)
		} else {
			r.Need += fr.MaxConn * fr.PerConn
		}
		r.Frontends = append(r.Frontends, fr)
	}
	r.Need += sharing
	r.Budget = max(limit-r.Fixed, widest)
	return r
}

// fixed is what p needs whatever its connections.
func (p Plan) fixed() int {
	n := Reserve + 2*SplicePipes + p.ServerConns + p.Checks
	for _, f := range p.Frontends {
		n += f.Listeners
	}
	if p.AdminSocket {
		n += AdminDescriptors
	}
	if p.LogFile {
		n++
	}
	return n
}

// Covered reports whether the limit covers what the configuration needs.
func (r Result) Covered() bool { return r.Need <= r.Limit }

// Warning says, when the limit does not cover what the configuration needs,
// by how much, what lb does about it and what to set; "" when it does. lb
// -c prints it.
func (r Result) Warning() string {
	if r.Covered() {
		return ""
	}
	var parts []string
	conns := ""
	for i, f := range r.Frontends {
		if i == 0 {
			conns = fmt.Sprintf(" (%d connections)", r.Budget/f.PerConn)
		} else if f.PerConn != r.Frontends[0].PerConn {
			conns = ""
		}
		derived := ""
		if f.Derived {
			derived = " (derived)"
		}
		parts = append(parts, fmt.Sprintf("frontend %q: maxconn %d%s x %d", f.Name, f.MaxConn, derived, f.PerConn))
	}
	return fmt.Sprintf("the file descriptor limit (%d) is below what the configuration needs (%d = %s, + %d for listeners, "+
		"checks, files and lb's reserve): once its connections hold %d descriptors%s, lb stops accepting and new "+
		"connections wait in the kernel's accept queue; raise the limit to %d or more (%s), or lower maxconn",
		r.Limit, r.Need, strings.Join(parts, " + "), r.Fixed, r.Budget, conns, r.Need, r.Fix())
}

// Fix says how to give lb the descriptors the configuration needs, in each
// way lb may be started.
func (r Result) Fix() string {
	return fmt.Sprintf("LimitNOFILE=%d in the systemd unit, \"ulimit -n %d\" in the init script or shell that starts lb, "+
		"\"docker run --ulimit nofile=%d:%d\" for a container", r.Need, r.Need, r.Need, r.Need)
}
