package bench

import (
	"os"
	"testing"
	"time"
)

func TestBenchParseProcFiles(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	stat := "4242 (ordo (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 12 0 100 0 0\n"
	ticks, err := parseStatTicks([]byte(stat))
	if err != nil || ticks != 1234+567 {
		t.Errorf("ticks %d, %v; want %d", ticks, err, 1234+567)
	}
	for _, bad := range []string{"", "4242 ordo S 1", "4242 (ordo) S 1 2 3", "4242 (ordo) S 1 2 3 4 5 6 7 8 9 10 x 5"} {
		if _, err := parseStatTicks([]byte(bad)); err == nil {
			t.Errorf("stat %q parsed", bad)
		}
	}
	status := "Name:\tordo\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t12\n"
	rss, err := parseStatusRSS([]byte(status))
	if err != nil || rss != 51200<<10 {
		t.Errorf("rss %d, %v; want %d", rss, err, 51200<<10)
	}
	for _, bad := range []string{"Name:\tordo\n", "VmRSS:\t12 MB\n", "VmRSS:\tmany kB\n"} {
		if _, err := parseStatusRSS([]byte(bad)); err == nil {
			t.Errorf("status %q parsed", bad)
		}
	}
}

func TestBenchProcSamplerReadsThisProcess(t *testing.T) {
	s := newProcSampler([]Process{{Name: "self", PID: os.Getpid()}, {Name: "gone", PID: -1}})
	// Burn some CPU so that the interval has something to show.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	got := s.Sample()
	if !got[0].OK || got[0].RSSMB <= 0 || got[0].CPUPercent < 0 {
		t.Errorf("self: %+v", got[0])
	}
	if got[1].OK {
		t.Errorf("a process that does not exist was read: %+v", got[1])
	}
	sum := s.Summary()
	if sum[0].Name != "self" || sum[0].PID != os.Getpid() || sum[0].RSSMBMax <= 0 {
		t.Errorf("summary %+v", sum[0])
	}
	if sum[1].RSSMBMax != 0 || sum[1].CPUPercentMean != 0 {
		t.Errorf("summary of a missing process %+v", sum[1])
	}
}

func TestBenchCPUPercent(t *testing.T) {
	at := time.Unix(1000, 0)
	a := procReading{ok: true, ticks: 100, at: at}
	b := procReading{ok: true, ticks: 250, at: at.Add(2 * time.Second)}
	// 150 ticks = 1.5 s of CPU in 2 s of wall time.
	if got := cpuPercent(a, b); got != 75 {
		t.Errorf("cpu %v%%, want 75%%", got)
	}
	if got := cpuPercent(b, a); got != 0 {
		t.Errorf("backwards readings: %v%%, want 0", got)
	}
}
