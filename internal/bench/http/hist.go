package main

import (
	"math/bits"
	"time"
)

// The latency histogram has a fixed size, whatever the number of samples:
// values below 2^subBits nanoseconds have a bucket each, and every octave
// above is cut into 2^(subBits-1) buckets of equal width, so that a bucket
// is at most 1/64 (1.6 %) of its values wide. Values of 2^37 ns (137 s)
// and above share the last bucket.
const (
	subBits  = 7
	subCount = 1 << (subBits - 1) // buckets per octave
	maxValue = 1<<37 - 1
	nBuckets = (37-subBits)*subCount + 2*subCount
)

// hist is a latency histogram of nanosecond values. The zero value is
// empty and ready.
type hist struct {
	counts   [nBuckets]uint64
	n        uint64
	min, max uint64
	sum      float64
}

// bucketOf returns the bucket of v.
func bucketOf(v uint64) int {
	v = min(v, maxValue)
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return shift*subCount + int(v>>shift)
}

// bucketBounds returns the lowest and highest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return m << shift, (m+1)<<shift - 1
}

// record adds one latency.
func (h *hist) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// merge adds every value of o to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the q-quantile (0 < q <= 1), nearest rank: the middle of
// the bucket that holds it, kept within the smallest and largest value
// recorded. It is 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(i)
			mid := lo + (hi-lo)/2
			return time.Duration(min(max(mid, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// mean returns the mean latency.
func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}
