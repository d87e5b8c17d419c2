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

// LoadStats counts what happened inside the measured window. In the closed
// loop a request counts if it was sent after the window opened; in the open
// loop if its time on the schedule fell inside the window, so that Attempted
// is the rate times the window however late the dispatcher ran. Either way it
// is completed or failed if its answer came before the window closed.
type LoadStats struct {
	Attempted  uint64 // sent, plus dropped by the generator
	Completed  uint64 // answered with a verified reply bundle and result ok
	Failed     uint64 // an error, or a result other than ok
	Dropped    uint64 // open loop: due while every worker was busy, or after the window closed, never sent
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

	// The window: opened at windowStart (Unix ns, 0 = not yet), closed at
	// windowEnd once closed is set (windowEnd is stored first).
	windowStart atomic.Int64
	windowEnd   atomic.Int64
	closed      atomic.Bool
	// scheduleStart is when the open loop's event k falls due, less
	// (k+1)/Rate seconds.
	scheduleStart time.Time

	// attempted is the closed loop's; the open loop's attempts come from the
	// schedule, and sent counts those of them the dispatcher handed out.
	attempted, sent, completed, failed atomic.Uint64
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
	// Unbuffered: a send succeeds only when a worker is idle. An item says
	// whether its event is due inside the window.
	work := make(chan bool)
	for i, s := range cfg.Submitters {
		l.wg.Add(1)
		go l.openWorker(ctx, i, s, work)
	}
	l.scheduleStart = time.Now()
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
	now := time.Now()
	l.windowEnd.Store(now.UnixNano())
	l.closed.Store(true)
	return now
}

// Stop ends the load and waits for every worker to return.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// dueBy is how many of the open loop's events fall due by t.
func (l *Load) dueBy(t time.Time) uint64 {
	if d := t.Sub(l.scheduleStart); d > 0 {
		return uint64(d.Seconds() * l.cfg.Rate)
	}
	return 0
}

// dueAt is when the open loop's event k falls due.
func (l *Load) dueAt(k uint64) time.Time {
	return l.scheduleStart.Add(time.Duration(float64(k+1) / l.cfg.Rate * float64(time.Second)))
}

// dueInWindow reports whether an event due at t counts: the window opened
// at or before t, and had not closed by t.
func (l *Load) dueInWindow(t time.Time) bool {
	ws, we := l.windowStart.Load(), l.windowEnd.Load()
	return ws != 0 && t.UnixNano() >= ws && (we == 0 || t.UnixNano() < we)
}

// Stats returns the window's counts so far.
func (l *Load) Stats() LoadStats {
	l.errMu.Lock()
	first := l.firstErr
	l.errMu.Unlock()
	st := LoadStats{Attempted: l.attempted.Load(), Completed: l.completed.Load(), Failed: l.failed.Load(), FirstError: first}
	if l.cfg.Rate > 0 {
		// Every event due inside the window so far, sent or not: those the
		// dispatcher has not reached yet are as good as dropped.
		st.Attempted = 0
		if ws := l.windowStart.Load(); ws != 0 {
			end := time.Now()
			if we := l.windowEnd.Load(); we != 0 {
				end = time.Unix(0, we)
			}
			byEnd, byStart := l.dueBy(end), l.dueBy(time.Unix(0, ws))
			st.Attempted = byEnd - min(byEnd, byStart)
			st.Dropped = st.Attempted - min(st.Attempted, l.sent.Load())
		}
	}
	return st
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
		ws := l.windowStart.Load()
		counted := ws != 0 && time.Now().UnixNano() >= ws && !l.closed.Load()
		if counted {
			l.attempted.Add(1)
		}
		if !l.submit(ctx, s, w, counted) {
			// Do not spin on a network that refuses everything at once.
			// The error only says the load is stopping.
			_ = wait(ctx, failurePause)
		}
	}
}

func (l *Load) openWorker(ctx context.Context, i int, s Submitter, work <-chan bool) {
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
		case counted := <-work:
			// An open-loop worker's failure costs nothing extra: the
			// schedule paces it.
			l.submit(ctx, s, w, counted)
		}
	}
}

// submit sends one event, counts its outcome if it belongs to the window
// (counted) and its answer came before the window closed, and reports
// whether it succeeded.
func (l *Load) submit(ctx context.Context, s Submitter, w *worker, counted bool) bool {
	cmd := l.command(w)
	start := time.Now()
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
// at (k+1)/Rate seconds after scheduleStart. An event due while no worker is
// idle is dropped, not queued: the bound on outstanding requests holds, and
// the schedule does not bend to the system's speed. An event due inside the
// window that the dispatcher reaches only after the window closed is dropped
// too: the generator fell behind, and the schedule still counts it.
func (l *Load) dispatch(ctx context.Context, work chan<- bool) {
	defer l.wg.Done()
	var issued uint64
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		for due := l.dueBy(time.Now()); issued < due; issued++ {
			// closed first: once it is set, so is windowEnd.
			closed := l.closed.Load()
			counted := l.dueInWindow(l.dueAt(issued))
			if counted && closed {
				l.ivDropped.Add(1)
				continue
			}
			select {
			case work <- counted:
				if counted {
					l.sent.Add(1)
				}
			default:
				if counted {
					l.ivDropped.Add(1)
				}
			}
		}
		pause.Reset(max(time.Until(l.dueAt(issued)), dispatchPauseMin))
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
