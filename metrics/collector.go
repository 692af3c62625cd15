package metrics

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lb/balancer"
	"lb/health"
	"lb/proxy"
	"lb/stats"
)

// Process is what the metrics say of the generation itself.
type Process struct {
	Generation int
	Pid        int
	// Reloaded says this generation replaced a serving one: it counts one
	// reload, to which the older generations' add theirs.
	Reloaded bool
}

// Source is what a generation shows. Set the fields, then Freeze it once
// the next generation took its counters over.
type Source struct {
	Proxy   *proxy.Proxy
	Process Process
	// Health returns a server's health check state, false when it has
	// none; nil: no server has one.
	Health func(*balancer.Server) (health.Snapshot, bool)
	// Ledger is what the other generations counted; nil: nothing.
	Ledger *stats.Ledger
	// History is the backends' recent rates, for the stats page; nil: none.
	History *History
	// Act changes a server for the stats page's actions (see
	// servers.Set.Set); nil: the page has none.
	Act func(backend, server, what, value string) (string, error)
	// Start is when the generation started.
	Start time.Time

	frozen atomic.Pointer[stats.Values]
}

// sample is one series as the walk finds it: a counter or gauge value, or
// a histogram.
type sample struct {
	name, help string
	kind       kind
	labels     []string // names and values, alternating
	value      float64
	hist       stats.HistogramSnapshot
}

// key is the series key of s, or of one of its histogram's parts (suffix
// "_bucket" with le, "_count", "_sum").
func (s *sample) key(suffix, le string) string {
	vals := make([]string, 0, len(s.labels)/2+1)
	for i := 1; i < len(s.labels); i += 2 {
		vals = append(vals, s.labels[i])
	}
	if le != "" {
		vals = append(vals, le)
	}
	return stats.Key(s.name+suffix, vals...)
}

// walk calls emit for every series of this generation, with its own
// values: what this process counted.
func (src *Source) walk(emit func(*sample)) {
	var s sample
	out := func(name, help string, k kind, labels []string, v float64) {
		s = sample{name: name, help: help, kind: k, labels: labels, value: v}
		emit(&s)
	}
	p := src.Process
	out("lb_process_generation", "The generation number of the lb process that answers.", gauge, nil, float64(p.Generation))
	out("lb_reloads_total", "Reloads: generations that replaced a serving one.", counter, nil, b2f(p.Reloaded))
	var draining, conns float64
	if src.Ledger != nil {
		for _, r := range src.Ledger.Live() {
			if r.Pid != p.Pid {
				draining++
				conns += float64(r.Connections)
			}
		}
	}
	out("lb_draining_generations", "Older generations still serving their connections.", gauge, nil, draining)
	out("lb_draining_connections", "Connections the older generations still serve.", gauge, nil, conns)
	if src.Proxy == nil {
		return
	}
	for _, f := range src.Proxy.Frontends {
		walkDefs(frontendDefs, f, []string{"frontend", f.Name}, &s, emit)
	}
	for _, b := range src.Proxy.Backends {
		walkDefs(backendDefs, b, []string{"backend", b.Name()}, &s, emit)
		for _, srv := range b.Pool.Servers {
			v := server{be: b, srv: srv}
			if src.Health != nil {
				if h, ok := src.Health(srv); ok {
					v.h = healthView{checked: true, up: h.State.Up, checkSeconds: h.CheckDuration.Seconds()}
					if !h.Changed.IsZero() {
						v.h.changedSeconds = float64(h.Changed.UnixNano()) / 1e9
					}
				}
			}
			walkDefs(serverDefs, v, []string{"backend", b.Name(), "server", srv.Name}, &s, emit)
		}
	}
	for _, t := range src.Proxy.Tables {
		labels := []string{"table", t.Spec().Name}
		out("lb_table_entries", "Keys a stick table holds.", gauge, labels, float64(t.Len()))
		out("lb_table_size", "The most keys a stick table holds (its size).", gauge, labels, float64(t.Spec().Size))
		out("lb_table_evicted_total", "Keys evicted from a stick table to make room for new ones.", counter, labels, float64(t.Evicted()))
	}
}

// walkDefs emits every metric of defs for obj.
func walkDefs[T any](defs []def[T], obj T, labels []string, s *sample, emit func(*sample)) {
	for i := range defs {
		d := &defs[i]
		*s = sample{name: d.name, help: d.help, kind: d.kind, labels: labels}
		switch {
		case d.codes != nil:
			t := d.codes(obj)
			for c, code := range stats.ClassNames {
				s.labels = append(labels[:len(labels):len(labels)], "code", code)
				s.value = float64(t.Responses[c].Load())
				emit(s)
			}
			continue
		case d.hist != nil:
			s.hist = d.hist(obj).Snapshot()
		case d.snap != nil:
			s.hist = d.snap(obj)
		default:
			s.value = d.value(obj)
		}
		emit(s)
	}
}

// les are the le labels of the histogram buckets.
var les = func() []string {
	out := make([]string, len(stats.Buckets))
	for i, b := range stats.Buckets {
		out[i] = strconv.FormatFloat(b.Seconds(), 'g', -1, 64)
	}
	return out
}()

// Own returns this generation's own counts, by series: what it reports to
// the newest generation and hands to the next one. Freeze does not change
// them: the generation goes on counting while it drains.
func (src *Source) Own() stats.Values {
	out := stats.Values{}
	src.walk(func(s *sample) {
		switch s.kind {
		case counter:
			out[s.key("", "")] = s.value
		case histogram:
			for i, le := range les {
				out[s.key("_bucket", le)] = float64(s.hist.Cumulative[i])
			}
			out[s.key("_count", "")] = float64(s.hist.Count)
			out[s.key("_sum", "")] = s.hist.Sum
		}
	})
	return out
}

// Freeze fixes the counts this generation shows as its own to what Own
// returns now, and returns them: the next generation took them over, and
// a scrape that this one still answers must not show more than the next
// one will. What the generation counts from then on reaches the next one
// in its reports.
func (src *Source) Freeze() stats.Values {
	v := src.Own()
	src.frozen.CompareAndSwap(nil, &v)
	return *src.frozen.Load()
}

// totals calls emit for every series with its total: this generation's
// own counts (or the frozen ones) plus the other generations'.
func (src *Source) totals(emit func(*sample)) {
	var carried stats.Values
	if src.Ledger != nil {
		carried = src.Ledger.Sum()
	}
	frozen := src.frozen.Load()
	src.walk(func(s *sample) {
		switch s.kind {
		case counter:
			k := s.key("", "")
			if frozen != nil {
				s.value = (*frozen)[k]
			}
			s.value += carried[k]
		case histogram:
			if frozen == nil && len(carried) == 0 {
				break
			}
			for i, le := range les {
				k := s.key("_bucket", le)
				if frozen != nil {
					s.hist.Cumulative[i] = uint64((*frozen)[k])
				}
				s.hist.Cumulative[i] += uint64(carried[k])
			}
			kc, ks := s.key("_count", ""), s.key("_sum", "")
			if frozen != nil {
				s.hist.Count, s.hist.Sum = uint64((*frozen)[kc]), (*frozen)[ks]
			}
			s.hist.Count += uint64(carried[kc])
			s.hist.Sum += carried[ks]
		}
		emit(s)
	})
}

// collector is src as a prometheus.Collector: an unchecked one, since the
// series follow the configuration.
type collector struct{ src *Source }

func (c collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	descs := map[string]*prometheus.Desc{}
	c.src.totals(func(s *sample) {
		names := make([]string, 0, len(s.labels)/2)
		vals := make([]string, 0, len(s.labels)/2)
		for i := 0; i+1 < len(s.labels); i += 2 {
			names, vals = append(names, s.labels[i]), append(vals, s.labels[i+1])
		}
		d := descs[s.name]
		if d == nil {
			d = prometheus.NewDesc(s.name, s.help, names, nil)
			descs[s.name] = d
		}
		switch s.kind {
		case counter:
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, s.value, vals...)
		case gauge:
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, s.value, vals...)
		case histogram:
			buckets := make(map[float64]uint64, len(stats.Buckets))
			for i, b := range stats.Buckets {
				buckets[b.Seconds()] = s.hist.Cumulative[i]
			}
			ch <- prometheus.MustNewConstHistogram(d, s.hist.Count, s.hist.Sum, buckets, vals...)
		}
	})
}
