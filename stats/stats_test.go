package stats

import (
	"testing"
	"time"
)

func TestLedgerKeepsTheLargestAndEndsOnce(t *testing.T) {
	var l Ledger
	now := time.Unix(1000, 0)
	k := Key("lb_frontend_http_requests_total", "web")
	l.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 5}}, now)
	l.Merge(Report{Generation: 2, Pid: 11, Values: Values{k: 7}}, now)
	if got := l.Sum()[k]; got != 12 {
		t.Fatalf("sum %v, want 12", got)
	}
	// Late, out of order: an older report of generation 1 changes nothing.
	l.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 3}}, now)
	if got := l.Sum()[k]; got != 12 {
		t.Fatalf("sum after a stale report %v, want 12", got)
	}
	l.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 9}, Final: true}, now)
	if got := l.Sum()[k]; got != 16 {
		t.Fatalf("sum after generation 1's last report %v, want 16", got)
	}
	// A final report that comes twice is counted once.
	l.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 9}, Final: true}, now)
	if got := l.Sum()[k]; got != 16 {
		t.Fatalf("sum after a repeated last report %v, want 16", got)
	}
	if live := l.Live(); len(live) != 1 || live[0].Pid != 11 {
		t.Fatalf("live %+v, want generation 2 alone", live)
	}

	// Handed over with this generation's own counts, then restored.
	c := l.Carry(Report{Generation: 3, Pid: 12, Values: Values{k: 1}})
	var next Ledger
	next.Restore(c, now)
	if got := next.Sum()[k]; got != 17 {
		t.Fatalf("restored sum %v, want 17", got)
	}
	next.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 100}}, now)
	if got := next.Sum()[k]; got != 17 {
		t.Fatalf("an ended generation's report after the handover counted: sum %v, want 17", got)
	}
	next.End("2/11") // died
	if got, live := next.Sum()[k], next.Live(); got != 17 || len(live) != 1 {
		t.Fatalf("after End: sum %v, live %+v; want 17 and generation 3 alone", got, live)
	}
	// A final carry folds the generation itself into the base.
	f := next.Carry(Report{Generation: 4, Pid: 13, Values: Values{k: 2}, Final: true})
	if f.Base[k] != 9+7+2 || len(f.Live) != 1 {
		t.Fatalf("final carry %+v", f)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{100 * time.Microsecond, 2 * time.Millisecond, 2 * time.Millisecond, time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if s.Count != 4 || s.Cumulative[0] != 1 || s.Cumulative[2] != 3 || s.Cumulative[len(Buckets)-1] != 3 {
		t.Fatalf("snapshot %+v", s)
	}
	if q := s.Quantile(HistogramSnapshot{}, 0.5); q != 2500*time.Microsecond {
		t.Fatalf("median %v, want the 2.5ms bucket", q)
	}
	if got, want := s.Sum, (100*time.Microsecond + 4*time.Millisecond + time.Minute).Seconds(); got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("sum %v, want %v", got, want)
	}
}

func TestClass(t *testing.T) {
	for status, want := range map[int]int{100: Class1xx, 204: Class2xx, 308: Class3xx, 429: Class4xx, 503: Class5xx, 600: ClassOther, 0: ClassOther} {
		if got := Class(status); got != want {
			t.Errorf("Class(%d) = %d, want %d", status, got, want)
		}
	}
}

func TestLedgerClear(t *testing.T) {
	var l Ledger
	now := time.Unix(1000, 0)
	k := Key("lb_frontend_http_requests_total", "web")
	l.Merge(Report{Generation: 1, Pid: 10, Values: Values{k: 5}, Final: true}, now)
	l.Merge(Report{Generation: 2, Pid: 11, Values: Values{k: 7}}, now)
	l.Clear()
	if got := l.Sum()[k]; got != 0 {
		t.Fatalf("sum after Clear %v, want 0", got)
	}
	l.Merge(Report{Generation: 2, Pid: 11, Values: Values{k: 9}}, now)
	if got := l.Sum()[k]; got != 2 {
		t.Fatalf("sum after a report since Clear %v, want 2", got)
	}
	// Handed over: the next generation counts generation 2 from the clear
	// too.
	var next Ledger
	next.Restore(l.Carry(Report{Generation: 3, Pid: 12, Values: Values{k: 1}}), now)
	next.Merge(Report{Generation: 2, Pid: 11, Values: Values{k: 10}, Final: true}, now)
	if got := next.Sum()[k]; got != 3+1 {
		t.Fatalf("sum in the next generation %v, want 4", got)
	}
}
