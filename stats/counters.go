// Package stats holds the counters the data path keeps (atomics on the
// frontends, backends and servers it already touches, read only when
// someone looks) and the ledger that carries them across reloads: every
// generation's own counts, as it last reported them, so that the newest
// generation shows totals that never reset and never go backwards.
package stats

import (
	"sync/atomic"
	"time"
)

// Status classes of HTTP responses, as the code label names them.
const (
	Class1xx = iota
	Class2xx
	Class3xx
	Class4xx
	Class5xx
	ClassOther
	nClasses
)

// ClassNames are the code labels of the classes, in order.
var ClassNames = [nClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// Class returns the class of an HTTP status.
func Class(status int) int {
	if c := status/100 - 1; c >= Class1xx && c <= Class5xx {
		return c
	}
	return ClassOther
}

// Traffic counts the HTTP exchanges and the bytes of a frontend, a backend
// or a server. Its zero value counts from zero.
type Traffic struct {
	Requests  atomic.Uint64
	Responses [nClasses]atomic.Uint64
	BytesIn   atomic.Uint64 // from clients, toward servers
	BytesOut  atomic.Uint64 // from servers, toward clients
}

// Exchange counts one HTTP exchange that ended with status (0: no
// response was sent) after moving in and out bytes of bodies.
func (t *Traffic) Exchange(status int, in, out int64) {
	t.Requests.Add(1)
	if status > 0 {
		t.Responses[Class(status)].Add(1)
	}
	t.Bytes(in, out)
}

// Bytes counts bytes moved.
func (t *Traffic) Bytes(in, out int64) {
	if in > 0 {
		t.BytesIn.Add(uint64(in))
	}
	if out > 0 {
		t.BytesOut.Add(uint64(out))
	}
}

// Buckets are the upper bounds of every latency histogram's buckets: from
// half a millisecond (a loopback exchange) to 30 s.
var Buckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// Histogram counts durations in Buckets. Its zero value is empty; Observe
// takes two uncontended atomic adds and no lock.
type Histogram struct {
	counts [len(Buckets) + 1]atomic.Uint64 // the last one is +Inf
	sum    atomic.Int64                    // nanoseconds
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(Buckets) && d > Buckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a histogram as Prometheus wants it: cumulative
// counts by upper bound.
type HistogramSnapshot struct {
	Cumulative [len(Buckets)]uint64 // observations <= Buckets[i]
	Count      uint64
	Sum        float64 // seconds
}

// Snapshot reads h.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	var n uint64
	for i := range Buckets {
		n += h.counts[i].Load()
		s.Cumulative[i] = n
	}
	s.Count = n + h.counts[len(Buckets)].Load()
	s.Sum = time.Duration(h.sum.Load()).Seconds()
	return s
}

// Add adds o's observations to s.
func (s *HistogramSnapshot) Add(o HistogramSnapshot) {
	for i := range s.Cumulative {
		s.Cumulative[i] += o.Cumulative[i]
	}
	s.Count += o.Count
	s.Sum += o.Sum
}

// Quantile estimates the q-quantile (0 < q < 1) of the observations
// between two snapshots, prev and s, as the upper bound of the bucket it
// falls in; 0 when none was made.
func (s HistogramSnapshot) Quantile(prev HistogramSnapshot, q float64) time.Duration {
	n := s.Count - prev.Count
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n)) + 1
	for i, b := range Buckets {
		if s.Cumulative[i]-prev.Cumulative[i] >= rank {
			return b
		}
	}
	return Buckets[len(Buckets)-1]
}

// Latency is the timing of exchanges with servers: connecting (0 for a
// pooled connection), the response's first byte after the request, and
// the whole exchange.
type Latency struct {
	Connect, FirstByte, Total Histogram
}

// Frontend is a frontend's counters.
type Frontend struct {
	// Conns counts the connections accepted.
	Conns atomic.Uint64
	// Traffic counts HTTP exchanges, and bytes in both modes.
	Traffic
	// Duration is the time from a request's first byte to its end.
	Duration Histogram
	// TLSHandshakes counts the TLS handshakes that succeeded, TLSResumed
	// those of them that resumed a session, TLSFailed those that failed.
	TLSHandshakes, TLSResumed, TLSFailed atomic.Uint64
	// DeniedConns, DeniedReqs and DeniedResps count the connections,
	// requests and responses that traffic rules denied or tarpitted;
	// ProxyErrors the connections from trusted peers closed for a missing
	// or malformed PROXY protocol header, or refused for sending one
	// untrusted.
	DeniedConns, DeniedReqs, DeniedResps, ProxyErrors atomic.Uint64
}

// Backend is a backend's counters; the sums of its servers' are added
// when they are read.
type Backend struct {
	// Traffic counts the exchanges routed to the backend, with or without
	// a server.
	Traffic
	// ConnectErrors counts failed connections to servers, Retries the
	// servers tried after a failed one, ResponseErrors the responses that
	// failed or timed out on the server's side.
	ConnectErrors, Retries, ResponseErrors atomic.Uint64
	// Queued counts the clients that waited in the queue for a server,
	// QueueTimeouts those that gave up; QueueTime is how long they waited.
	Queued, QueueTimeouts atomic.Uint64
	QueueTime             Histogram
}

// Server is a server's counters beyond the connections, which the
// balancer counts.
type Server struct {
	// Traffic counts the exchanges the server answered, and bytes.
	Traffic
	// ResponseErrors counts the responses that failed or timed out.
	ResponseErrors atomic.Uint64
	Latency
}

// Reset sets t's counts to zero.
func (t *Traffic) Reset() {
	t.Requests.Store(0)
	for i := range t.Responses {
		t.Responses[i].Store(0)
	}
	t.BytesIn.Store(0)
	t.BytesOut.Store(0)
}

// Reset empties h.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.sum.Store(0)
}

// Reset sets f's counts to zero.
func (f *Frontend) Reset() {
	f.Conns.Store(0)
	f.TLSHandshakes.Store(0)
	f.TLSResumed.Store(0)
	f.TLSFailed.Store(0)
	f.DeniedConns.Store(0)
	f.DeniedReqs.Store(0)
	f.DeniedResps.Store(0)
	f.ProxyErrors.Store(0)
	f.Traffic.Reset()
	f.Duration.Reset()
}

// Reset sets b's counts to zero.
func (b *Backend) Reset() {
	b.Traffic.Reset()
	for _, c := range []*atomic.Uint64{&b.ConnectErrors, &b.Retries, &b.ResponseErrors, &b.Queued, &b.QueueTimeouts} {
		c.Store(0)
	}
	b.QueueTime.Reset()
}

// Reset sets s's counts to zero.
func (s *Server) Reset() {
	s.Traffic.Reset()
	s.ResponseErrors.Store(0)
	s.Connect.Reset()
	s.FirstByte.Reset()
	s.Total.Reset()
}
