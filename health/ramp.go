package health

import (
	"context"
	"time"

	"lb/balancer"
)

// refresh refreshes a pool after one of its servers changed state and, when
// a server of it is in slow start, hands the pool to ramp.
func (c *Checker) refresh(p *balancer.Pool) {
	if !p.Refresh() {
		return
	}
	c.rampMu.Lock()
	c.rampPools[p] = struct{}{}
	c.rampMu.Unlock()
	select {
	case c.rampWake <- struct{}{}:
	default:
	}
}

// ramp is Run's goroutine that refreshes the pools with a server in slow
// start every rampEvery, until none is left ramping, so that their weights
// grow smoothly. It sleeps while no server ramps.
func (c *Checker) ramp(ctx context.Context) {
	ticker := time.NewTicker(rampEvery)
	defer ticker.Stop()
	for {
		if !c.refreshRamping() {
			// Nothing ramps: wait until something does.
			select {
			case <-ctx.Done():
				return
			case <-c.rampWake:
				ticker.Reset(rampEvery)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.rampWake:
		case <-ticker.C:
		}
	}
}

// refreshRamping refreshes every pool in slow start, forgets those that are
// done, and reports whether any is left.
func (c *Checker) refreshRamping() bool {
	c.rampMu.Lock()
	defer c.rampMu.Unlock()
	for p := range c.rampPools {
		if !p.Refresh() {
			delete(c.rampPools, p)
		}
	}
	return len(c.rampPools) > 0
}
