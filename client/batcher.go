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
	// answerFrameBytesMax bounds one frame of a batch answer: a reply bundle
	// and a few fields.
	answerFrameBytesMax = bundleBytesMax + 1024
	// noBatchRetry is how long a node that refused a batch submit as unknown
	// (a build before it) gets single submits before it is tried again.
	noBatchRetry = time.Minute
	// mediaAnswerFrames is the media type of a batch submit's answer.
	mediaAnswerFrames = "application/x-ordo-answer-frames"
)

// ErrBatcherClosed is the answer of a request that was waiting in a Batcher
// when it was closed.
var ErrBatcherClosed = errors.New("client: batcher closed")

// errNoBatchSubmit says a node does not serve POST /v1/requests/batch (a build
// before it); the request goes to POST /v1/requests instead.
var errNoBatchSubmit = errors.New("node has no batch submit")

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	HTTPClient *http.Client  // default: a new http.Client
	Max        int           // requests per exchange, 1..pbft.SubmitBatchMax (default the maximum)
	Hold       time.Duration // 0..BatchHoldMax (default DefaultBatchHold)
	Timeout    time.Duration // one exchange, all its answers (default DefaultTimeout)
}

// A Batcher carries the signed requests of any number of Clients (Config.
// Batcher) to each node in shared exchanges with its batch submit (POST
// /v1/requests/batch), up to Max at a time. The node streams each request's
// answer as it finishes, so a request waits for its own answer only, plus at
// most Hold for others to join it. Each request is still signed, checked and
// answered on its own, and verified by its Client as before; what is shared is
// the HTTP exchange, which costs a client and a gateway more CPU per request
// than the rest of the client's work.
//
// A Batcher is safe for concurrent use; Close it when done.
type Batcher struct {
	http    *http.Client
	max     int
	hold    time.Duration
	timeout time.Duration

	mu     sync.Mutex
	queues map[string]*batchQueue // by node base URL
	closed bool
	stop   chan struct{}
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
	b := &Batcher{http: cfg.HTTPClient, max: cfg.Max, hold: cfg.Hold, timeout: cfg.Timeout, queues: map[string]*batchQueue{}, stop: make(chan struct{})}
	switch {
	case b.max < 0 || b.max > pbft.SubmitBatchMax:
		return nil, fmt.Errorf("client: batches of %d requests: want 1..%d", b.max, pbft.SubmitBatchMax)
	case b.hold < 0 || b.hold > BatchHoldMax:
		return nil, fmt.Errorf("client: batch hold %v: want 0..%v", b.hold, BatchHoldMax)
	case b.timeout < 0:
		return nil, fmt.Errorf("client: negative batch timeout %v", b.timeout)
	}
	if b.max == 0 {
		b.max = pbft.SubmitBatchMax
	}
	if cfg.Hold == 0 {
		b.hold = DefaultBatchHold
	}
	if b.timeout == 0 {
		b.timeout = DefaultTimeout
	}
	if b.http == nil {
		b.http = &http.Client{}
	}
	return b, nil
}

// Close fails the requests still waiting with ErrBatcherClosed and stops the
// Batcher; exchanges in flight finish.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// exchange sends raw to node in a shared exchange and returns its answer as
// Client.exchange would have.
func (b *Batcher) exchange(ctx context.Context, node string, raw []byte) (answer, error) {
	q, err := b.queue(node)
	if err != nil {
		return answer{}, err
	}
	if time.Now().UnixNano() < q.noBatchUntil.Load() {
		return answer{}, errNoBatchSubmit
	}
	it := &batchItem{raw: raw, ctx: ctx, done: make(chan batchResult, 1)}
	select {
	case q.items <- it:
	case <-ctx.Done():
		return answer{}, &retryableError{err: fmt.Errorf("%s: waiting to be sent: %w", node, ctx.Err())}
	case <-b.stop:
		return answer{}, ErrBatcherClosed
	}
	select {
	case r := <-it.done:
		return r.a, r.err
	case <-ctx.Done():
		return answer{}, &retryableError{err: fmt.Errorf("%s: %w", node, ctx.Err())}
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
// in flight; else only what waits already), up to max, then waits for an
// exchange's token and sends them.
func (b *Batcher) run(q *batchQueue) {
	defer b.wg.Done()
	hold := time.NewTimer(b.hold)
	hold.Stop()
	for {
		var first *batchItem
		select {
		case first = <-q.items:
		case <-b.stop:
			b.failWaiting(q)
			return
		}
		batch := []*batchItem{first}
		if len(q.posts) == 0 {
			// Nothing in flight to this node, so no answers are due that
			// would bring more requests soon: holding would only add
			// latency. Take what waits now.
		now:
			for len(batch) < b.max {
				select {
				case it := <-q.items:
					batch = append(batch, it)
				default:
					break now
				}
			}
		} else {
			hold.Reset(b.hold)
		gather:
			for len(batch) < b.max {
				select {
				case it := <-q.items:
					batch = append(batch, it)
				case <-hold.C:
					break gather
				}
			}
			hold.Stop()
		}
		select {
		case q.posts <- struct{}{}:
		case <-b.stop:
			failAll(batch, ErrBatcherClosed)
			b.failWaiting(q)
			return
		}
		go func() {
			defer func() { <-q.posts }()
			b.post(q, batch)
		}()
	}
}

// failWaiting answers every request still in q with ErrBatcherClosed.
func (b *Batcher) failWaiting(q *batchQueue) {
	for {
		select {
		case it := <-q.items:
			it.done <- batchResult{err: ErrBatcherClosed}
		default:
			return
		}
	}
}

// failAll answers every request of batch with err.
func failAll(batch []*batchItem, err error) {
	for _, it := range batch {
		it.done <- batchResult{err: err}
	}
}

// post sends batch to node and hands each request its answer as it arrives.
// Requests whose context ended while they waited are left out.
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
	raws := make([][]byte, len(live))
	for i, it := range live {
		raws[i] = it.raw
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, node+"/v1/requests/batch", bytes.NewReader(codec.MustMarshal(raws)))
	if err != nil {
		failAll(live, fmt.Errorf("%s: %w", node, err))
		return
	}
	req.Header.Set("Content-Type", mediaCBOR)
	req.Header.Set("Accept", mediaAnswerFrames)
	resp, err := b.http.Do(req)
	if err != nil {
		failAll(live, &retryableError{err: fmt.Errorf("%s: %w", node, err)})
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != mediaAnswerFrames {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, errorBytesMax+1))
		switch {
		case err != nil:
			failAll(live, &retryableError{err: fmt.Errorf("%s: reading the answer: %w", node, err)})
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
			q.noBatchUntil.Store(time.Now().Add(noBatchRetry).UnixNano())
			failAll(live, errNoBatchSubmit)
		default:
			a, err := classify(node, resp.StatusCode, resp.Header.Get("Content-Type"), raw, errorBytesMax)
			if err == nil {
				// A whole batch refused with a 4xx, or a 200 of another
				// kind: no request got its own answer.
				err = answerError(node, a.status, a.body)
			}
			failAll(live, err)
		}
		return
	}
	answered := make([]bool, len(live))
	err = readAnswers(resp.Body, answered, func(sa pbft.SubmitAnswer) {
		a, err := classify(node, int(sa.Status), sa.ContentType, sa.Body, bundleBytesMax)
		live[sa.Index].done <- batchResult{a: a, err: err}
	})
	if err != nil {
		failUnanswered(live, answered, &retryableError{err: fmt.Errorf("%s: batch answer: %w", node, err)})
	}
}

// readAnswers reads a batch answer's frames from body and hands each to each,
// marking its request answered, until every request is. An answer for a
// request out of range or answered before, a malformed frame, or an end
// before the last answer stops it with an error.
func readAnswers(body io.Reader, answered []bool, each func(pbft.SubmitAnswer)) error {
	for left := len(answered); left > 0; left-- {
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

// failUnanswered answers the requests not yet answered with err.
func failUnanswered(live []*batchItem, answered []bool, err error) {
	for i, it := range live {
		if !answered[i] {
			it.done <- batchResult{err: err}
		}
	}
}
