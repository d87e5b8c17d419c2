package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/pbft"
)

// Bounds of a Batcher.
const (
	// DefaultBatchHold is how long a Batcher waits, after a request comes for
	// a node with exchanges in flight, for others to share its exchange. A
	// request for a node with none goes at once.
	DefaultBatchHold = time.Millisecond
	// BatchHoldMax bounds BatcherConfig.Hold: the hold is added to the
	// latency of a request that comes while others are in flight.
	BatchHoldMax = 100 * time.Millisecond
	// batchQueueLen bounds the requests waiting for an exchange with one
	// node; past it a submit waits (until its context ends).
	batchQueueLen = 4096
	// batchPostsMax bounds one node's batch exchanges in flight; past it
	// requests wait, and later exchanges carry more of them.
	batchPostsMax = 64
	// batchBodyOverhead is what a batch body adds to its requests at most:
	// the array's header, and a byte string's header per request (counted
	// with each request in batchItemBytes).
	batchBodyOverhead = 9
	// answerFrameBytesMax bounds one frame of a batch answer: a reply bundle
	// and a few fields.
	answerFrameBytesMax = bundleBytesMax + 1024
	// noBatchRetry is how long a node that refused a batch submit as unknown
	// (a build before it) gets single submits before it is tried again.
	noBatchRetry = time.Minute
)

// ErrBatcherClosed is the answer of a request that was waiting in a Batcher
// when it was closed.
var ErrBatcherClosed = errors.New("client: batcher closed")

// errSubmitAlone says a request is to go to POST /v1/requests instead: the
// node does not serve batch submits (a build before them), refused its batch
// whole, or the request alone is larger than a batch may be.
var errSubmitAlone = errors.New("request goes to the single submit")

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	HTTPClient *http.Client // default: a new http.Client
	// Max bounds the requests in one exchange: 1..pbft.SubmitBatchMax, 0 for
	// the maximum. A batch is also cut before its body would pass
	// pbft.SubmitBatchBytesMax.
	Max int
	// Hold is how long a request waits for others when its node has
	// exchanges in flight: up to BatchHoldMax, 0 for DefaultBatchHold.
	Hold time.Duration
}

// A Batcher carries the signed requests of any number of Clients (Config.
// Batcher) to each node in shared exchanges with its batch submit (POST
// /v1/requests/batch). The node streams each request's answer as it finishes,
// so a request waits for its own answer only, plus at most Hold for others to
// join it. Each request is still signed, checked and answered on its own, and
// verified by its Client as before; what is shared is the HTTP exchange,
// which costs a client and a gateway more CPU per request than the rest of
// the client's work. An exchange lasts until every request in it is answered
// or has given up (its Client's timeout).
//
// A Batcher is safe for concurrent use; Close it when done.
type Batcher struct {
	http *http.Client
	max  int
	hold time.Duration

	mu     sync.Mutex
	queues map[string]*batchQueue // by node base URL
	closed bool
	// ctx ends at Close: it stops the queues, the exchanges in flight, and
	// every request waiting on them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// batchItem is one request waiting for its answer.
type batchItem struct {
	raw  []byte
	ctx  context.Context
	done chan batchResult // buffered: never blocks the exchange
}

type batchResult struct {
	a   answer
	err error
}

// batchItemBytes is what raw adds to a batch body: itself and its header.
func batchItemBytes(raw []byte) int { return len(raw) + batchBodyOverhead }

// batchQueue is one node's waiting requests and exchanges in flight.
type batchQueue struct {
	node  string
	items chan *batchItem
	posts chan struct{} // a token per exchange in flight
	// noBatchUntil (Unix ns) is set when the node did not know the batch
	// submit; until then its requests go to the single submit.
	noBatchUntil atomic.Int64
}

// NewBatcher checks cfg and returns a Batcher.
func NewBatcher(cfg BatcherConfig) (*Batcher, error) {
	switch {
	case cfg.Max < 0 || cfg.Max > pbft.SubmitBatchMax:
		return nil, fmt.Errorf("client: batches of %d requests: want 1..%d, or 0 for the most", cfg.Max, pbft.SubmitBatchMax)
	case cfg.Hold < 0 || cfg.Hold > BatchHoldMax:
		return nil, fmt.Errorf("client: batch hold %v: want up to %v, or 0 for %v", cfg.Hold, BatchHoldMax, DefaultBatchHold)
	}
	b := &Batcher{http: cfg.HTTPClient, max: cfg.Max, hold: cfg.Hold, queues: map[string]*batchQueue{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.max == 0 {
		b.max = pbft.SubmitBatchMax
	}
	if b.hold == 0 {
		b.hold = DefaultBatchHold
	}
	if b.http == nil {
		b.http = &http.Client{}
	}
	return b, nil
}

// Close stops the Batcher: every request waiting on it, to be sent or for
// its answer, returns ErrBatcherClosed at once (one already sent may still
// commit; a retry of its bytes elsewhere gets the original result), and the
// exchanges in flight are cut. Close returns when they have stopped.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// exchange sends raw to node in a shared exchange and returns its answer as
// Client.exchange would have.
func (b *Batcher) exchange(ctx context.Context, node string, raw []byte) (answer, error) {
	if batchBodyOverhead+batchItemBytes(raw) > pbft.SubmitBatchBytesMax {
		return answer{}, errSubmitAlone
	}
	q, err := b.queue(node)
	if err != nil {
		return answer{}, err
	}
	if time.Now().UnixNano() < q.noBatchUntil.Load() {
		return answer{}, errSubmitAlone
	}
	it := &batchItem{raw: raw, ctx: ctx, done: make(chan batchResult, 1)}
	select {
	case q.items <- it:
	case <-ctx.Done():
		return answer{}, &retryableError{err: fmt.Errorf("%s: waiting to be sent: %w", node, ctx.Err())}
	case <-b.ctx.Done():
		return answer{}, ErrBatcherClosed
	}
	select {
	case r := <-it.done:
		return r.a, r.err
	case <-ctx.Done():
		return answer{}, &retryableError{err: fmt.Errorf("%s: %w", node, ctx.Err())}
	case <-b.ctx.Done():
		return answer{}, ErrBatcherClosed
	}
}

// queue returns node's queue, starting it on first use.
func (b *Batcher) queue(node string) (*batchQueue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBatcherClosed
	}
	q := b.queues[node]
	if q == nil {
		q = &batchQueue{node: node, items: make(chan *batchItem, batchQueueLen), posts: make(chan struct{}, batchPostsMax)}
		b.queues[node] = q
		b.wg.Add(1)
		go b.run(q)
	}
	return q, nil
}

// run gathers q's requests into exchanges: from the first waiting request, it
// takes what comes within the hold (while other exchanges with the node are
// in flight; else only what waits already), up to max requests and
// pbft.SubmitBatchBytesMax bytes, then waits for an exchange's token and
// sends them. A request that would pass the byte bound starts the next batch.
func (b *Batcher) run(q *batchQueue) {
	defer b.wg.Done()
	hold := time.NewTimer(b.hold)
	hold.Stop()
	var next *batchItem // taken from the queue, did not fit the last batch
	for {
		first := next
		next = nil
		if first == nil {
			select {
			case first = <-q.items:
			case <-b.ctx.Done():
				return
			}
		}
		batch := []*batchItem{first}
		size := batchBodyOverhead + batchItemBytes(first.raw)
		// add takes it into the batch, or keeps it for the next one, and
		// reports whether the batch has room for more.
		add := func(it *batchItem) bool {
			if size+batchItemBytes(it.raw) > pbft.SubmitBatchBytesMax {
				next = it
				return false
			}
			batch = append(batch, it)
			size += batchItemBytes(it.raw)
			return len(batch) < b.max
		}
		// With nothing in flight to this node no answers are due that would
		// bring more requests soon, so holding would only add latency: take
		// what waits now (a nil hold channel).
		var held <-chan time.Time
		if len(q.posts) > 0 {
			hold.Reset(b.hold)
			held = hold.C
		}
		for len(batch) < b.max {
			it := take(q.items, held)
			if it == nil || !add(it) {
				break
			}
		}
		hold.Stop()
		select {
		case q.posts <- struct{}{}:
		case <-b.ctx.Done():
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() { <-q.posts }()
			b.post(q, batch)
		}()
	}
}

// take returns the next waiting request: with a nil held, one that waits
// already, else one that comes before held fires; nil if there is none.
func take(items <-chan *batchItem, held <-chan time.Time) *batchItem {
	if held == nil {
		select {
		case it := <-items:
			return it
		default:
			return nil
		}
	}
	select {
	case it := <-items:
		return it
	case <-held:
		return nil
	}
}

// failAll answers every request of batch with err.
func failAll(batch []*batchItem, err error) {
	for _, it := range batch {
		it.done <- batchResult{err: err}
	}
}

// post sends batch to node and hands each request its answer as it arrives.
// Requests whose context ended while they waited are left out; the exchange
// is cut once every request in it is answered or has given up.
func (b *Batcher) post(q *batchQueue, batch []*batchItem) {
	node := q.node
	live := batch[:0]
	for _, it := range batch {
		if it.ctx.Err() == nil {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	// Each request holds the exchange open until it is answered or gives up.
	var holding atomic.Int64
	holding.Store(int64(len(live)))
	release := func() {
		if holding.Add(-1) == 0 {
			cancel()
		}
	}
	stops := make([]func() bool, len(live))
	raws := make([][]byte, len(live))
	for i, it := range live {
		raws[i] = it.raw
		stops[i] = context.AfterFunc(it.ctx, release)
	}
	// deliver hands request i its result and lets go of the exchange for it.
	deliver := func(i int, r batchResult) {
		live[i].done <- r
		if stops[i]() {
			release()
		}
	}
	answered := make([]bool, len(live))
	failRest := func(err error) {
		for i := range live {
			if !answered[i] {
				answered[i] = true
				deliver(i, batchResult{err: err})
			}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, node+"/v1/requests/batch", bytes.NewReader(codec.MustMarshal(raws)))
	if err != nil {
		failRest(fmt.Errorf("%s: %w", node, err))
		return
	}
	req.Header.Set("Content-Type", mediaCBOR)
	req.Header.Set("Accept", pbft.SubmitAnswersMediaType)
	resp, err := b.http.Do(req)
	if err != nil {
		failRest(&retryableError{err: fmt.Errorf("%s: %w", node, err)})
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != pbft.SubmitAnswersMediaType {
		failRest(b.batchRefused(q, resp))
		return
	}
	err = readAnswers(resp.Body, answered, func(sa pbft.SubmitAnswer) {
		limit := int64(bundleBytesMax)
		if sa.Status >= 300 {
			limit = errorBytesMax
		}
		a, err := classify(node, int(sa.Status), sa.ContentType, sa.Body, limit)
		deliver(int(sa.Index), batchResult{a: a, err: err})
	})
	if err != nil {
		failRest(&retryableError{err: fmt.Errorf("%s: batch answer: %w", node, err)})
	}
}

// batchRefused is the error for every request of a batch the node did not
// answer with frames. A 5xx or 429 is retryable, as for a single submit; a 200
// of another kind is a faulty node, so the requests go on to the next; any
// other refusal of the batch as a whole (a node without batch submits, or one
// that will not take this batch) sends each request to the single submit,
// which gives it its own answer.
func (b *Batcher) batchRefused(q *batchQueue, resp *http.Response) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, errorBytesMax+1))
	if err != nil {
		return &retryableError{err: fmt.Errorf("%s: reading the answer: %w", q.node, err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return &retryableError{err: fmt.Errorf("%s: a batch answer of type %q", q.node, resp.Header.Get("Content-Type"))}
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		q.noBatchUntil.Store(time.Now().Add(noBatchRetry).UnixNano())
		return errSubmitAlone
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || int64(len(raw)) > errorBytesMax:
		_, err := classify(q.node, resp.StatusCode, resp.Header.Get("Content-Type"), raw, errorBytesMax)
		return err
	default:
		return errSubmitAlone
	}
}

// readAnswers reads a batch answer's frames from body and hands each to each,
// marking its request answered, until every request is. An answer for a
// request out of range or answered before, a malformed frame, or an end
// before the last answer stops it with an error.
func readAnswers(body io.Reader, answered []bool, each func(pbft.SubmitAnswer)) error {
	left := 0
	for _, a := range answered {
		if !a {
			left++
		}
	}
	for ; left > 0; left-- {
		frame, err := codec.ReadFrame(body, answerFrameBytesMax)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("ended with %d of %d requests unanswered", left, len(answered))
		}
		if err != nil {
			return err
		}
		sa, err := codec.Canonical[pbft.SubmitAnswer](frame)
		if err != nil {
			return fmt.Errorf("malformed answer: %w", err)
		}
		if int(sa.Index) >= len(answered) || answered[sa.Index] {
			return fmt.Errorf("an answer for request %d of %d, out of range or a second one", sa.Index, len(answered))
		}
		answered[sa.Index] = true
		each(sa)
	}
	return nil
}
