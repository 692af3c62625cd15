package proxy

import "lb/reclaim"

// A connection being served holds a goroutine's stack and buffers; a
// parked one holds neither. After a burst of busy connections (thousands
// served at once) that then park or close, the memory they held goes back
// to the operating system (package reclaim), so that lb's resident memory
// follows the connections at rest, not the peak.

// busyCost is about what a connection being served holds beyond a parked
// one: a goroutine's stack, its buffers, an HTTP exchange.
const busyCost = 32 << 10

// busy counts the memory of the connections being served, process-wide.
// A burst is over 64 of them at once (2 MiB): reclaiming after it costs
// one collection, at most every few seconds (reclaim.DefaultGap).
var busy = reclaim.Burst{High: 64 * busyCost}

// Busy counts n more connections (or fewer, n < 0) being served rather
// than parked. Handlers call it when a connection starts or resumes being
// served (1) and when it parks or ends (-1).
func Busy(n int) { busy.Add(int64(n) * busyCost) }

// undetachedCost is about what a parked connection that keeps its
// *net.TCPConn holds beyond a detached one (see Conn.Detach): the
// runtime's state of an open net.Conn.
const undetachedCost = 1 << 10

// Undetached counts n more parked connections that will detach (or fewer,
// n < 0), in the same burst as Busy: a wave of connections that go idle
// is over once they detached, and only then is their memory reclaimed.
func Undetached(n int) { busy.Add(int64(n) * undetachedCost) }
