package bench

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Histogram layout, in the manner of HdrHistogram: values below
// histSubCount are counted exactly; above, each power-of-two range is split
// into histSubHalf equal buckets, so a bucket is never wider than 1/128 of
// the values in it.
const (
	histSubBits   = 8
	histSubCount  = 1 << histSubBits // exact buckets for the smallest values
	histSubHalf   = histSubCount / 2 // buckets per power of two above them
	histValueBits = 40
	// HistValueMax is the largest value kept apart; larger values count as
	// HistValueMax (2^40 µs is about 12.7 days).
	HistValueMax = 1<<histValueBits - 1
	// histBuckets is the index of HistValueMax's bucket plus one.
	histBuckets = (histValueBits - histSubBits + 2) * histSubHalf
)

// Histogram counts non-negative integer values (microseconds, for latency)
// in a fixed number of buckets: its memory does not grow with the number of
// values. A quantile is exact to within 1/128 of the true value, never below
// it, and never above the largest value recorded. It is not safe for
// concurrent use; Recorder is.
type Histogram struct {
	counts [histBuckets]uint64
	count  uint64
	min    uint64
	max    uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxUint64} }

// bucketOf returns the index of v's bucket.
func bucketOf(v uint64) int {
	shift := bits.Len64(v) - histSubBits
	if shift < 0 {
		shift = 0
	}
	return shift*histSubHalf + int(v>>uint(shift))
}

// bucketHigh returns the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < histSubCount {
		return uint64(i)
	}
	shift := i/histSubHalf - 1
	sub := uint64(i - shift*histSubHalf)
	return (sub+1)<<uint(shift) - 1
}

// Record counts one value; values above HistValueMax count as HistValueMax.
func (h *Histogram) Record(v uint64) {
	v = min(v, HistValueMax)
	h.counts[bucketOf(v)]++
	h.count++
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Max returns the largest value recorded (0 when empty).
func (h *Histogram) Max() uint64 { return h.max }

// Quantile returns the value at quantile q in [0, 1] by nearest rank: the
// smallest recorded value v such that at least q of the values are ≤ v, to
// the histogram's precision. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.count == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(bucketHigh(i), h.min), h.max)
		}
	}
	return h.max
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{min: math.MaxUint64} }

// Recorder collects latencies from many goroutines into a histogram of the
// whole run and one of the current interval, which the sampler takes and
// clears every second.
type Recorder struct {
	mu       sync.Mutex
	total    *Histogram
	interval *Histogram
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{total: NewHistogram(), interval: NewHistogram()}
}

// Record counts one latency, in whole microseconds.
func (r *Recorder) Record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	r.mu.Lock()
	r.total.Record(us)
	r.interval.Record(us)
	r.mu.Unlock()
}

// Quantiles summarises a histogram of microseconds in milliseconds.
type Quantiles struct {
	Count uint64
	P50   float64
	P90   float64
	P99   float64
	Max   float64
}

func quantilesMs(h *Histogram) Quantiles {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	return Quantiles{
		Count: h.Count(),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		Max:   ms(h.Max()),
	}
}

// TakeInterval returns the quantiles of the latencies recorded since the
// last call and starts a new interval.
func (r *Recorder) TakeInterval() Quantiles {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := quantilesMs(r.interval)
	r.interval.Reset()
	return q
}

// Total returns the quantiles of every latency recorded.
func (r *Recorder) Total() Quantiles {
	r.mu.Lock()
	defer r.mu.Unlock()
	return quantilesMs(r.total)
}
