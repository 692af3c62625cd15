package health

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"lb/balancer"
)

// defaultInterval replaces an Interval out of range: HAProxy's default.
const defaultInterval = 2 * time.Second

// target is one checked server: its fixed settings, and its check state.
type target struct {
	Settings
	backend string
	pool    *balancer.Pool
	server  *balancer.Server
	known   bool // Start was taken over: ColdStart leaves it alone

	// Fixed when made.
	request    []byte        // the HTTP check's request, serialized
	setupErr   *checkError   // set when the check cannot run at all
	passiveErr error         // set when passive checks are off for bad settings
	wake       chan struct{} // asks loop to reconsider its next check time

	// Passive check state, touched by the data path.
	errs    atomic.Int64 // connection errors in a row
	pending atomic.Bool  // a passive event is queued for watchPassive

	mu     sync.Mutex
	state  State
	fast   bool      // a passive trigger asked for FastInterval
	fastAt time.Time // when it did
	reason string    // see Snapshot.LastReason
	// lastCheck and took are when the last active check began and how
	// long it took; changed is when the state last changed (zero: not
	// since this process started).
	lastCheck time.Time
	took      time.Duration
	changed   time.Time
}

// newTarget makes a target, bringing settings out of range back in.
func newTarget(tg Target) *target {
	s := &tg.Settings
	if s.Interval <= 0 {
		s.Interval = defaultInterval
	}
	for _, d := range []*time.Duration{&s.FastInterval, &s.DownInterval, &s.Timeout} {
		if *d <= 0 {
			*d = s.Interval
		}
	}
	s.Rise, s.Fall = max(s.Rise, 1), max(s.Fall, 1)
	t := &target{Settings: *s, backend: tg.Backend, pool: tg.Pool, server: tg.Server, known: tg.Known, wake: make(chan struct{}, 1),
		changed: tg.Changed}
	t.state = tg.Start
	limit := t.Fall
	if !t.state.Up {
		limit = t.Rise
	}
	t.state.Count = min(max(t.state.Count, 0), limit-1)
	switch s.Type {
	case TypeTCP:
	case TypeHTTP:
		req, err := buildRequest(s)
		if err != nil {
			t.setupErr = &checkError{reason: "bad check settings: " + err.Error(), err: err}
		}
		t.request = req
	default:
		err := fmt.Errorf("unknown check type %q (want %q or %q)", s.Type, TypeTCP, TypeHTTP)
		t.setupErr = &checkError{reason: "bad check settings: " + err.Error(), err: err}
	}
	if s.ErrorLimit > 0 && s.OnError != OnErrorMarkDown && s.OnError != OnErrorFastInterval {
		t.passiveErr = fmt.Errorf("unknown on_error action %q (want %q or %q)", s.OnError, OnErrorMarkDown, OnErrorFastInterval)
		t.ErrorLimit = 0
	}
	return t
}

// name is the server as logs name it: "backend/server".
func (t *target) name() string { return t.backend + "/" + t.server.Name }

// loop is Run's goroutine for one target: it checks at the interval the
// state calls for, until ctx is done. Servers in maintenance are not
// checked, but the loop keeps its pace.
func (c *Checker) loop(ctx context.Context, t *target, first time.Duration) {
	timer := time.NewTimer(first)
	defer timer.Stop()
	next := time.Now().Add(first)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
			// A passive trigger changed the state: check sooner if it
			// calls for a shorter interval.
			if d := t.interval(); time.Until(next) > d {
				next = time.Now().Add(d)
				timer.Reset(d)
			}
			continue
		case <-timer.C:
		}
		if t.server.Admin() != balancer.AdminMaint {
			began := time.Now()
			err := t.probe(ctx)
			if ended(ctx) {
				return // cut short by the end of Run
			}
			c.record(t, err, began)
		}
		d := t.interval()
		next = time.Now().Add(d)
		timer.Reset(d)
	}
}

// interval is the time to the next check, given the state.
func (t *target) interval() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.fast || t.state.Count > 0:
		return t.FastInterval
	case t.state.Up:
		return t.Interval
	default:
		return t.DownInterval
	}
}

// change is a state change to report once the target's lock is released.
type change struct {
	up     bool
	reason string
	checks string // "3/3"; "" for passive mark-downs
	msg    string
	errs   int64 // passive mark-downs: the errors in a row
}

// record applies the outcome (nil: it passed) of an active check that
// began at began.
func (c *Checker) record(t *target, err error, began time.Time) {
	t.mu.Lock()
	t.lastCheck, t.took = began, time.Since(began)
	var ch *change
	st := &t.state
	switch {
	case st.Up && err == nil:
		st.Count, t.reason = 0, ""
		if t.fast && began.After(t.fastAt) {
			t.fast = false // checks settled since the passive trigger
		}
	case st.Up:
		st.Count++
		t.reason = reasonOf(err)
		if st.Count >= t.Fall {
			ch = &change{up: false, reason: t.reason, checks: fmt.Sprintf("%d/%d", t.Fall, t.Fall)}
			ch.msg = fmt.Sprintf("server %s is DOWN: %s, %s checks failed", t.name(), ch.reason, ch.checks)
		}
	case err == nil:
		st.Count++
		if st.Count >= t.Rise {
			ch = &change{up: true, reason: "checks passed", checks: fmt.Sprintf("%d/%d", t.Rise, t.Rise)}
			ch.msg = fmt.Sprintf("server %s is UP: %s checks passed", t.name(), ch.checks)
		}
	default:
		st.Count = 0
		t.reason = reasonOf(err)
	}
	if ch != nil {
		t.flip(ch)
	}
	t.mu.Unlock()
	if err != nil {
		c.log.Debug().Str("backend", t.backend).Str("server", t.server.Name).Str("reason", reasonOf(err)).
			Err(err).Msg("health check failed")
	}
	c.report(t, ch)
}

// settle applies a cold start check's outcome: it decides the state alone.
func (c *Checker) settle(t *target, err error) {
	t.mu.Lock()
	var ch *change
	switch {
	case err == nil && !t.state.Up:
		ch = &change{up: true, reason: "first check passed", checks: "1/1"}
		ch.msg = fmt.Sprintf("server %s is UP: first check passed", t.name())
	case err != nil && t.state.Up:
		ch = &change{up: false, reason: reasonOf(err), checks: "1/1"}
		ch.msg = fmt.Sprintf("server %s is DOWN: %s, first check failed", t.name(), ch.reason)
	}
	t.state.Count = 0
	if err == nil {
		t.reason = ""
	} else {
		t.reason = reasonOf(err)
	}
	if ch != nil {
		t.flip(ch)
	}
	t.mu.Unlock()
	c.report(t, ch)
}

// markDown takes a server down after n traffic errors in a row, the last
// of them last.
func (c *Checker) markDown(t *target, n int64, last error) {
	t.mu.Lock()
	if !t.state.Up {
		t.mu.Unlock()
		return
	}
	reason := fmt.Sprintf("%d consecutive connection errors (last: %s)", n, lastErrorText(last))
	ch := &change{up: false, reason: reason, errs: n}
	ch.msg = fmt.Sprintf("server %s is DOWN: %s", t.name(), reason)
	t.reason = reason
	t.flip(ch)
	t.mu.Unlock()
	c.report(t, ch)
}

// flip makes a state change: the target's state and the server's. The
// caller holds t.mu, so that the two always agree.
func (t *target) flip(ch *change) {
	t.state, t.changed = State{Up: ch.up}, time.Now()
	t.fast = false
	if ch.up {
		t.reason = ""
		t.errs.Store(0) // errors from before it went down do not count
	}
	t.server.SetUp(ch.up)
}

// report refreshes the server's pool after a change and logs it once.
func (c *Checker) report(t *target, ch *change) {
	if ch == nil {
		return
	}
	if t.pool != nil {
		c.refresh(t.pool)
	}
	ev := c.log.Info()
	state := "UP"
	if !ch.up {
		ev, state = c.log.Warn(), "DOWN"
	}
	ev = ev.Str("backend", t.backend).Str("server", t.server.Name).Str("state", state).Str("reason", ch.reason)
	if ch.checks != "" {
		ev = ev.Str("checks", ch.checks)
	}
	if ch.errs > 0 {
		ev = ev.Int64("errors", ch.errs)
	}
	ev.Msg(ch.msg)
}

// snapshot returns the target's state.
func (t *target) snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	sn := Snapshot{Backend: t.backend, Server: t.server.Name, State: t.state, LastReason: t.reason,
		LastCheck: t.lastCheck, CheckDuration: t.took, Changed: t.changed}
	switch {
	case t.state.Count > 0 && t.state.Up:
		sn.Checks = fmt.Sprintf("%d/%d", t.state.Count, t.Fall)
	case t.state.Count > 0:
		sn.Checks = fmt.Sprintf("%d/%d", t.state.Count, t.Rise)
	}
	return sn
}
