package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// postBatch posts body to node i's batch submit and returns the answer's
// status and, for a 200, its frames by index (each index once), else the body.
func postBatch(t *testing.T, c *testCluster, i int, contentType string, body []byte) (int, map[uint32]pbft.SubmitAnswer, []byte) {
	t.Helper()
	resp, err := http.Post(c.url(i)+"/v1/requests/batch", contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, nil, b
	}
	if ct := resp.Header.Get("Content-Type"); ct != pbft.SubmitAnswersMediaType {
		t.Fatalf("Content-Type %q, want %q", ct, pbft.SubmitAnswersMediaType)
	}
	answers := map[uint32]pbft.SubmitAnswer{}
	for {
		frame, err := codec.ReadFrame(resp.Body, 1<<20)
		if err == io.EOF {
			return resp.StatusCode, answers, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		a, err := codec.Canonical[pbft.SubmitAnswer](frame)
		if err != nil {
			t.Fatal(err)
		}
		if _, twice := answers[a.Index]; twice {
			t.Fatalf("two answers for request %d", a.Index)
		}
		answers[a.Index] = a
	}
}

// A batch submit answers each request as the single submit would: bundles for
// the good ones, the single submit's refusals for the others, and only the
// good ones reach the log.
func TestSubmitBatchAnswersEachRequest(t *testing.T) {
	c := newTestCluster(t, 4)
	signer := crypto.NewSigner(c.client, c.genesis.Hash())
	const good = 6
	var raws [][]byte
	for k := range good {
		raws = append(raws, pbft.SignRequest(signer, uint64(k+1), codec.MustMarshal(appendCmd("batch", k))))
	}
	var sr pbft.SignedRequest
	if err := codec.Unmarshal(pbft.SignRequest(signer, 100, codec.MustMarshal(appendCmd("batch", 100))), &sr); err != nil {
		t.Fatal(err)
	}
	sr.Sig[0] ^= 1
	raws = append(raws, codec.MustMarshal(&sr), []byte("not cbor"), make([]byte, c.genesis.Params.RequestBytesMax+1))
	want := map[int]struct {
		status int
		code   string
	}{good: {http.StatusUnauthorized, "bad_signature"}, good + 1: {http.StatusBadRequest, "malformed"}, good + 2: {http.StatusRequestEntityTooLarge, "too_large"}}

	status, answers, body := postBatch(t, c, 1, mediaCBOR, codec.MustMarshal(raws))
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	if len(answers) != len(raws) {
		t.Fatalf("%d answers for %d requests", len(answers), len(raws))
	}
	for i, raw := range raws {
		a := answers[uint32(i)]
		if w, refused := want[i]; refused {
			var e apiError
			if a.Status != uint16(w.status) || a.ContentType != mediaJSON || json.Unmarshal(a.Body, &e) != nil || e.Code != w.code {
				t.Errorf("request %d: %d %s %s, want %d %s", i, a.Status, a.ContentType, a.Body, w.status, w.code)
			}
			continue
		}
		if a.Status != http.StatusOK || a.ContentType != mediaCBOR {
			t.Fatalf("request %d: %d %s %s", i, a.Status, a.ContentType, a.Body)
		}
		b, err := codec.Canonical[pbft.ReplyBundle](a.Body)
		if err != nil {
			t.Fatal(err)
		}
		res, err := codec.Canonical[ledger.Result](b.Result)
		if err != nil || res.Code != ledger.CodeOK || res.RequestHash != crypto.Hash(raw) {
			t.Fatalf("request %d: result %+v, %v", i, res, err)
		}
		if len(b.Executed) < pbft.MaxFaulty(len(c.nodes))+1 {
			t.Fatalf("request %d: %d EXECUTED statements", i, len(b.Executed))
		}
	}
	c.converged(10 * time.Second)
	for i, nd := range c.nodes {
		if got := nd.store.LastPosition(); got != good {
			t.Fatalf("node %d has %d events, want the %d good appends", i, got, good)
		}
	}
}

// A batch that is not one is refused whole, with the single submit's codes.
func TestSubmitBatchRefusesBadBodies(t *testing.T) {
	c := newTestCluster(t, 4)
	one := pbft.SignRequest(crypto.NewSigner(c.client, c.genesis.Hash()), 1, codec.MustMarshal(appendCmd("refused", 0)))
	cases := []struct {
		name, contentType string
		body              []byte
		status            int
		code              string
	}{
		{"not CBOR", mediaCBOR, []byte("not cbor"), http.StatusBadRequest, "malformed"},
		{"one request, not an array", mediaCBOR, one, http.StatusBadRequest, "malformed"},
		{"empty", mediaCBOR, codec.MustMarshal([][]byte{}), http.StatusBadRequest, "malformed"},
		{"too many", mediaCBOR, codec.MustMarshal(make([][]byte, pbft.SubmitBatchMax+1)), http.StatusBadRequest, "malformed"},
		{"JSON", mediaJSON, codec.MustMarshal([][]byte{one}), http.StatusBadRequest, "malformed"},
		{"too large", mediaCBOR, make([]byte, pbft.SubmitBatchBytesMax+1), http.StatusRequestEntityTooLarge, "too_large"},
	}
	for _, tc := range cases {
		status, _, body := postBatch(t, c, 0, tc.contentType, tc.body)
		if status != tc.status || !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	if got := c.nodes[0].store.LastPosition(); got != 0 {
		t.Fatalf("%d events in the log after only refused batches", got)
	}
}

// FuzzDecodeSubmitBatch: a body decodes to 1..SubmitBatchMax requests or is
// refused with an error, never a panic.
func FuzzDecodeSubmitBatch(f *testing.F) {
	f.Add(codec.MustMarshal([][]byte{[]byte("a"), []byte("b")}))
	f.Add(codec.MustMarshal([][]byte{}))
	f.Add([]byte{0x9a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, err := decodeSubmitBatch(body)
		if err == nil && (len(raws) == 0 || len(raws) > pbft.SubmitBatchMax) {
			t.Fatalf("%d requests accepted", len(raws))
		}
	})
}

// Clients sharing a client.Batcher get verified replies from a real network,
// through batch submits.
func TestSubmitBatchWithClientBatcher(t *testing.T) {
	c := newTestCluster(t, 4)
	b, err := client.NewBatcher(client.BatcherConfig{Max: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := client.New(client.Config{Nodes: []string{c.url(2), c.url(0)}, Key: c.client, Chain: c.genesis.Hash(), Validators: c.genesis.Keys(), Timeout: 15 * time.Second, Batcher: b})
	if err != nil {
		t.Fatal(err)
	}
	const k = 40
	errs := make(chan error, k)
	for i := range k {
		go func() {
			r, err := cl.Submit(context.Background(), appendCmd("batcher", i))
			if err == nil && r.Result.Code != ledger.CodeOK {
				err = fmt.Errorf("result %s: %s", r.Result.Code, r.Result.Message)
			}
			errs <- err
		}()
	}
	for range k {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.converged(10 * time.Second)
	if got := c.nodes[0].store.LastPosition(); got != k {
		t.Fatalf("%d events in the log, want %d", got, k)
	}
	resp, err := http.Get(c.url(2) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("ordo_submit_batch_requests_sum %d", k); !strings.Contains(string(body), want) {
		t.Fatalf("/metrics of the first node lacks %q: not every request came in a batch submit", want)
	}
}

// Answers go out as they come: the client reads the first while the second
// is not yet given.
func TestStreamAnswersFlushesEachAnswer(t *testing.T) {
	answers := make(chan pbft.SubmitAnswer, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", pbft.SubmitAnswersMediaType)
		w.WriteHeader(http.StatusOK)
		streamAnswers(w, answers, 2)
	}))
	defer srv.Close()
	answers <- pbft.SubmitAnswer{Index: 1, Status: http.StatusOK}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first, err := codec.ReadFrame(resp.Body, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := codec.Canonical[pbft.SubmitAnswer](first); err != nil || a.Index != 1 {
		t.Fatalf("first answer %+v, %v", a, err)
	}
	answers <- pbft.SubmitAnswer{Index: 0, Status: http.StatusTooManyRequests}
	second, err := codec.ReadFrame(resp.Body, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := codec.Canonical[pbft.SubmitAnswer](second); err != nil || a.Index != 0 {
		t.Fatalf("second answer %+v, %v", a, err)
	}
	if _, err := codec.ReadFrame(resp.Body, 1<<10); err != io.EOF {
		t.Fatalf("after the last answer: %v, want io.EOF", err)
	}
}

// A batch larger than the places left for waiting submits gets the places
// there are; the rest are answered busy, each in its frame, and every place
// is given back.
func TestSubmitBatchTakesThePlacesLeft(t *testing.T) {
	c := newTestCluster(t, 4)
	signer := crypto.NewSigner(c.client, c.genesis.Hash())
	var raws [][]byte
	for k := range 4 {
		raws = append(raws, pbft.SignRequest(signer, uint64(k+1), codec.MustMarshal(appendCmd("places", k))))
	}
	nd := c.nodes[3]
	const taken = submitsInFlightMax - 2
	nd.submitsInFlight.Add(taken)
	status, answers, body := postBatch(t, c, 3, mediaCBOR, codec.MustMarshal(raws))
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	var ok, busy int
	for _, a := range answers {
		switch a.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			busy++
		}
	}
	if ok != 2 || busy != 2 {
		t.Fatalf("%d answered, %d busy; want the 2 places there were used and 2 busy", ok, busy)
	}
	if got := nd.submitsInFlight.Load(); got != taken {
		t.Fatalf("%d places taken after the batch, want the %d taken before it", got, taken)
	}
	nd.submitsInFlight.Add(2)
	status, _, body = postBatch(t, c, 3, mediaCBOR, codec.MustMarshal(raws[:1]))
	if status != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":"busy"`) {
		t.Fatalf("with no place left: %d %s, want 429 busy", status, body)
	}
	nd.submitsInFlight.Add(-submitsInFlightMax)
	resp, err := http.Get(c.url(3) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ordo_http_requests_total{code="ok"} 2`, `ordo_http_requests_total{code="busy"} 3`, "ordo_submit_batch_requests_count 1"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
