package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/pbft"
)

// batchNode is an httptest server serving only POST /v1/requests/batch: it
// writes the frames that answer returns for the batch's requests; with a nil
// answer it refuses the whole batch with a 503, with an empty one it answers
// 200 with a body that is not frames.
type batchNode struct {
	srv      *httptest.Server
	mu       sync.Mutex
	posts    [][][]byte // the requests of every batch it was sent
	received int        // requests in them
}

func newBatchNode(t *testing.T, answer func(raws [][]byte) []pbft.SubmitAnswer) *batchNode {
	t.Helper()
	return newGatedBatchNode(t, answer, nil)
}

// newGatedBatchNode is newBatchNode whose answers wait, if gate is set, until
// gate is closed.
func newGatedBatchNode(t *testing.T, answer func(raws [][]byte) []pbft.SubmitAnswer, gate <-chan struct{}) *batchNode {
	t.Helper()
	bn := &batchNode{}
	bn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/requests/batch" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var raws [][]byte
		if err := codec.Unmarshal(body, &raws); err != nil || r.Header.Get("Content-Type") != mediaCBOR {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"not a batch","code":"malformed"}`)
			return
		}
		bn.mu.Lock()
		bn.posts = append(bn.posts, raws)
		bn.received += len(raws)
		bn.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if answer == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"the node is stopping","code":"stopping"}`)
			return
		}
		answers := answer(raws)
		if answers != nil && len(answers) == 0 {
			w.Header().Set("Content-Type", mediaCBOR)
			w.Write(codec.MustMarshal(raws))
			return
		}
		var out []byte
		for _, a := range answers {
			if out, err = codec.AppendFrame(out, &a); err != nil {
				t.Error(err)
			}
		}
		w.Header().Set("Content-Type", pbft.SubmitAnswersMediaType)
		w.Write(out)
	}))
	t.Cleanup(bn.srv.Close)
	return bn
}

func (bn *batchNode) batches() [][][]byte {
	bn.mu.Lock()
	defer bn.mu.Unlock()
	return append([][][]byte(nil), bn.posts...)
}

// goodAnswers answers every request with a valid bundle, last request first.
func (tn *testNet) goodAnswers(t *testing.T) func(raws [][]byte) []pbft.SubmitAnswer {
	return func(raws [][]byte) []pbft.SubmitAnswer {
		var out []pbft.SubmitAnswer
		for i := len(raws) - 1; i >= 0; i-- {
			out = append(out, pbft.SubmitAnswer{Index: uint32(i), Status: http.StatusOK, ContentType: mediaCBOR, Body: codec.MustMarshal(tn.bundleFor(t, raws[i], 0, 2))})
		}
		return out
	}
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestBatcher(t *testing.T, cfg BatcherConfig) *Batcher {
	t.Helper()
	b, err := NewBatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func (tn *testNet) newBatchClient(t *testing.T, b *Batcher, nodes ...string) *Client {
	t.Helper()
	c, err := New(Config{Nodes: nodes, Key: tn.client, Chain: tn.chain, Validators: tn.pubs, Timeout: 5 * time.Second, Logger: quietLogger(), Batcher: b})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// submitAll submits k appends at once through c and returns their errors.
func submitAll(c *Client, k int) []error {
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() {
			r, err := c.Submit(context.Background(), appendCmd())
			if err == nil && r.Replies < 2 {
				err = errors.New("reply vouched for by fewer than f+1")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

// Requests submitted together share exchanges of at most Max, each gets its
// own verified reply however the answers are ordered, and no request is sent
// twice.
func TestBatcherSharesExchanges(t *testing.T) {
	tn := newTestNet(t, 4)
	const k, max = 32, 8
	// The node answers once all k requests came, so exchanges are in flight
	// while the later requests come, and those are held to share one.
	gate := make(chan struct{})
	bn := newGatedBatchNode(t, tn.goodAnswers(t), gate)
	b := newTestBatcher(t, BatcherConfig{Max: max, Hold: BatchHoldMax})
	c := tn.newBatchClient(t, b, bn.srv.URL)
	done := make(chan []error)
	go func() { done <- submitAll(c, k) }()
	waitUntil(t, 10*time.Second, "all requests to reach the node", func() bool {
		bn.mu.Lock()
		defer bn.mu.Unlock()
		return bn.received == k
	})
	close(gate)
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	seen := map[string]bool{}
	shared := false
	for _, raws := range bn.batches() {
		if len(raws) > max {
			t.Fatalf("a batch of %d requests, Max is %d", len(raws), max)
		}
		shared = shared || len(raws) > 1
		for _, raw := range raws {
			if seen[string(raw)] {
				t.Fatal("a request sent twice")
			}
			seen[string(raw)] = true
		}
	}
	if len(seen) != k || !shared {
		t.Fatalf("%d requests sent in %d exchanges, want %d, some shared", len(seen), len(bn.batches()), k)
	}
}

// A request for a node with no exchange in flight is not held: one client
// submitting in turn waits for no hold.
func TestBatcherSendsALoneRequestAtOnce(t *testing.T) {
	tn := newTestNet(t, 4)
	bn := newBatchNode(t, tn.goodAnswers(t))
	b := newTestBatcher(t, BatcherConfig{Hold: BatchHoldMax})
	c := tn.newBatchClient(t, b, bn.srv.URL)
	const k = 5
	start := time.Now()
	for range k {
		if _, err := c.Submit(context.Background(), appendCmd()); err != nil {
			t.Fatal(err)
		}
	}
	// Held, the submits would take at least k holds.
	if took := time.Since(start); took >= k*BatchHoldMax {
		t.Fatalf("%d submits in turn took %v: each was held", k, took)
	}
	if len(bn.batches()) != k {
		t.Fatalf("%d exchanges for %d submits in turn", len(bn.batches()), k)
	}
}

// A request refused inside a batch answer gets the node's refusal, as from
// the single submit; the others in the batch are unaffected.
func TestBatcherPassesOnRefusals(t *testing.T) {
	tn := newTestNet(t, 4)
	good := tn.goodAnswers(t)
	bn := newBatchNode(t, func(raws [][]byte) []pbft.SubmitAnswer {
		out := good(raws)
		out[0] = pbft.SubmitAnswer{Index: out[0].Index, Status: http.StatusConflict, ContentType: mediaJSON, Body: []byte(`{"error":"id reused","code":"conflict"}`)}
		return out
	})
	b := newTestBatcher(t, BatcherConfig{Hold: BatchHoldMax})
	var refused, ok int
	for _, err := range submitAll(tn.newBatchClient(t, b, bn.srv.URL), 4) {
		var apiErr *APIError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &apiErr) && apiErr.Code == "conflict":
			refused++
		default:
			t.Fatalf("submit: %v", err)
		}
	}
	if refused != len(bn.batches()) || ok != 4-refused {
		t.Fatalf("%d refused and %d ok in %d exchanges, want one refusal per exchange", refused, ok, len(bn.batches()))
	}
}

// Requests a batch answer leaves unanswered, or answers with a forged
// bundle, go to the next node.
func TestBatcherFailsOverFromBrokenAnswers(t *testing.T) {
	tn := newTestNet(t, 4)
	good := tn.goodAnswers(t)
	cases := []struct {
		name   string
		answer func(raws [][]byte) []pbft.SubmitAnswer
	}{
		{"cut short", func(raws [][]byte) []pbft.SubmitAnswer { return good(raws)[:len(raws)/2] }},
		{"forged", func(raws [][]byte) []pbft.SubmitAnswer {
			out := good(raws)
			out[0].Body = codec.MustMarshal(tn.bundleFor(t, []byte("another request"), 0, 2))
			return out
		}},
		{"out of range", func(raws [][]byte) []pbft.SubmitAnswer {
			out := good(raws)
			out[len(out)-1].Index = uint32(len(raws))
			return out
		}},
		{"200 of another type", func(raws [][]byte) []pbft.SubmitAnswer { return []pbft.SubmitAnswer{} }},
		// A refusal's body has the bound of an error body, not a bundle's.
		{"refusal above its bound", func(raws [][]byte) []pbft.SubmitAnswer {
			out := good(raws)
			out[0] = pbft.SubmitAnswer{Index: out[0].Index, Status: http.StatusConflict, ContentType: mediaJSON, Body: bytes.Repeat([]byte{' '}, errorBytesMax+1)}
			return out
		}},
		{"whole batch refused", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := newBatchNode(t, tc.answer)
			honest := newBatchNode(t, good)
			b := newTestBatcher(t, BatcherConfig{Hold: BatchHoldMax})
			for i, err := range submitAll(tn.newBatchClient(t, b, broken.srv.URL, honest.srv.URL), 4) {
				if err != nil {
					t.Fatalf("submit %d: %v", i, err)
				}
			}
			if len(honest.batches()) == 0 {
				t.Fatal("nothing went to the honest node")
			}
		})
	}
}

// A node without the batch submit (an older build) gets the requests on
// POST /v1/requests.
func TestBatcherFallsBackToSingleSubmit(t *testing.T) {
	tn := newTestNet(t, 4)
	old := newFakeNode(t, tn, mediaCBOR, func(req []byte) (int, []byte) {
		return http.StatusOK, codec.MustMarshal(tn.bundleFor(t, req, 1, 3))
	})
	b := newTestBatcher(t, BatcherConfig{})
	c := tn.newBatchClient(t, b, old.srv.URL)
	for range 3 {
		if _, err := c.Submit(context.Background(), appendCmd()); err != nil {
			t.Fatal(err)
		}
	}
	// The node is asked for a batch submit once, not per request.
	if got := len(old.received()); old.hits.Load() != 4 || got != 3 {
		t.Fatalf("%d hits, %d single submits; want one refused batch, then three single submits", old.hits.Load(), got)
	}
}

func TestBatcherClosed(t *testing.T) {
	tn := newTestNet(t, 4)
	bn := newBatchNode(t, tn.goodAnswers(t))
	b := newTestBatcher(t, BatcherConfig{})
	c := tn.newBatchClient(t, b, bn.srv.URL)
	b.Close()
	if _, err := c.Submit(context.Background(), appendCmd()); !errors.Is(err, ErrBatcherClosed) {
		t.Fatalf("after Close: %v, want ErrBatcherClosed", err)
	}
	if len(bn.batches()) != 0 {
		t.Fatal("a closed batcher sent a batch")
	}
}

func TestNewBatcherChecksConfig(t *testing.T) {
	for _, cfg := range []BatcherConfig{
		{Max: -1}, {Max: pbft.SubmitBatchMax + 1}, {Hold: -time.Millisecond}, {Hold: BatchHoldMax + 1},
	} {
		if _, err := NewBatcher(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// FuzzReadAnswers: whatever a node streams, each request is answered at most
// once, only requests of the batch are, and all are only on success.
func FuzzReadAnswers(f *testing.F) {
	var good []byte
	for i := range 3 {
		good, _ = codec.AppendFrame(good, &pbft.SubmitAnswer{Index: uint32(2 - i), Status: 200, ContentType: mediaCBOR, Body: []byte{0xa0}})
	}
	f.Add(good, uint8(3))
	f.Add(good[:len(good)-2], uint8(3))
	f.Add(good, uint8(2))
	twice, _ := codec.AppendFrame(good[:0:0], &pbft.SubmitAnswer{Index: 1, Status: 200})
	twice, _ = codec.AppendFrame(twice, &pbft.SubmitAnswer{Index: 1, Status: 200})
	f.Add(twice, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, n uint8) {
		if n == 0 {
			return
		}
		answered := make([]bool, n)
		got := map[uint32]bool{}
		err := readAnswers(bytes.NewReader(stream), answered, func(sa pbft.SubmitAnswer) {
			if int(sa.Index) >= int(n) || got[sa.Index] {
				t.Fatalf("answer for request %d of %d handed on (twice: %v)", sa.Index, n, got[sa.Index])
			}
			got[sa.Index] = true
		})
		if err == nil && len(got) != int(n) {
			t.Fatalf("success with %d of %d answered", len(got), n)
		}
		for i, a := range answered {
			if a != got[uint32(i)] {
				t.Fatalf("request %d marked %v, handed on %v", i, a, got[uint32(i)])
			}
		}
	})
}

func TestReadAnswersRefusesASecondAnswer(t *testing.T) {
	var stream []byte
	for _, i := range []uint32{1, 1, 0} {
		stream, _ = codec.AppendFrame(stream, &pbft.SubmitAnswer{Index: i, Status: http.StatusOK})
	}
	answered := make([]bool, 2)
	handed := 0
	err := readAnswers(bytes.NewReader(stream), answered, func(pbft.SubmitAnswer) { handed++ })
	if err == nil || handed != 1 || !answered[1] || answered[0] {
		t.Fatalf("err %v, %d handed on, answered %v; want an error after the first answer for request 1", err, handed, answered)
	}
}

// Requests too large to share one body go in several, each within
// pbft.SubmitBatchBytesMax.
func TestBatcherCutsBatchesAtTheByteBound(t *testing.T) {
	tn := newTestNet(t, 4)
	gate := make(chan struct{})
	bn := newGatedBatchNode(t, tn.goodAnswers(t), gate)
	const k = 8
	b := newTestBatcher(t, BatcherConfig{Hold: BatchHoldMax})
	c, err := New(Config{Nodes: []string{bn.srv.URL}, Key: tn.client, Chain: tn.chain, Validators: tn.pubs, Timeout: 10 * time.Second, Logger: quietLogger(), Batcher: b, RequestBytesMax: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cmd := appendCmd()
	cmd.Append.Events[0].Data = []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	errs := make(chan error, k)
	for range k {
		go func() {
			_, err := c.Submit(context.Background(), cmd)
			errs <- err
		}()
	}
	waitUntil(t, 10*time.Second, "all requests to reach the node", func() bool {
		bn.mu.Lock()
		defer bn.mu.Unlock()
		return bn.received == k
	})
	close(gate)
	for range k {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, raws := range bn.batches() {
		if n := len(codec.MustMarshal(raws)); n > pbft.SubmitBatchBytesMax {
			t.Fatalf("a batch body of %d bytes, above %d", n, pbft.SubmitBatchBytesMax)
		}
	}
	if len(bn.batches()) < 3 {
		t.Fatalf("%d batches carried %d requests of 1 MiB", len(bn.batches()), k)
	}
}

// A batch a node refuses whole with a 4xx (it will not take this batch) goes
// request by request to its single submit.
func TestBatcherSubmitsAloneWhenABatchIsRefused(t *testing.T) {
	tn := newTestNet(t, 4)
	single := newFakeNode(t, tn, mediaCBOR, func(req []byte) (int, []byte) {
		return http.StatusOK, codec.MustMarshal(tn.bundleFor(t, req, 1, 3))
	})
	var batches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/requests/batch" {
			batches.Add(1)
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, `{"error":"request body above 4194304 bytes","code":"too_large"}`)
			return
		}
		single.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	b := newTestBatcher(t, BatcherConfig{})
	for i, err := range submitAll(tn.newBatchClient(t, b, srv.URL), 4) {
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if batches.Load() == 0 || len(single.received()) != 4 {
		t.Fatalf("%d batches refused, %d single submits; want each request alone after its batch was refused", batches.Load(), len(single.received()))
	}
}

// Close ends the submits waiting on an exchange at once, and cuts it.
func TestBatcherCloseEndsWaitingSubmits(t *testing.T) {
	tn := newTestNet(t, 4)
	never := make(chan struct{})
	defer close(never)
	bn := newGatedBatchNode(t, tn.goodAnswers(t), never)
	b, err := NewBatcher(BatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := tn.newBatchClient(t, b, bn.srv.URL)
	const k = 4
	errs := make(chan error, k)
	for range k {
		go func() {
			_, err := c.Submit(context.Background(), appendCmd())
			errs <- err
		}()
	}
	waitUntil(t, 10*time.Second, "all requests to reach the node", func() bool {
		bn.mu.Lock()
		defer bn.mu.Unlock()
		return bn.received == k
	})
	b.Close()
	for range k {
		if err := <-errs; !errors.Is(err, ErrBatcherClosed) {
			t.Fatalf("a submit waiting at Close: %v, want ErrBatcherClosed", err)
		}
	}
}

// A Submit through a Batcher ends at its own deadline while its exchange
// hangs, and the Batcher goes on serving the requests after it.
func TestBatcherSubmitEndsAtItsDeadline(t *testing.T) {
	tn := newTestNet(t, 4)
	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	bn := newGatedBatchNode(t, tn.goodAnswers(t), gate)
	b := newTestBatcher(t, BatcherConfig{})
	c := tn.newBatchClient(t, b, bn.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Submit(ctx, appendCmd())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit past its deadline: %v, want context.DeadlineExceeded", err)
	}
	// The client's per-exchange timeout is 5 s: the deadline, not it, ended the submit.
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("submit with a 200 ms deadline returned after %v", waited)
	}
	release()
	for i, err := range submitAll(c, 3) {
		if err != nil {
			t.Fatalf("submit %d after the deadline: %v", i, err)
		}
	}
}
