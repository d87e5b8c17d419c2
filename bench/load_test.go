package bench

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBenchPayloadIsJSONOfTheAskedSize(t *testing.T) {
	for _, n := range []int{2, 3, 9, 10, 11, 128, 4096} {
		b, err := Payload(n)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(b) != n || !json.Valid(b) {
			t.Errorf("%d bytes asked, got %d: %q", n, len(b), b)
		}
	}
	for _, n := range []int{-1, 0, 1, PayloadBytesMax + 1} {
		if _, err := Payload(n); err == nil {
			t.Errorf("%d bytes: no error", n)
		}
	}
}

func TestBenchLoadConfigBounds(t *testing.T) {
	fn := newFakeNode(t, true)
	one := fn.submitters(1)
	for name, cfg := range map[string]LoadConfig{
		"no clients":    {PayloadBytes: 128},
		"tiny payload":  {Submitters: one, PayloadBytes: 1},
		"negative rate": {Submitters: one, PayloadBytes: 128, Rate: -1},
		"huge rate":     {Submitters: one, PayloadBytes: 128, Rate: RateMax * 2},
	} {
		if _, err := StartLoad(context.Background(), cfg); err == nil {
			t.Errorf("%s: started", name)
		}
	}
	if _, err := Generate(context.Background(), LoadConfig{Submitters: one, PayloadBytes: 128}, Window{}); err == nil {
		t.Error("a zero window was accepted")
	}
}

// The open loop issues events on its schedule, whatever the node's speed:
// the count of attempts in the window is the rate times the window's length.
func TestBenchOpenLoopIssuesTheAskedRate(t *testing.T) {
	fn := newFakeNode(t, true)
	const rate, workers = 300, 8
	m, err := Generate(context.Background(),
		LoadConfig{Submitters: fn.submitters(workers), PayloadBytes: 64, Rate: rate},
		Window{Warmup: 100 * time.Millisecond, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Stats
	// Attempts are the schedule's: exactly the events due in the window,
	// however late the dispatcher ran.
	want := rate * m.Elapsed.Seconds()
	if math.Abs(float64(st.Attempted)-want) > 1 {
		t.Errorf("%d attempts in %v at %d/s, want %.1f", st.Attempted, m.Elapsed, rate, want)
	}
	// Everything attempted was sent or dropped; what was sent either came
	// back or was still out when the window closed (at most one per worker).
	done := st.Completed + st.Failed + st.Dropped
	if done > st.Attempted || st.Attempted-done > workers {
		t.Errorf("attempted %d, completed %d, failed %d, dropped %d", st.Attempted, st.Completed, st.Failed, st.Dropped)
	}
	if st.Failed != 0 {
		t.Errorf("%d failed: %s", st.Failed, st.FirstError)
	}
	// The node answers at once, so the generator sends most of the schedule
	// (a loose bound: only a dispatcher stalled for half the window misses it).
	if st.Completed < st.Attempted/2 || m.Latency.Count != st.Completed {
		t.Errorf("%d of %d attempts completed, %d latencies", st.Completed, st.Attempted, m.Latency.Count)
	}
	events, _, _ := fn.counts()
	if events < st.Completed {
		t.Errorf("the node stored %d events, the load counted %d completed", events, st.Completed)
	}
}

// With every worker waiting on a node that never answers, the open loop
// keeps at most one request per worker outstanding and drops the rest.
func TestBenchOpenLoopBoundsOutstandingRequests(t *testing.T) {
	fn := newFakeNode(t, true)
	fn.block = true
	const workers = 3
	m, err := Generate(context.Background(),
		LoadConfig{Submitters: fn.submitters(workers), PayloadBytes: 64, Rate: 200},
		Window{Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Stats
	if st.Completed != 0 || st.Failed != 0 {
		t.Errorf("completed %d, failed %d from a node that never answers", st.Completed, st.Failed)
	}
	if st.Attempted < 20 || st.Dropped != st.Attempted-workers {
		t.Errorf("attempted %d, dropped %d: want all but %d dropped", st.Attempted, st.Dropped, workers)
	}
	if _, _, most := fn.counts(); most < 1 || most > workers {
		t.Errorf("the node held %d requests at once, want 1..%d", most, workers)
	}
}

// The closed loop gives every worker its own key and stream, and every event
// a fresh id: nothing is deduplicated away.
func TestBenchClosedLoopDistinctClientsAndEvents(t *testing.T) {
	fn := newFakeNode(t, true)
	const workers = 4
	m, err := Generate(context.Background(),
		LoadConfig{Submitters: fn.submitters(workers), PayloadBytes: 128},
		Window{Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Stats
	if st.Completed == 0 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.Attempted < st.Completed || st.Attempted-st.Completed > workers {
		t.Errorf("attempted %d, completed %d", st.Attempted, st.Completed)
	}
	events, clients, _ := fn.counts()
	if clients != workers {
		t.Errorf("the node saw %d client keys, want %d", clients, workers)
	}
	if events < st.Completed {
		t.Errorf("%d distinct event ids stored for %d completed appends", events, st.Completed)
	}
}

// A refused request is counted as failed with its reason, not as completed.
func TestBenchLoadCountsRefusals(t *testing.T) {
	fn := newFakeNode(t, false)
	m, err := Generate(context.Background(),
		LoadConfig{Submitters: fn.submitters(2), PayloadBytes: 32},
		Window{Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.Completed != 0 || m.Stats.Failed == 0 || !strings.Contains(m.Stats.FirstError, "not_admitted") {
		t.Errorf("stats %+v", m.Stats)
	}
}
