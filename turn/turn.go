// Package turn lets a goroutine that batches the work of others (a
// connection's writer, flushing what its streams wrote) wait for them as
// an event loop ends its turn: until every goroutine that was ready to run
// has run.
package turn

import (
	"runtime"
	"sync/atomic"
)

// Settle yields the processor until a turn of the scheduler goes by
// without n changing, at most max turns: n counts the writes of the
// others, so that what they had to write is there when Settle returns.
// One turn is one runtime.Gosched, which puts the caller behind the
// goroutines ready to run. The runtime's fairness check sometimes runs the
// caller again before all of them ran: another turn catches those.
func Settle(n *atomic.Uint32, max int) {
	for range max {
		before := n.Load()
		runtime.Gosched()
		if n.Load() == before {
			return
		}
	}
}
