package health

import (
	"context"
	"time"

	"lb/balancer"
)

// passiveEvent is a run of traffic errors that reached a target's
// ErrorLimit.
type passiveEvent struct {
	t    *target
	n    int64 // errors in a row so far
	last error // the last of them
}

// ObserveConn is the passive check: the data path reports each connection
// attempt's outcome for s (a nil err is a success). Every ErrorLimit errors
// in a row trigger the target's OnError: "mark-down" takes the server down
// at once, "fast-interval" makes its next checks come at FastInterval until
// they settle. A success resets the count. Servers the Checker does not
// check, or checks without passive checks, are ignored.
//
// It is cheap (a map read, an atomic counter, and on a trigger a
// non-blocking channel send), safe for concurrent use, never blocks, and
// does not allocate. Triggers are acted on while Run runs.
func (c *Checker) ObserveConn(s *balancer.Server, err error) {
	t := c.byServer[s]
	if t == nil || t.ErrorLimit <= 0 {
		return
	}
	if err == nil {
		if t.errs.Load() != 0 {
			t.errs.Store(0)
		}
		return
	}
	n := t.errs.Add(1)
	if n%int64(t.ErrorLimit) != 0 || !t.pending.CompareAndSwap(false, true) {
		return
	}
	// The channel has room for one event per target and each target has
	// at most one queued (pending), so this send never finds it full; the
	// default case only keeps that promise from resting on the comment.
	select {
	case c.events <- passiveEvent{t: t, n: n, last: err}:
	default:
		t.pending.Store(false)
	}
}

// watchPassive is Run's goroutine that acts on passive check triggers, apart
// from the targets' goroutines so that a mark-down need not wait for a check
// in flight.
func (c *Checker) watchPassive(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-c.events:
			ev.t.pending.Store(false)
			c.onErrors(ev)
		}
	}
}

// onErrors applies a target's OnError action.
func (c *Checker) onErrors(ev passiveEvent) {
	t := ev.t
	switch t.OnError {
	case OnErrorMarkDown:
		c.markDown(t, ev.n, ev.last)
	case OnErrorFastInterval:
		t.mu.Lock()
		fast := t.state.Up && !t.fast
		if fast {
			t.fast, t.fastAt = true, time.Now()
		}
		t.mu.Unlock()
		if fast {
			c.log.Info().Str("backend", t.backend).Str("server", t.server.Name).Int64("errors", ev.n).
				Str("last_error", lastErrorText(ev.last)).
				Msgf("server %s: %d consecutive connection errors, checking it every %s", t.name(), ev.n, t.FastInterval)
		}
	default:
		return // New logged the unknown action
	}
	// Let the target's loop bring its next check forward.
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
