package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/ledger"
)

// Bounds of the load.
const (
	// WorkersMax bounds LoadConfig.Submitters (--clients).
	WorkersMax = 4096
	// RateMax bounds LoadConfig.Rate, in events per second.
	RateMax = 1e6
	// PayloadBytesMin and PayloadBytesMax bound the event data; the network's
	// request_bytes_max, which the client enforces, is usually lower.
	PayloadBytesMin = 2
	PayloadBytesMax = 1 << 20
	// dispatchPauseMin is the shortest pause of the open loop's dispatcher;
	// events that fall due meanwhile go out together.
	dispatchPauseMin = time.Millisecond
	// failurePause is how long a closed-loop worker waits after a failure.
	failurePause = 10 * time.Millisecond
	// EventType is the type of every event the load appends.
	EventType = "bench"
)

// Submitter is what the load needs of a client; *client.Client is one.
type Submitter interface {
	Submit(ctx context.Context, cmd ledger.Command) (*client.Reply, error)
}

// LoadConfig configures a load.
type LoadConfig struct {
	// Submitters are the workers, one goroutine each. Closed loop: each
	// submits its next event as soon as the previous one is answered. Open
	// loop: they are the bound on outstanding requests.
	Submitters []Submitter
	// PayloadBytes is the size of each event's JSON data.
	PayloadBytes int
	// Rate is the open loop's schedule in events per second; 0 is closed loop.
	Rate float64
}

// Validate checks the bounds.
func (c *LoadConfig) Validate() error {
	switch {
	case len(c.Submitters) < 1 || len(c.Submitters) > WorkersMax:
		return fmt.Errorf("%d clients: want 1..%d", len(c.Submitters), WorkersMax)
	case c.PayloadBytes < PayloadBytesMin || c.PayloadBytes > PayloadBytesMax:
		return fmt.Errorf("payload of %d bytes: want %d..%d", c.PayloadBytes, PayloadBytesMin, PayloadBytesMax)
	case c.Rate < 0 || c.Rate > RateMax:
		return fmt.Errorf("rate %g events/s: want 0 (closed loop) up to %g", c.Rate, RateMax)
	}
	return nil
}

// Payload returns JSON data of exactly n bytes (n ≥ PayloadBytesMin): an
// object {"pad":"xx…"} when it fits, else a string.
func Payload(n int) ([]byte, error) {
	if n < PayloadBytesMin || n > PayloadBytesMax {
		return nil, fmt.Errorf("payload of %d bytes: want %d..%d", n, PayloadBytesMin, PayloadBytesMax)
	}
	const open, closing = `{"pad":"`, `"}`
	b := make([]byte, 0, n)
	if n >= len(open)+len(closing) {
		b = append(b, open...)
		for len(b) < n-len(closing) {
			b = append(b, 'x')
		}
		return append(b, closing...), nil
	}
	b = append(b, '"')
	for len(b) < n-1 {
		b = append(b, 'x')
	}
	return append(b, '"'), nil
}

// LoadStats counts what happened inside the measured window. A request
// counts if it was sent after the window opened; it is completed or failed if
// its answer came before the window closed.
type LoadStats struct {
	Attempted  uint64 // sent, plus dropped by the generator
	Completed  uint64 // answered with a verified reply bundle and result ok
	Failed     uint64 // an error, or a result other than ok
	Dropped    uint64 // open loop: due while every worker was busy, never sent
	FirstError string // the first failure, for the report
}

// Interval is the load's activity since the previous TakeInterval.
type Interval struct {
	Completed uint64
	Failed    uint64
	Dropped   uint64
	Latency   Quantiles
}

// Load is a running load generator.
type Load struct {
	cfg     LoadConfig
	payload []byte
	run     string // distinguishes this load's streams from earlier runs'
	rec     *Recorder
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// The window: opened at windowStart (Unix ns, 0 = not yet), closed once
	// closed is set.
	windowStart atomic.Int64
	closed      atomic.Bool

	attempted, completed, failed, dropped atomic.Uint64
	// per-interval counts, taken and zeroed by TakeInterval
	ivCompleted, ivFailed, ivDropped atomic.Uint64

	errMu    sync.Mutex
	firstErr string
}

// StartLoad checks cfg and starts the workers (and, for an open loop, the
// dispatcher). Nothing is measured until OpenWindow.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	payload, err := Payload(cfg.PayloadBytes)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, fmt.Errorf("load: run tag: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{
		cfg: cfg, payload: payload, rec: NewRecorder(), cancel: cancel,
		run: strconv.FormatUint(uint64(binary.BigEndian.Uint32(tag[:])), 36),
	}
	if cfg.Rate == 0 {
		for i, s := range cfg.Submitters {
			l.wg.Add(1)
			go l.closedWorker(ctx, i, s)
		}
		return l, nil
	}
	work := make(chan struct{}) // unbuffered: a send succeeds only when a worker is idle
	for i, s := range cfg.Submitters {
		l.wg.Add(1)
		go l.openWorker(ctx, i, s, work)
	}
	l.wg.Add(1)
	go l.dispatch(ctx, work)
	return l, nil
}

// OpenWindow starts measuring, returning when: requests sent from then on count.
func (l *Load) OpenWindow() time.Time {
	now := time.Now()
	l.windowStart.Store(now.UnixNano())
	return now
}

// CloseWindow stops measuring, returning when: answers from then on do not count.
func (l *Load) CloseWindow() time.Time {
	l.closed.Store(true)
	return time.Now()
}

// Stop ends the load and waits for every worker to return.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// inWindow reports whether something happening now counts.
func (l *Load) inWindow() bool {
	return l.windowStart.Load() != 0 && !l.closed.Load()
}

// Stats returns the window's counts so far.
func (l *Load) Stats() LoadStats {
	l.errMu.Lock()
	first := l.firstErr
	l.errMu.Unlock()
	return LoadStats{
		Attempted: l.attempted.Load(), Completed: l.completed.Load(), Failed: l.failed.Load(),
		Dropped: l.dropped.Load(), FirstError: first,
	}
}

// Latency returns the quantiles of every latency measured in the window.
func (l *Load) Latency() Quantiles { return l.rec.Total() }

// TakeInterval returns the activity since the previous call.
func (l *Load) TakeInterval() Interval {
	return Interval{
		Completed: l.ivCompleted.Swap(0), Failed: l.ivFailed.Swap(0), Dropped: l.ivDropped.Swap(0),
		Latency: l.rec.TakeInterval(),
	}
}

// worker holds one worker's event naming.
type worker struct {
	stream string
	idBase [8]byte
	next   uint64
}

func (l *Load) newWorker(i int) (*worker, error) {
	w := &worker{stream: "bench-" + l.run + "-" + strconv.Itoa(i)}
	if _, err := rand.Read(w.idBase[:]); err != nil {
		return nil, fmt.Errorf("event ids: %w", err)
	}
	return w, nil
}

// command returns the worker's next append: one event with a fresh id.
func (l *Load) command(w *worker) ledger.Command {
	var id [16]byte
	copy(id[:8], w.idBase[:])
	binary.BigEndian.PutUint64(id[8:], w.next)
	w.next++
	return ledger.Command{Append: &ledger.AppendCommand{
		Stream:          w.stream,
		ExpectedVersion: ledger.ExpectedAny,
		Events:          []ledger.EventData{{ID: id, Type: EventType, ContentType: ledger.ContentJSON, Data: l.payload}},
	}}
}

func (l *Load) closedWorker(ctx context.Context, i int, s Submitter) {
	defer l.wg.Done()
	w, err := l.newWorker(i)
	if err != nil {
		l.fail(err)
		return
	}
	for ctx.Err() == nil {
		if !l.submit(ctx, s, w) {
			// Do not spin on a network that refuses everything at once.
			// The error only says the load is stopping.
			_ = wait(ctx, failurePause)
		}
	}
}

func (l *Load) openWorker(ctx context.Context, i int, s Submitter, work <-chan struct{}) {
	defer l.wg.Done()
	w, err := l.newWorker(i)
	if err != nil {
		l.fail(err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-work:
			// An open-loop worker's failure costs nothing extra: the
			// schedule paces it.
			l.submit(ctx, s, w)
		}
	}
}

// submit sends one event, counts its outcome if it belongs to the window,
// and reports whether it succeeded.
func (l *Load) submit(ctx context.Context, s Submitter, w *worker) bool {
	cmd := l.command(w)
	start := time.Now()
	ws := l.windowStart.Load()
	counted := ws != 0 && start.UnixNano() >= ws && !l.closed.Load()
	if counted && l.cfg.Rate == 0 {
		// The open loop's dispatcher counts its own attempts.
		l.attempted.Add(1)
	}
	reply, err := s.Submit(ctx, cmd)
	latency := time.Since(start)
	if err == nil && reply.Result.Code != ledger.CodeOK {
		err = fmt.Errorf("result %s: %s", reply.Result.Code, reply.Result.Message)
	}
	if !counted || l.closed.Load() || ctx.Err() != nil {
		return err == nil
	}
	if err != nil {
		l.fail(err)
		return false
	}
	l.completed.Add(1)
	l.ivCompleted.Add(1)
	l.rec.Record(latency)
	return true
}

func (l *Load) fail(err error) {
	l.failed.Add(1)
	l.ivFailed.Add(1)
	l.errMu.Lock()
	if l.firstErr == "" {
		l.firstErr = err.Error()
	}
	l.errMu.Unlock()
}

// dispatch hands out events on the open loop's schedule, event k falling due
// at k/Rate seconds after the start. An event due while no worker is idle is
// dropped, not queued: the bound on outstanding requests holds, and the
// schedule does not bend to the system's speed.
func (l *Load) dispatch(ctx context.Context, work chan<- struct{}) {
	defer l.wg.Done()
	start := time.Now()
	var issued uint64
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		due := uint64(time.Since(start).Seconds() * l.cfg.Rate)
		for ; issued < due; issued++ {
			counted := l.inWindow()
			if counted {
				l.attempted.Add(1)
			}
			select {
			case work <- struct{}{}:
			default:
				if counted {
					l.dropped.Add(1)
					l.ivDropped.Add(1)
				}
			}
		}
		next := start.Add(time.Duration(float64(issued+1) / l.cfg.Rate * float64(time.Second)))
		pause.Reset(max(time.Until(next), dispatchPauseMin))
	}
}

// Window is a load's warmup and measured duration.
type Window struct {
	Warmup   time.Duration
	Duration time.Duration
}

// Measured is what Generate returns.
type Measured struct {
	Stats   LoadStats
	Latency Quantiles
	Elapsed time.Duration // the window's actual length
}

// Generate runs a load for w.Warmup unmeasured, then w.Duration measured, and
// stops it: the simple form for Go benchmarks and tests.
func Generate(ctx context.Context, cfg LoadConfig, w Window) (*Measured, error) {
	if w.Warmup < 0 || w.Duration <= 0 {
		return nil, fmt.Errorf("generate: warmup %v and duration %v: want ≥ 0 and > 0", w.Warmup, w.Duration)
	}
	l, err := StartLoad(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	if err := wait(ctx, w.Warmup); err != nil {
		return nil, fmt.Errorf("generate: warmup: %w", err)
	}
	opened := l.OpenWindow()
	if err := wait(ctx, w.Duration); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	closed := l.CloseWindow()
	return &Measured{Stats: l.Stats(), Latency: l.Latency(), Elapsed: closed.Sub(opened)}, nil
}

// wait pauses for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
