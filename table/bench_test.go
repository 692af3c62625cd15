package table

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkAcquireRequestGet(b *testing.B) {
	run := func(e *Entry, now time.Time) {
		e.Request(now)
		_ = e.Get(HTTPReqRate, now)
		e.Release()
	}
	b.Run("serial", func(b *testing.B) {
		tb := newTable(1 << 16)
		key := []byte("192.0.2.1")
		now := t0
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Microsecond)
			run(tb.Acquire(key, now), now)
		}
	})
	b.Run("parallel-same-key", func(b *testing.B) {
		tb := newTable(1 << 16)
		key := []byte("192.0.2.1")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			now := t0
			for pb.Next() {
				now = now.Add(time.Microsecond)
				run(tb.Acquire(key, now), now)
			}
		})
	})
	b.Run("parallel-own-keys", func(b *testing.B) {
		tb := newTable(1 << 16)
		var id atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			key := strconv.AppendInt([]byte("198.51.100."), id.Add(1), 10)
			now := t0
			for pb.Next() {
				now = now.Add(time.Microsecond)
				run(tb.Acquire(key, now), now)
			}
		})
	})
}

func BenchmarkAcquireNew(b *testing.B) {
	tb := newTable(1 << 12)
	key := make([]byte, 0, 24)
	now := t0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		now = now.Add(time.Microsecond)
		key = strconv.AppendInt(key[:0], int64(i), 10)
		e := tb.Acquire(key, now)
		e.Request(now)
		e.Release()
	}
}
