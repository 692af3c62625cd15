// Package health checks backend servers and marks them up or down.
//
// Active checks connect to each server (TCP) or send it one request (HTTP)
// on a timer; a server goes down after Fall failures in a row and comes back
// after Rise passes in a row. Passive checks watch real traffic: the data
// path reports every connection attempt to ObserveConn, and a run of errors
// either marks the server down at once or speeds its checks up.
//
// A Checker runs one goroutine per checked server, one that applies passive
// check triggers and one that ramps the weights of servers in slow start.
// Settings are fixed when the Checker is made; the state that changes
// (up or down, progress towards the next change) lives in each target,
// behind a mutex, apart from them.
package health

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
)

// Check types.
const (
	TypeTCP  = "tcp"
	TypeHTTP = "http"
)

// Passive check actions.
const (
	OnErrorMarkDown     = "mark-down"
	OnErrorFastInterval = "fast-interval"
)

// Settings are one server's resolved check settings.
type Settings struct {
	// Type is "tcp" (connect, then close) or "http" (one request).
	Type string
	// Interval is the time between checks of a server that is up and
	// steady; FastInterval is used while it changes state (and after a
	// passive "fast-interval" trigger); DownInterval while it is down and
	// steady. Timeout bounds one check. All are > 0; New replaces a value
	// that is not with Interval (or 2s for Interval itself).
	Interval, FastInterval, DownInterval, Timeout time.Duration
	// Rise is how many checks in a row must pass to bring a server up;
	// Fall how many must fail to take it down. Both >= 1.
	Rise, Fall int
	// Addr is the "ip:port" to check; it may differ from the server's
	// traffic address.
	Addr string

	// Method, Path and Host make the HTTP check's request. An empty Method
	// means GET, an empty Path "/", an empty Host Addr's host.
	Method, Path, Host string
	// Expect lists inclusive ranges of passing statuses, such as
	// {{200, 299}, {300, 399}}; empty means 200-399.
	Expect [][2]int
	// Body is a substring the first 64 KiB of the response body must
	// contain; empty means any body (which is then not read).
	Body string

	// HTTP2 makes the HTTP check speak HTTP/2, as the requests to a
	// backend with proto = "h2" do: over TLS with TLS (h2 by ALPN), or in
	// cleartext with prior knowledge when TLS is nil.
	HTTP2 bool
	TLS   *tls.Config

	// ProxyHeader, when set, is sent first on every check connection: the
	// PROXY protocol header of a backend whose servers expect one (v1
	// "PROXY UNKNOWN", v2 LOCAL: a connection of lb's own).
	ProxyHeader []byte

	// ErrorLimit is how many traffic errors in a row trigger OnError; 0
	// turns passive checks off.
	ErrorLimit int
	// OnError is "mark-down" (take the server down at once) or
	// "fast-interval" (check it at FastInterval until its checks settle).
	OnError string
}

// State is a server's health as checks left it: up or down, and how many
// consecutive checks count toward the next change (failures while up,
// successes while down).
type State struct {
	Up    bool
	Count int
}

// Target is one server to check.
type Target struct {
	// Backend names the server's backend, for logs and snapshots.
	Backend string
	// Pool is the server's pool, refreshed when the server changes state.
	Pool   *balancer.Pool
	Server *balancer.Server
	// Settings are the server's check settings.
	Settings Settings
	// Start is the state to start from, taken over from the previous lb
	// process; New applies it to the Server. A server nobody knew about
	// should start as State{Up: true} and go through ColdStart, which
	// marks it down if its first check fails: a server that comes up from
	// down starts its slow start, which a cold start must not do. (The
	// zero State is down.)
	Start State
	// Known says that Start was taken over from the previous lb process:
	// ColdStart leaves such a target alone.
	Known bool
	// Changed is when the state last changed, as the previous lb process
	// saw it; zero when unknown.
	Changed time.Time
}

// Checker checks servers: actively, on a timer, from Run; once, from
// ColdStart; and passively, from what ObserveConn hears. One lb process has
// one. Its methods are safe for concurrent use, but Run and ColdStart are
// meant to run one at a time.
type Checker struct {
	log      zerolog.Logger
	targets  []*target
	byServer map[*balancer.Server]*target // read-only after New

	// events carries passive check triggers to watchPassive; it has room
	// for one per target, and each target has at most one in flight.
	events chan passiveEvent

	rampWake  chan struct{} // wakes ramp when rampPools grows
	rampMu    sync.Mutex
	rampPools map[*balancer.Pool]struct{} // pools with a server in slow start
}

// rampEvery is how often pools with a server in slow start are refreshed.
const rampEvery = 200 * time.Millisecond

// New returns a Checker for targets and applies each target's Start state
// to its server (refreshing the pools that changed). Problems with the
// settings are logged here: with a bad path or an unknown type every check
// of that target fails with the reason; with an unknown OnError passive
// checks are off.
func New(targets []Target, log zerolog.Logger) *Checker {
	c := &Checker{
		log:       log,
		byServer:  make(map[*balancer.Server]*target, len(targets)),
		events:    make(chan passiveEvent, max(len(targets), 1)),
		rampWake:  make(chan struct{}, 1),
		rampPools: map[*balancer.Pool]struct{}{},
	}
	changed := map[*balancer.Pool]bool{}
	for _, tg := range targets {
		t := newTarget(tg)
		if t.setupErr != nil {
			log.Error().Str("backend", t.backend).Str("server", t.server.Name).Err(t.setupErr).
				Msgf("server %s/%s: its health check cannot run and will fail: %v", t.backend, t.server.Name, t.setupErr)
		}
		if t.passiveErr != nil {
			log.Error().Str("backend", t.backend).Str("server", t.server.Name).Err(t.passiveErr).
				Msgf("server %s/%s: passive checks are off: %v", t.backend, t.server.Name, t.passiveErr)
		}
		c.targets = append(c.targets, t)
		c.byServer[t.server] = t
		if t.server.SetUp(t.state.Up) && t.pool != nil {
			changed[t.pool] = true
		}
	}
	for p := range changed {
		c.refresh(p)
	}
	return c
}

// ColdStart checks every target once, concurrently, bounded by ctx: a pass
// sets the server up, a failure down (at once, not after Fall failures:
// this is lb's first look at the servers, so a cold start never sends
// traffic to a server already known dead). Known targets, targets in
// maintenance, and targets whose check ctx cut short, are left as they
// are. It returns when every check is done, which is soon after ctx ends.
func (c *Checker) ColdStart(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range c.targets {
		if t.known || t.server.Admin() == balancer.AdminMaint {
			continue
		}
		wg.Go(func() { c.coldCheck(ctx, t) })
	}
	wg.Wait()
}

// coldCheck is ColdStart's goroutine for one target.
func (c *Checker) coldCheck(ctx context.Context, t *target) {
	err := t.probe(ctx)
	if err != nil && ended(ctx) {
		return // cut short: we learnt nothing
	}
	c.settle(t, err)
}

// ended reports whether ctx is done or past its deadline: a check bounded by
// ctx's deadline may fail a moment before ctx reports that it is done.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// Run checks every target until ctx is done, in one goroutine per target,
// and returns once they have all stopped. The first check of target i of n
// comes i*Interval/n after the start, so that the checks spread over the
// first interval instead of all going out at once.
func (c *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.ramp(ctx) })
	wg.Go(func() { c.watchPassive(ctx) })
	n := time.Duration(len(c.targets))
	for i, t := range c.targets {
		first := time.Duration(i) * t.Interval / n
		wg.Go(func() { c.loop(ctx, t, first) })
	}
	wg.Wait()
}

// Snapshot is one target's state, for handing over to the next lb process
// and for `show servers state`.
type Snapshot struct {
	Backend, Server string
	State           State
	// Checks is the progress toward the next change, such as "2/3" (two of
	// the three failures that take the server down), or "" when there is
	// none.
	Checks string
	// LastReason says why the server is down, or why its last check
	// failed while it is up; "" when it is up and its last check passed.
	LastReason string
	// LastCheck is when the last active check began (zero: none yet),
	// CheckDuration how long it took; Changed is when the state last
	// changed in this process (zero: it has not).
	LastCheck     time.Time
	CheckDuration time.Duration
	Changed       time.Time
}

// State returns the state of the target of server s, and false when s has
// no health check.
func (c *Checker) State(s *balancer.Server) (Snapshot, bool) {
	t, ok := c.byServer[s]
	if !ok {
		return Snapshot{}, false
	}
	return t.snapshot(), true
}

// states returns every target's current state, in the order of the targets
// given to New.
func (c *Checker) states() []Snapshot {
	out := make([]Snapshot, 0, len(c.targets))
	for _, t := range c.targets {
		out = append(out, t.snapshot())
	}
	return out
}
