package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Linux /proc accounting.
const (
	// clockTicksPerSec is USER_HZ, the unit of utime and stime in
	// /proc/PID/stat; Linux fixes it at 100 on every architecture it exposes
	// to user space.
	clockTicksPerSec = 100
	// statFieldsMin is how many fields after the command name a stat line
	// has at least (stime is the 13th of them).
	statFieldsMin = 13
	// procFileBytesMax bounds what is read of a /proc file.
	procFileBytesMax = 64 << 10
)

// Process names a process whose CPU and memory are sampled.
type Process struct {
	Name string
	PID  int
}

// ProcSample is one process's use over one sampling interval.
type ProcSample struct {
	OK         bool    // false when the process could not be read (gone, or no /proc)
	CPUPercent float64 // of one core, over the interval
	RSSMB      float64 // resident set at the end of the interval, in MiB
}

// procTimes reads utime+stime of pid, in clock ticks.
func procTimes(pid int) (uint64, error) {
	b, err := readProcFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// parseStatTicks returns utime+stime from a /proc/PID/stat line. The command
// name in parentheses may hold spaces and parentheses, so fields are counted
// after its last ')'.
func parseStatTicks(b []byte) (uint64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("stat line without a command name")
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < statFieldsMin {
		return 0, fmt.Errorf("stat line with %d fields after the name, want at least %d", len(f), statFieldsMin)
	}
	// After the name: state(0) ppid(1) … utime(11) stime(12).
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime %q: %w", f[11], err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime %q: %w", f[12], err)
	}
	return utime + stime, nil
}

// procRSS reads VmRSS of pid, in bytes.
func procRSS(pid int) (uint64, error) {
	b, err := readProcFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(b)
}

// parseStatusRSS returns VmRSS from /proc/PID/status, in bytes.
func parseStatusRSS(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

func readProcFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, procFileBytesMax))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// procSampler turns successive readings of each process into per-interval
// CPU use, and keeps the totals for the summary.
type procSampler struct {
	procs  []Process
	last   []procReading // the previous reading per process
	first  []procReading // the reading when the window opened
	cpuMax []float64
	rssMax []uint64
}

type procReading struct {
	ok    bool
	ticks uint64
	at    time.Time
}

func newProcSampler(procs []Process) *procSampler {
	s := &procSampler{
		procs:  procs,
		last:   make([]procReading, len(procs)),
		first:  make([]procReading, len(procs)),
		cpuMax: make([]float64, len(procs)),
		rssMax: make([]uint64, len(procs)),
	}
	now := time.Now()
	for i, p := range procs {
		s.last[i] = read(p.PID, now)
		s.first[i] = s.last[i]
	}
	return s
}

func read(pid int, at time.Time) procReading {
	t, err := procTimes(pid)
	return procReading{ok: err == nil, ticks: t, at: at}
}

// Sample reads every process and returns its use since the last Sample.
func (s *procSampler) Sample() []ProcSample {
	now := time.Now()
	out := make([]ProcSample, len(s.procs))
	for i, p := range s.procs {
		r := read(p.PID, now)
		prev := s.last[i]
		s.last[i] = r
		rss, err := procRSS(p.PID)
		if !r.ok || !prev.ok || err != nil {
			continue
		}
		out[i] = ProcSample{OK: true, CPUPercent: cpuPercent(prev, r), RSSMB: float64(rss) / (1 << 20)}
		s.cpuMax[i] = max(s.cpuMax[i], out[i].CPUPercent)
		s.rssMax[i] = max(s.rssMax[i], rss)
	}
	return out
}

// cpuPercent is the CPU time between two readings as a percentage of one core.
func cpuPercent(a, b procReading) float64 {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 || b.ticks < a.ticks {
		return 0
	}
	return float64(b.ticks-a.ticks) / clockTicksPerSec / wall * 100
}

// ProcSummary is one process's use over the measured window.
type ProcSummary struct {
	Name           string  `json:"name"`
	PID            int     `json:"pid"`
	CPUPercentMean float64 `json:"cpu_percent_mean"`
	CPUPercentMax  float64 `json:"cpu_percent_max"`
	RSSMBMax       float64 `json:"rss_mb_max"`
	// CPUMsPerEvent is the process's CPU time per committed event of the
	// window: on a shared machine a steadier measure of what a build costs
	// than events/s, which the other processes' load moves.
	CPUMsPerEvent float64 `json:"cpu_ms_per_event,omitempty"`
}

// Summary returns each process's use since the sampler was made.
func (s *procSampler) Summary() []ProcSummary {
	out := make([]ProcSummary, len(s.procs))
	for i, p := range s.procs {
		out[i] = ProcSummary{
			Name: p.Name, PID: p.PID,
			CPUPercentMax: round(s.cpuMax[i], 1), RSSMBMax: round(float64(s.rssMax[i])/(1<<20), 1),
		}
		if s.first[i].ok && s.last[i].ok {
			out[i].CPUPercentMean = round(cpuPercent(s.first[i], s.last[i]), 1)
		}
	}
	return out
}
