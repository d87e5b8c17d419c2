package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// testCluster is n validators in this process, talking real libp2p on loopback.
type testCluster struct {
	t       testing.TB
	genesis *Genesis
	keys    []crypto.PrivateKey
	dirs    []string
	nodes   []*Node
	client  crypto.PrivateKey
}

// Test ports come from below the kernel's ephemeral range (32768 and up), so
// that no outgoing connection of another test process takes one between
// this check and the node's bind; within a process none is handed out twice.
var (
	portMu   sync.Mutex
	portNext = 12000 + os.Getpid()%18000
)

func freePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for tries := 0; tries < 20000; tries++ {
		p := portNext
		portNext++
		if portNext >= 32000 {
			portNext = 12000
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ORDO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestCluster starts n validators on free loopback ports. A port found free
// can be taken by another process before libp2p binds it (test binaries of
// other packages run alongside), so a cluster that cannot bind is closed and
// made again on other ports, up to clusterStartTries times.
func newTestCluster(t testing.TB, n int, tweaks ...func(*Params)) *testCluster {
	t.Helper()
	const clusterStartTries = 3
	for try := 1; ; try++ {
		c := makeTestCluster(t, n, tweaks...)
		err := c.startAll()
		if err == nil {
			t.Cleanup(func() {
				for i := range c.nodes {
					c.stop(i)
				}
			})
			return c
		}
		for i := range c.nodes {
			c.stop(i)
		}
		if !strings.Contains(err.Error(), "address already in use") || try == clusterStartTries {
			t.Fatal(err)
		}
		t.Logf("try %d: %v; again on other ports", try, err)
	}
}

func makeTestCluster(t testing.TB, n int, tweaks ...func(*Params)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, genesis: &Genesis{ChainID: "ordo-test", Params: DefaultParams(), Admission: Admission{Mode: AdmissionOpen}}}
	for _, tweak := range tweaks {
		tweak(&c.genesis.Params)
	}
	for i := 0; i < n; i++ {
		k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, crypto.SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		c.keys = append(c.keys, k)
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i)))
		c.genesis.Validators = append(c.genesis.Validators, Validator{
			Name: fmt.Sprintf("node%d", i), PublicKey: k.Public(),
			P2PAddrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))},
		})
	}
	if err := c.genesis.Validate(); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.client, err = crypto.NewKeyFromSeed(bytes.Repeat([]byte{0xcc}, crypto.SeedSize)); err != nil {
		t.Fatal(err)
	}
	c.nodes = make([]*Node, n)
	return c
}

func (c *testCluster) startAll() error {
	for i := range c.nodes {
		if err := c.tryStart(i); err != nil {
			return err
		}
	}
	return nil
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	if err := c.tryStart(i); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) tryStart(i int) error {
	nd, err := New(Config{Genesis: c.genesis, Key: c.keys[i], DataDir: c.dirs[i], APIListen: "127.0.0.1:0", Logger: testLogger(c.t).With("i", i)})
	if err != nil {
		return fmt.Errorf("start node %d: %w", i, err)
	}
	if err := nd.Start(); err != nil {
		nd.Close()
		return fmt.Errorf("start node %d: %w", i, err)
	}
	c.nodes[i] = nd
	return nil
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] != nil {
		c.nodes[i].Close()
		c.nodes[i] = nil
	}
}

func (c *testCluster) url(i int) string { return "http://" + c.nodes[i].APIAddr() }

func (c *testCluster) newClient(nodes ...int) *client.Client {
	c.t.Helper()
	var urls []string
	for _, i := range nodes {
		urls = append(urls, c.url(i))
	}
	cl, err := client.New(client.Config{Nodes: urls, Key: c.client, Chain: c.genesis.Hash(), Validators: c.genesis.Keys(), Timeout: 15 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// postRequest posts one signed request to node i's POST /v1/requests, with
// Accept set if accept is not empty, and fails the test unless it is
// answered 200 within 30 s.
func (c *testCluster) postRequest(i int, req []byte, accept string) (*http.Response, []byte) {
	c.t.Helper()
	hr, err := http.NewRequest(http.MethodPost, c.url(i)+"/v1/requests", bytes.NewReader(req))
	if err != nil {
		c.t.Fatal(err)
	}
	hr.Header.Set("Content-Type", mediaCBOR)
	if accept != "" {
		hr.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(hr)
	if err != nil {
		c.t.Fatalf("node %d: %v", i, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("node %d, Accept %q: %d %s", i, accept, resp.StatusCode, body)
	}
	return resp, body
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// converged waits until every running node has applied the same head.
func (c *testCluster) converged(deadline time.Duration) (uint64, crypto.Digest) {
	c.t.Helper()
	var seq uint64
	var head crypto.Digest
	waitFor(c.t, deadline, "all nodes to apply the same head", func() bool {
		first := true
		for _, nd := range c.nodes {
			if nd == nil {
				continue
			}
			s, h := nd.store.Applied()
			if first {
				seq, head, first = s, h, false
			} else if s != seq || h != head {
				return false
			}
		}
		return true
	})
	return seq, head
}

func appendCmd(stream string, n int) ledger.Command {
	var id [16]byte
	copy(id[:], fmt.Sprintf("%-16.16s", fmt.Sprintf("%s-%d", stream, n)))
	return ledger.Command{Append: &ledger.AppendCommand{
		Stream: stream, ExpectedVersion: ledger.ExpectedAny,
		Events: []ledger.EventData{{ID: id, Type: "test", ContentType: ledger.ContentJSON, Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}},
	}}
}

func TestClusterOrdersEventsAndCatchesUp(t *testing.T) {
	c := newTestCluster(t, 4)
	ctx := context.Background()

	// Appends through every node, concurrently, land on all four in one order.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 4; i++ {
		cl := c.newClient(i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				r, err := cl.Submit(ctx, appendCmd(fmt.Sprintf("s%d", i), j))
				if err == nil && r.Result.Code != ledger.CodeOK {
					err = fmt.Errorf("append: %s %s", r.Result.Code, r.Result.Message)
				}
				if err == nil && r.Replies < pbft.MaxFaulty(4)+1 {
					err = fmt.Errorf("reply bundle with %d replies", r.Replies)
				}
				if err != nil {
					errs <- err
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seq, head := c.converged(20 * time.Second)
	if seq == 0 {
		t.Fatal("nothing committed")
	}
	for i, nd := range c.nodes {
		if got := nd.store.LastPosition(); got != 40 {
			t.Fatalf("node %d has %d events, want 40", i, got)
		}
	}
	t.Logf("40 appends in %d entries, head %v", seq, head)

	// One backup down: appends still commit.
	c.stop(3)
	cl := c.newClient(0, 1)
	for j := 0; j < 20; j++ {
		if _, err := cl.Submit(ctx, appendCmd("after-crash", j)); err != nil {
			t.Fatalf("append with a backup down: %v", err)
		}
	}
	// Restarted, it catches up by fetching certified entries.
	c.start(3)
	seq2, _ := c.converged(30 * time.Second)
	if seq2 <= seq {
		t.Fatalf("no progress: %d then %d", seq, seq2)
	}
	if got := c.nodes[3].store.LastPosition(); got != 60 {
		t.Fatalf("restarted node has %d events, want 60", got)
	}

	// Every node's log replays from genesis to the same head.
	for i, nd := range c.nodes {
		rp, err := NewReplayer(c.genesis, "")
		if err != nil {
			t.Fatal(err)
		}
		err = nd.store.Walk(func(e *eventlog.Entry) error { return rp.Check(e) })
		if err != nil {
			t.Fatalf("node %d: replay: %v", i, err)
		}
		_, _, h := rp.Summary()
		rp.Close()
		_, want := nd.store.Applied()
		if h != want {
			t.Fatalf("node %d: replay head %v, log head %v", i, h, want)
		}
	}
}

func TestSubmitRefusesBadInput(t *testing.T) {
	c := newTestCluster(t, 4)
	chain := c.genesis.Hash()
	signer := crypto.NewSigner(c.client, chain)
	good := pbft.SignRequest(signer, 1, codec.MustMarshal(appendCmd("bad-input", 0)))

	var sr pbft.SignedRequest
	if err := codec.Unmarshal(good, &sr); err != nil {
		t.Fatal(err)
	}
	sr.Sig[0] ^= 1
	badSig := codec.MustMarshal(&sr)
	otherChain := pbft.SignRequest(crypto.NewSigner(c.client, crypto.Hash([]byte("other"))), 2, codec.MustMarshal(appendCmd("bad-input", 1)))
	// The identity point as a client key: under ZIP-215 the "signature"
	// (R = identity, S = 0) verifies for any message. Such keys are refused.
	weakBody := codec.MustMarshal(&pbft.Request{Client: crypto.PublicKey{1}, Seq: 3, Command: codec.MustMarshal(appendCmd("bad-input", 2))})
	forged := make([]byte, crypto.SignatureSize)
	forged[0] = 1
	if !crypto.Verify(crypto.PublicKey{1}, pbft.KindRequest.String(), chain, weakBody, forged) {
		t.Fatal("the small-order forgery does not verify: the test no longer exercises admission")
	}
	weakKey := codec.MustMarshal(&pbft.SignedRequest{Body: weakBody, Sig: forged})

	cases := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"bad signature", badSig, http.StatusUnauthorized, "bad_signature"},
		{"other chain", otherChain, http.StatusUnauthorized, "bad_signature"},
		{"garbage", []byte("not cbor"), http.StatusBadRequest, "malformed"},
		{"too large", make([]byte, c.genesis.Params.RequestBytesMax+1), http.StatusRequestEntityTooLarge, "too_large"},
		{"small-order client key", weakKey, http.StatusForbidden, "not_admitted"},
	}
	for _, tc := range cases {
		resp, err := http.Post(c.url(0)+"/v1/requests", "application/cbor", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	// The good request commits; none of the refused ones reached the log.
	resp, err := http.Post(c.url(1)+"/v1/requests", "application/cbor", bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("good request: %d %s", resp.StatusCode, body)
	}
	c.converged(10 * time.Second)
	for i, nd := range c.nodes {
		if got := nd.store.LastPosition(); got != 1 {
			t.Fatalf("node %d has %d events, want exactly the one good append", i, got)
		}
	}
}

// A submit with Accept: application/cbor is answered with the canonical CBOR
// of the reply bundle, which verifies against the genesis keys alone; one
// without it gets the JSON answer of before.
func TestSubmitAnswersCBORWhenAsked(t *testing.T) {
	c := newTestCluster(t, 4)
	chain := c.genesis.Hash()
	signer := crypto.NewSigner(c.client, chain)

	asJSON := pbft.SignRequest(signer, 1, codec.MustMarshal(appendCmd("negotiate", 0)))
	resp, body := c.postRequest(2, asJSON, "")
	var j struct {
		pbft.ReplyBundle
		Result ResultJSON `json:"result"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != mediaJSON {
		t.Fatalf("no Accept: Content-Type %q", ct)
	}
	if err := json.Unmarshal(body, &j); err != nil || j.Result.Code != ledger.CodeOK || len(j.Executed) < 2 {
		t.Fatalf("no Accept: %v, %s", err, body)
	}

	asCBOR := pbft.SignRequest(signer, 2, codec.MustMarshal(appendCmd("negotiate", 1)))
	resp, body = c.postRequest(2, asCBOR, mediaCBOR)
	if ct := resp.Header.Get("Content-Type"); ct != mediaCBOR {
		t.Fatalf("Accept %s: Content-Type %q", mediaCBOR, ct)
	}
	b, err := codec.Canonical[pbft.ReplyBundle](body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := codec.Canonical[ledger.Result](b.Result)
	if err != nil || res.RequestHash != crypto.Hash(asCBOR) || res.Code != ledger.CodeOK {
		t.Fatalf("result %+v, %v", res, err)
	}
	keys := c.genesis.Keys()
	signed := map[uint32]bool{}
	for _, raw := range b.Executed {
		env, err := pbft.DecodeEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		m, err := env.Open(len(keys))
		if err != nil || m.Executed == nil || !m.VerifySignature(keys, chain) {
			t.Fatalf("EXECUTED statement: %v", err)
		}
		if m.Executed.Seq != b.EntrySeq {
			t.Fatalf("statement for seq %d in a bundle for %d", m.Executed.Seq, b.EntrySeq)
		}
		if err := crypto.VerifyInclusion(b.Result, b.ResultIndex, b.ResultCount, b.Proof, m.Executed.ResultsRoot); err != nil {
			t.Fatalf("replica %d: %v", m.Executed.Replica, err)
		}
		signed[m.Executed.Replica] = true
	}
	if len(signed) < pbft.MaxFaulty(len(keys))+1 {
		t.Fatalf("%d distinct replicas vouch for the result", len(signed))
	}
}

func TestReadYourWritesThroughProjections(t *testing.T) {
	c := newTestCluster(t, 4)
	cl := c.newClient(1)
	var last uint64
	for j := 0; j < 5; j++ {
		r, err := cl.Submit(context.Background(), appendCmd("ryw", j))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Result.Positions[0]
	}
	// Written through node 1, read from node 2: min_position makes the read
	// wait until that node's projection has applied the write.
	resp, err := http.Get(fmt.Sprintf("%s/v1/projections/streams/ryw?min_position=%d", c.url(2), last))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var row struct {
		Stream   string `json:"stream"`
		Version  uint64 `json:"version"`
		Events   uint64 `json:"events"`
		Position uint64 `json:"position"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("projection query: %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &row); err != nil {
		t.Fatal(err)
	}
	if row.Stream != "ryw" || row.Version != 4 || row.Events != 5 || row.Position < last {
		t.Fatalf("row %+v, want stream ryw at version 4 with 5 events at position ≥ %d", row, last)
	}
	st := c.nodes[2].statusJSON()
	if st.Projections["streams"] < last {
		t.Fatalf("status projections %v, want streams ≥ %d", st.Projections, last)
	}
}

// TestClusterLedger runs accounting commands through different nodes: every
// node ends with the same results, the same head and the same state digest,
// and the balances projection agrees with the transfers.
func TestClusterLedger(t *testing.T) {
	c := newTestCluster(t, 4)
	ctx := context.Background()
	owner := c.client.Public()
	submit := func(via int, cmd ledger.Command, want string) {
		t.Helper()
		r, err := c.newClient(via).Submit(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if r.Result.Code != want {
			t.Fatalf("%+v: result %s (%s), want %s", cmd, r.Result.Code, r.Result.Message, want)
		}
	}
	submit(0, ledger.Command{CreateAccount: &ledger.CreateAccountCommand{ID: "bank", Code: 978, OwnerKey: owner}}, ledger.CodeOK)
	submit(1, ledger.Command{CreateAccount: &ledger.CreateAccountCommand{ID: "alice", Code: 978, OwnerKey: owner, Flags: ledger.FlagDebitsMustNotExceedCredits}}, ledger.CodeOK)
	submit(2, ledger.Command{Transfer: &ledger.TransferCommand{ID: "t1", DebitAccount: "bank", CreditAccount: "alice", Amount: 100, Code: 978}}, ledger.CodeOK)
	submit(3, ledger.Command{Transfer: &ledger.TransferCommand{ID: "t1", DebitAccount: "bank", CreditAccount: "alice", Amount: 100, Code: 978}}, ledger.CodeExists)
	submit(0, ledger.Command{Transfer: &ledger.TransferCommand{ID: "t2", DebitAccount: "alice", CreditAccount: "bank", Amount: 101, Code: 978}}, "exceeds_credits")
	submit(1, ledger.Command{Transfer: &ledger.TransferCommand{ID: "t3", DebitAccount: "alice", CreditAccount: "bank", Amount: 30, Code: 978}}, ledger.CodeOK)

	seq, head := c.converged(10 * time.Second)
	var digest crypto.Digest
	for i, nd := range c.nodes {
		s, d := nd.store.StateDigest()
		if s != seq {
			t.Fatalf("node %d state digest at seq %d, want %d", i, s, seq)
		}
		if i == 0 {
			digest = d
		} else if d != digest {
			t.Fatalf("node %d state digest %v differs from node 0's %v (head %v)", i, d, digest, head)
		}
	}
	if _, err := c.nodes[2].views.WaitPosition(ctx, "balances", c.nodes[2].store.LastPosition(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	row, _, err := c.nodes[2].views.Get("balances", "alice")
	if err != nil {
		t.Fatal(err)
	}
	var bal struct {
		DebitsPosted  uint64 `json:"debits_posted"`
		CreditsPosted uint64 `json:"credits_posted"`
	}
	if err := json.Unmarshal(row, &bal); err != nil || bal.CreditsPosted != 100 || bal.DebitsPosted != 30 {
		t.Fatalf("alice's balance row %s (%v), want 100 credited and 30 debited", row, err)
	}
}

// TestClusterManyCheckpoints runs with a checkpoint every 2 batches and a
// window of 4, so protocol state is persisted and pruned all the time (a
// regression test: an envelope prunable the moment it was persisted once
// made the write refuse and the replica halt).
func TestClusterManyCheckpoints(t *testing.T) {
	c := newTestCluster(t, 4, func(p *Params) { p.CheckpointInterval = 2; p.WindowSeqs = 4 })
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		cl := c.newClient(i % 4)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				if _, err := cl.Submit(context.Background(), appendCmd(fmt.Sprintf("ck-%d", i), j)); err != nil {
					t.Error(err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	seq, _ := c.converged(20 * time.Second)
	for i, nd := range c.nodes {
		st := nd.statusJSON()
		if st.Halted != "" {
			t.Fatalf("node %d halted: %s", i, st.Halted)
		}
		if st.StableCheckpoint+4 < seq {
			t.Fatalf("node %d: stable checkpoint %d trails seq %d by more than the window", i, st.StableCheckpoint, seq)
		}
	}
}

func TestMetrics(t *testing.T) {
	c := newTestCluster(t, 4)
	if _, err := c.newClient(0).Submit(context.Background(), appendCmd("m", 0)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(c.url(0) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"ordo_batches_executed_total 1", "ordo_p2p_frames_sent_total", "ordo_committed_seq", "ordo_view 0", `ordo_http_requests_total{code="ok"} 1`,
		"ordo_submit_seconds_count 1", "ordo_batch_requests_sum 1", "ordo_apply_seconds_count 1", "ordo_driver_round_seconds_count",
		"ordo_protocol_write_seconds_count", "ordo_log_sync_seconds_count", "ordo_verify_seconds_count", "ordo_verify_chunk_signatures_count"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A client whose exchange gave up after its request was executed sends the
// same signed bytes again, to the same node or another. The core ignores a
// copy of a request it delivered lately, so each node must answer the retry
// from the seq that executed it: with the original result, vouched for by
// f+1 replicas.
func TestRetryOfAnExecutedRequestIsAnswered(t *testing.T) {
	c := newTestCluster(t, 4)
	req := pbft.SignRequest(crypto.NewSigner(c.client, c.genesis.Hash()), 1, codec.MustMarshal(appendCmd("retry", 0)))
	post := func(i int) *pbft.ReplyBundle {
		t.Helper()
		_, body := c.postRequest(i, req, mediaCBOR)
		b, err := codec.Canonical[pbft.ReplyBundle](body)
		if err != nil {
			t.Fatal(err)
		}
		return &b
	}
	forwards := func() float64 {
		sum := 0.0
		for _, nd := range c.nodes {
			var m dto.Metric
			if err := nd.metrics.forwards.WithLabelValues("primary").Write(&m); err != nil {
				t.Fatal(err)
			}
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	first := post(2)
	c.converged(30 * time.Second)
	// Every node has executed the seq and has the EXECUTED statements of f+1
	// replicas for it.
	waitFor(t, 30*time.Second, "every node to gather f+1 EXECUTED statements", func() bool {
		for _, nd := range c.nodes {
			nd.replies.mu.Lock()
			sr := nd.replies.seqs[first.EntrySeq]
			enough := sr != nil && sr.local != nil && len(sr.executed) >= nd.replies.need
			nd.replies.mu.Unlock()
			if !enough {
				return false
			}
		}
		return true
	})
	before := forwards()
	for _, i := range []int{2, 0, 1, 3} {
		b := post(i)
		if b.EntrySeq != first.EntrySeq || !bytes.Equal(b.Result, first.Result) {
			t.Fatalf("node %d answered the retry with seq %d %x, the first answer was seq %d %x", i, b.EntrySeq, b.Result, first.EntrySeq, first.Result)
		}
		if len(b.Executed) < pbft.MaxFaulty(len(c.nodes))+1 {
			t.Fatalf("node %d: %d EXECUTED statements", i, len(b.Executed))
		}
	}
	if after := forwards(); after != before {
		t.Errorf("the retries were forwarded to the primary %v times; a node that executed a request answers a retry itself", after-before)
	}
	if st := c.nodes[0].statusJSON(); st.ExecutedSeq != first.EntrySeq {
		t.Fatalf("the retries were executed again: executed seq %d, first %d", st.ExecutedSeq, first.EntrySeq)
	}
}
