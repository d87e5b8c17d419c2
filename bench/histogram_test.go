package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the reference quantile: the smallest sample such that at
// least q of the samples are ≤ it.
func nearestRank(sorted []uint64, q float64) uint64 {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestBenchHistogramQuantilesMatchSortedReference(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		rng := rand.New(rand.NewPCG(seed, 0))
		h := NewHistogram()
		var samples []uint64
		for i := 0; i < 20000; i++ {
			// Latency-like: log-normal around 2 ms with a long tail, plus
			// exact small values and an occasional huge one.
			v := uint64(math.Exp(rng.NormFloat64()*1.5 + math.Log(2000)))
			switch i % 1000 {
			case 0:
				v = uint64(i % 7)
			case 1:
				v = 1 << 35
			}
			h.Record(v)
			samples = append(samples, v)
		}
		slices.Sort(samples)
		if h.Count() != uint64(len(samples)) || h.Max() != samples[len(samples)-1] {
			t.Fatalf("seed %d: count %d max %d, want %d and %d", seed, h.Count(), h.Max(), len(samples), samples[len(samples)-1])
		}
		for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
			want := nearestRank(samples, q)
			got := h.Quantile(q)
			// Never below the true value, above it by at most 1/128 of it.
			if got < want || got-want > want/histSubHalf {
				t.Errorf("seed %d: q=%v: histogram says %d, sorted samples say %d", seed, q, got, want)
			}
		}
	}
}

func TestBenchHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Count() != 0 {
		t.Fatal("an empty histogram must answer 0")
	}
	// Small values are exact.
	for v := uint64(0); v < histSubCount; v++ {
		h.Record(v)
	}
	for _, q := range []float64{0.25, 0.5, 0.75} {
		if got, want := h.Quantile(q), uint64(q*histSubCount)-1; got != want {
			t.Errorf("q=%v: %d, want exactly %d", q, got, want)
		}
	}
	// One value: every quantile is that value, though its bucket is wide.
	h.Reset()
	h.Record(1_000_003)
	for _, q := range []float64{-1, 0, 0.5, 1, 2} {
		if got := h.Quantile(q); got != 1_000_003 {
			t.Errorf("single value, q=%v: %d", q, got)
		}
	}
	// Beyond the range: kept as the maximum, not lost, no out-of-range index.
	h.Reset()
	h.Record(math.MaxUint64)
	h.Record(HistValueMax + 1)
	if h.Count() != 2 || h.Max() != HistValueMax || h.Quantile(0.5) != HistValueMax {
		t.Errorf("huge values: count %d max %d p50 %d", h.Count(), h.Max(), h.Quantile(0.5))
	}
	// Bucket bounds tile the range without gaps.
	for i := 1; i < histBuckets; i++ {
		if bucketOf(bucketHigh(i-1)+1) != i {
			t.Fatalf("bucket %d does not start right after bucket %d", i, i-1)
		}
	}
	if bucketOf(HistValueMax) != histBuckets-1 {
		t.Fatalf("HistValueMax falls in bucket %d of %d", bucketOf(HistValueMax), histBuckets)
	}
}

func TestBenchRecorderIntervals(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 100; i++ {
		r.Record(time.Duration(i) * time.Millisecond)
	}
	first := r.TakeInterval()
	if first.Count != 100 || !near(first.P50, 50) || !near(first.P99, 99) || first.Max != 100 {
		t.Errorf("first interval %+v", first)
	}
	r.Record(-time.Second) // a clock step backwards counts as 0, not as a huge value
	r.Record(500 * time.Millisecond)
	second := r.TakeInterval()
	if second.Count != 2 || second.P50 != 0 || second.Max != 500 {
		t.Errorf("second interval %+v", second)
	}
	if empty := r.TakeInterval(); empty.Count != 0 || empty.Max != 0 {
		t.Errorf("third interval %+v, want empty", empty)
	}
	total := r.Total()
	if total.Count != 102 || total.Max != 500 {
		t.Errorf("total %+v", total)
	}
	// p90 of 102 values: rank 92 is 91 ms (0 is the smallest).
	if !near(total.P90, 91) {
		t.Errorf("total p90 %v ms, want 91", total.P90)
	}
}

// near reports whether a histogram's answer got is want to its precision.
func near(got, want float64) bool {
	return got >= want && got <= want*(1+1.0/histSubHalf)
}
