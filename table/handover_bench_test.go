package table

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// BenchmarkHandover90k measures what a reload costs a table of 90,000
// client addresses (a table of 100,000): the old generation's snapshot and its JSON, and the
// new generation's decoding and merge.
func BenchmarkHandover90k(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	spec := Spec{Name: "per_client", Size: 100000, Expire: time.Minute, Period: 10 * time.Second}
	t := New(spec)
	for i := range 90000 {
		e := t.Acquire([]byte("10."+strconv.Itoa(i>>16)+"."+strconv.Itoa(i>>8&255)+"."+strconv.Itoa(i&255)), now)
		e.ConnOpened(now)
		e.Request(now)
		e.Release()
	}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		data, err := json.Marshal(t.Snapshot(now))
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
		var s Snapshot
		if err := json.Unmarshal(data, &s); err != nil {
			b.Fatal(err)
		}
		if n := New(spec).Merge(s, now); n != 90000 {
			b.Fatalf("merged %d", n)
		}
	}
	b.ReportMetric(float64(size), "json-bytes")
}
