package metrics

import (
	"encoding/json"
	"sync"
	"time"

	"lb/proxy"
	"lb/stats"
)

// DefaultHistoryStep is how often the history takes a point unless told,
// and HistoryPoints how many it keeps: 15 minutes at the default step.
const (
	DefaultHistoryStep = 10 * time.Second
	HistoryPoints      = 90
)

// Point is one step of a backend's history: requests (TCP mode:
// connections) and errors per second over the step, and the 99th percentile of the response time
// (upper bound of its histogram bucket), in seconds; 0 without requests.
type Point struct {
	Time     int64   `json:"t"` // unix seconds at the step's end
	Requests float64 `json:"rps"`
	Errors   float64 `json:"eps"`
	P99      float64 `json:"p99"`
}

// History keeps the last HistoryPoints points of every backend, from the
// counters, in memory. Its zero value is empty; Take fills it, every
// Period.
type History struct {
	// Step is the time between points; 0: DefaultHistoryStep.
	Step time.Duration

	mu       sync.Mutex
	backends map[string][]Point
	last     map[string]backendSample
}

// backendSample is what a point is the difference of.
type backendSample struct {
	at       time.Time
	requests uint64
	errors   uint64
	total    stats.HistogramSnapshot
}

// sampleBackend reads b's counters: requests, errors (5xx responses,
// failed connections, failed responses), and its servers' response times.
func sampleBackend(b *proxy.Backend, now time.Time) backendSample {
	s := backendSample{at: now, requests: b.Counts.Requests.Load()}
	s.errors = b.Counts.Responses[stats.Class5xx].Load() + b.Counts.ConnectErrors.Load() + b.Counts.ResponseErrors.Load()
	var conns uint64
	for _, srv := range b.Pool.Servers {
		conns += srv.Total()
		s.total.Add(srv.Counts.Total.Snapshot())
	}
	if s.requests == 0 {
		s.requests = conns // TCP mode: connections
	}
	return s
}

// Period is how often the caller should Take points: Step, or
// DefaultHistoryStep.
func (h *History) Period() time.Duration {
	if h.Step <= 0 {
		return DefaultHistoryStep
	}
	return h.Step
}

// Take adds a point of each backend of p at now: the rates since the
// previous Take.
func (h *History) Take(p *proxy.Proxy, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.backends == nil {
		h.backends = map[string][]Point{}
	}
	if h.last == nil {
		h.last = map[string]backendSample{}
	}
	for _, b := range p.Backends {
		s := sampleBackend(b, now)
		prev, ok := h.last[b.Name()]
		h.last[b.Name()] = s
		if !ok {
			continue
		}
		secs := s.at.Sub(prev.at).Seconds()
		if secs <= 0 {
			continue
		}
		pt := Point{Time: now.Unix(),
			Requests: float64(s.requests-prev.requests) / secs,
			Errors:   float64(s.errors-prev.errors) / secs,
			P99:      s.total.Quantile(prev.total, 0.99).Seconds(),
		}
		pts := append(h.backends[b.Name()], pt)
		if len(pts) > HistoryPoints {
			pts = pts[len(pts)-HistoryPoints:]
		}
		h.backends[b.Name()] = pts
	}
}

// Points returns every backend's points, oldest first.
func (h *History) Points() map[string][]Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]Point, len(h.backends))
	for k, v := range h.backends {
		out[k] = append([]Point(nil), v...)
	}
	return out
}

// MarshalJSON is the points, for the next generation.
func (h *History) MarshalJSON() ([]byte, error) { return json.Marshal(h.Points()) }

// Restore takes the points an older generation kept.
func (h *History) Restore(raw []byte) error {
	var pts map[string][]Point
	if err := json.Unmarshal(raw, &pts); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.backends = pts
	return nil
}
