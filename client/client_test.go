package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// testNet holds the keys of a fake network of n validators.
type testNet struct {
	keys   []crypto.PrivateKey
	pubs   []crypto.PublicKey
	chain  crypto.Digest
	client crypto.PrivateKey
}

func seededKey(t testing.TB, b byte) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{b}, crypto.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	tn := &testNet{chain: crypto.Hash([]byte("test chain")), client: seededKey(t, 200)}
	for i := 0; i < n; i++ {
		k := seededKey(t, byte(i+1))
		tn.keys = append(tn.keys, k)
		tn.pubs = append(tn.pubs, k.Public())
	}
	return tn
}

const testEntrySeq = 7

// bundleFor builds a valid bundle for req: a batch of three requests with req
// in the middle, vouched for by the given replicas.
func (tn *testNet) bundleFor(t testing.TB, req []byte, replicas ...int) *pbft.ReplyBundle {
	t.Helper()
	return tn.bundleWith(t, req, ledger.Result{Code: ledger.CodeOK, Positions: []uint64{11, 12}, StreamVersion: 1}, replicas...)
}

// bundleWith is bundleFor with own as the request's result (its hash and
// entry seq filled in).
func (tn *testNet) bundleWith(t testing.TB, req []byte, own ledger.Result, replicas ...int) *pbft.ReplyBundle {
	t.Helper()
	own.RequestHash, own.EntrySeq = crypto.Hash(req), testEntrySeq
	results := []ledger.Result{
		{RequestHash: crypto.Hash([]byte("other 0")), Code: ledger.CodeOK, Positions: []uint64{10}, EntrySeq: testEntrySeq},
		own,
		{RequestHash: crypto.Hash([]byte("other 2")), Code: ledger.CodeWrongExpectedVersion, Message: "x", StreamVersion: 3, EntrySeq: testEntrySeq},
	}
	leaves := make([][]byte, len(results))
	for i := range results {
		leaves[i] = codec.MustMarshal(&results[i])
	}
	proof, err := crypto.InclusionProof(leaves, 1)
	if err != nil {
		t.Fatal(err)
	}
	root := crypto.MerkleRoot(leaves)
	b := &pbft.ReplyBundle{
		EntrySeq:    testEntrySeq,
		Result:      leaves[1],
		ResultIndex: 1,
		ResultCount: uint64(len(leaves)),
		Proof:       proof,
	}
	for _, r := range replicas {
		b.Executed = append(b.Executed, tn.executed(r, r, testEntrySeq, root))
	}
	return b
}

// executed returns an encoded EXECUTED envelope naming replica, signed with
// signer's key.
func (tn *testNet) executed(replica, signer int, seq uint64, root crypto.Digest) []byte {
	env := pbft.Seal(crypto.NewSigner(tn.keys[signer], tn.chain), pbft.KindExecuted, &pbft.Executed{
		Seq: seq, ResultsRoot: root, EntryHash: crypto.Hash([]byte("head")), Replica: uint32(replica),
	})
	return codec.MustMarshal(env)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wireFormat is one encoding of reply bundles: JSON, as a node of an older
// build answers, or CBOR, as a node answers a client that asks for it.
type wireFormat struct {
	name        string
	contentType string
	encode      func(testing.TB, *pbft.ReplyBundle) []byte
}

func wireFormats() []wireFormat {
	return []wireFormat{
		{"json", mediaJSON, func(t testing.TB, b *pbft.ReplyBundle) []byte { return mustJSON(t, b) }},
		{"cbor", mediaCBOR, func(t testing.TB, b *pbft.ReplyBundle) []byte { return codec.MustMarshal(b) }},
	}
}

// checker is a bundle checker for this network's keys.
func (tn *testNet) checker(cache *StatementCache) *bundleChecker {
	return newBundleChecker(tn.chain, tn.pubs, cache)
}

// fakeNode is an httptest server standing in for one node.
type fakeNode struct {
	srv     *httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	bodies  [][]byte
	accepts []string // the Accept header of every request
}

// newFakeNode serves POST /v1/requests with respond, after checking the
// request the way a node would. Its answers say they are contentType.
func newFakeNode(t *testing.T, tn *testNet, contentType string, respond func(req []byte) (int, []byte)) *fakeNode {
	t.Helper()
	fn := &fakeNode{}
	fn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn.hits.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/requests" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/cbor" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"content type `+ct+`","code":"malformed"}`)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fn.mu.Lock()
		fn.bodies = append(fn.bodies, body)
		fn.accepts = append(fn.accepts, r.Header.Get("Accept"))
		fn.mu.Unlock()
		sr, req, err := pbft.DecodeRequest(body)
		if err != nil || !crypto.Verify(req.Client, pbft.KindRequest.String(), tn.chain, sr.Body, sr.Sig) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"request signature does not verify","code":"bad_signature"}`)
			return
		}
		status, out := respond(body)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		w.Write(out)
	}))
	t.Cleanup(fn.srv.Close)
	return fn
}

func (fn *fakeNode) received() [][]byte {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return append([][]byte(nil), fn.bodies...)
}

// clientSeqs is the set of client seqs of the requests the node received.
func (fn *fakeNode) clientSeqs(t *testing.T) map[uint64]bool {
	t.Helper()
	seqs := map[uint64]bool{}
	for _, body := range fn.received() {
		_, req, err := pbft.DecodeRequest(body)
		if err != nil {
			t.Fatal(err)
		}
		seqs[req.Seq] = true
	}
	return seqs
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (tn *testNet) newClient(t *testing.T, nodes ...string) *Client {
	t.Helper()
	c, err := New(Config{
		Nodes:      nodes,
		Key:        tn.client,
		Chain:      tn.chain,
		Validators: tn.pubs,
		Timeout:    5 * time.Second,
		Logger:     quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func appendCmd() ledger.Command {
	return ledger.Command{Append: &ledger.AppendCommand{
		Stream:          "orders-1",
		ExpectedVersion: ledger.ExpectedAny,
		Events:          []ledger.EventData{{ID: [16]byte{1}, Type: "placed", ContentType: ledger.ContentJSON, Data: []byte(`{"a":1}`)}},
	}}
}

func TestSubmitAcceptsGoodBundle(t *testing.T) {
	for _, f := range wireFormats() {
		t.Run(f.name, func(t *testing.T) {
			tn := newTestNet(t, 4)
			node := newFakeNode(t, tn, f.contentType, func(req []byte) (int, []byte) {
				return http.StatusOK, f.encode(t, tn.bundleFor(t, req, 2, 0))
			})
			c := tn.newClient(t, node.srv.URL)
			r, err := c.Submit(context.Background(), appendCmd())
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if r.EntrySeq != testEntrySeq || r.Result.EntrySeq != testEntrySeq {
				t.Errorf("entry seq %d / result %d, want %d", r.EntrySeq, r.Result.EntrySeq, testEntrySeq)
			}
			if r.Result.Code != ledger.CodeOK || len(r.Result.Positions) != 2 || r.Result.Positions[1] != 12 {
				t.Errorf("result %+v", r.Result)
			}
			if r.Replies != 2 {
				t.Errorf("replies %d, want 2", r.Replies)
			}
			if r.Node != node.srv.URL {
				t.Errorf("node %q, want %q", r.Node, node.srv.URL)
			}
			if got := node.accepts[0]; got != acceptBundle {
				t.Errorf("Accept %q, want %q", got, acceptBundle)
			}
			// The command the node received decodes back to what was submitted.
			_, req, err := pbft.DecodeRequest(node.received()[0])
			if err != nil {
				t.Fatal(err)
			}
			cmd, err := codec.Canonical[ledger.Command](req.Command)
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Append == nil || cmd.Append.Stream != "orders-1" || string(cmd.Append.Events[0].Data) != `{"a":1}` {
				t.Errorf("node received command %+v", cmd)
			}
			if req.Client != tn.client.Public() {
				t.Errorf("request signed by %v, want the client key", req.Client)
			}
		})
	}
}

func TestSubmitAcceptsAllValidatorsAndRefusedResult(t *testing.T) {
	tn := newTestNet(t, 4)
	node := newFakeNode(t, tn, mediaJSON, func(req []byte) (int, []byte) {
		return http.StatusOK, mustJSON(t, tn.bundleFor(t, req, 0, 1, 2, 3))
	})
	r, err := tn.newClient(t, node.srv.URL).Submit(context.Background(), appendCmd())
	if err != nil {
		t.Fatal(err)
	}
	if r.Replies != 4 {
		t.Errorf("replies %d, want 4", r.Replies)
	}
}

// A faulty replica's statement with an odd entry hash but the right results
// root, passed on by an honest gateway, does not spoil the bundle.
func TestVerifyBundleIgnoresEntryHash(t *testing.T) {
	tn := newTestNet(t, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	b := tn.bundleFor(t, req, 0, 1)
	env := pbft.Seal(crypto.NewSigner(tn.keys[1], tn.chain), pbft.KindExecuted, &pbft.Executed{
		Seq: testEntrySeq, ResultsRoot: rootOf(t, b), EntryHash: crypto.Hash([]byte("odd")), Replica: 1,
	})
	b.Executed[1] = codec.MustMarshal(env)
	for _, f := range wireFormats() {
		if _, err := tn.checker(nil).verifyBundle(f.contentType, f.encode(t, b), req); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
	}
}

// A retry of an executed request is answered in a later batch with the
// original result, which names the entry that executed it.
func TestVerifyBundleAcceptsOriginalResultOfRetry(t *testing.T) {
	tn := newTestNet(t, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	original := ledger.Result{RequestHash: crypto.Hash(req), Code: ledger.CodeOK, Positions: []uint64{3}, EntrySeq: 2}
	leaf := codec.MustMarshal(&original)
	root := crypto.MerkleRoot([][]byte{leaf})
	// The empty, non-nil path of a one-leaf tree, as a node sends it.
	proof, err := crypto.InclusionProof([][]byte{leaf}, 0)
	if err != nil || proof == nil {
		t.Fatalf("proof %v, %v", proof, err)
	}
	b := &pbft.ReplyBundle{EntrySeq: testEntrySeq, Result: leaf, ResultIndex: 0, ResultCount: 1, Proof: proof,
		Executed: [][]byte{tn.executed(0, 0, testEntrySeq, root), tn.executed(2, 2, testEntrySeq, root)}}
	for _, f := range wireFormats() {
		r, err := tn.checker(nil).verifyBundle(f.contentType, f.encode(t, b), req)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if r.EntrySeq != testEntrySeq || r.Result.EntrySeq != 2 || r.Result.Positions[0] != 3 {
			t.Errorf("%s: reply %+v", f.name, r)
		}
	}
}

// forgery mutates a good bundle into one a faulty node might send.
type forgery struct {
	name   string
	mutate func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle)
	want   string
}

func forgeries() []forgery {
	otherRoot := crypto.Hash([]byte("another root"))
	return []forgery{
		{"too few replies", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed = b.Executed[:1]
		}, "need 2"},
		{"no replies", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed = nil
		}, "need 2"},
		{"duplicate replica", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed[1] = b.Executed[0]
		}, "appears twice"},
		{"more statements than validators", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed = append(b.Executed, b.Executed[0], b.Executed[0], b.Executed[0])
		}, "from 4 validators"},
		{"bad signature", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			env, err := pbft.DecodeEnvelope(b.Executed[1])
			if err != nil {
				t.Fatal(err)
			}
			env.Sig[0] ^= 1
			b.Executed[1] = codec.MustMarshal(env)
		}, "bad signature"},
		{"signed by another replica's key", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			root := rootOf(t, b)
			b.Executed[1] = tn.executed(1, 0, testEntrySeq, root)
		}, "bad signature"},
		{"signed for another chain", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			root := rootOf(t, b)
			env := pbft.Seal(crypto.NewSigner(tn.keys[1], crypto.Hash([]byte("other chain"))), pbft.KindExecuted,
				&pbft.Executed{Seq: testEntrySeq, ResultsRoot: root, EntryHash: crypto.Hash([]byte("head")), Replica: 1})
			b.Executed[1] = codec.MustMarshal(env)
		}, "bad signature"},
		{"replica outside the validator set", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed[1] = tn.executed(4, 1, testEntrySeq, rootOf(t, b))
		}, "replica 4 of 4"},
		{"not an EXECUTED message", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			env := pbft.Seal(crypto.NewSigner(tn.keys[1], tn.chain), pbft.KindCommit,
				&pbft.Commit{Seq: testEntrySeq, Replica: 1})
			b.Executed[1] = codec.MustMarshal(env)
		}, "not EXECUTED"},
		{"garbage statement", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed[1] = []byte{0xff, 0x00}
		}, "EXECUTED 1"},
		{"wrong root for every replica", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed = [][]byte{tn.executed(0, 0, testEntrySeq, otherRoot), tn.executed(1, 1, testEntrySeq, otherRoot)}
		}, "does not match the root"},
		{"replicas disagree on the root", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed[1] = tn.executed(1, 1, testEntrySeq, otherRoot)
		}, "disagree"},
		{"statement for another seq", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Executed[1] = tn.executed(1, 1, testEntrySeq+1, rootOf(t, b))
		}, "executed seq 8"},
		{"bundle names another seq", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.EntrySeq++
		}, "bundle says 8"},
		{"wrong proof", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Proof[0][0] ^= 1
		}, "does not match the root"},
		{"missing proof", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Proof = nil
		}, "does not match the root"},
		{"wrong index", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.ResultIndex = 2
		}, "does not match the root"},
		{"index outside the tree", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.ResultIndex = 3
		}, "outside tree"},
		{"result for another request", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			*b = *tn.bundleFor(t, append([]byte("other"), req...), 0, 1)
		}, "not ours"},
		{"result edited by the node", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			r, err := codec.Canonical[ledger.Result](b.Result)
			if err != nil {
				t.Fatal(err)
			}
			r.Positions = []uint64{99}
			b.Result = codec.MustMarshal(&r)
		}, "does not match the root"},
		{"result not canonical", func(t testing.TB, tn *testNet, req []byte, b *pbft.ReplyBundle) {
			b.Result = append(b.Result, 0)
		}, "result"},
	}
}

// rootOf returns the results root the bundle's first statement names.
func rootOf(t testing.TB, b *pbft.ReplyBundle) crypto.Digest {
	t.Helper()
	env, err := pbft.DecodeEnvelope(b.Executed[0])
	if err != nil {
		t.Fatal(err)
	}
	m, err := env.Open(4)
	if err != nil {
		t.Fatal(err)
	}
	return m.Executed.ResultsRoot
}

func TestVerifyBundleRefusesForgeries(t *testing.T) {
	tn := newTestNet(t, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	for _, wf := range wireFormats() {
		t.Run(wf.name, func(t *testing.T) {
			good := wf.encode(t, tn.bundleFor(t, req, 0, 1))
			if _, err := tn.checker(nil).verifyBundle(wf.contentType, good, req); err != nil {
				t.Fatalf("the unmodified bundle fails: %v", err)
			}
			for _, f := range forgeries() {
				t.Run(f.name, func(t *testing.T) {
					b := tn.bundleFor(t, req, 0, 1)
					f.mutate(t, tn, req, b)
					_, err := tn.checker(nil).verifyBundle(wf.contentType, wf.encode(t, b), req)
					if err == nil {
						t.Fatal("forged bundle accepted")
					}
					if !errors.Is(err, ErrBadReply) {
						t.Errorf("error %v is not ErrBadReply", err)
					}
					if !strings.Contains(err.Error(), f.want) {
						t.Errorf("error %q does not mention %q", err, f.want)
					}
				})
			}
			t.Run("a client with another genesis", func(t *testing.T) {
				other := newBundleChecker(crypto.Hash([]byte("x")), tn.pubs, nil)
				if _, err := other.verifyBundle(wf.contentType, good, req); !errors.Is(err, ErrBadReply) {
					t.Fatalf("got %v", err)
				}
			})
			t.Run("oversized", func(t *testing.T) {
				huge := append(append([]byte(nil), good...), make([]byte, bundleBytesMax)...)
				_, err := tn.checker(nil).verifyBundle(wf.contentType, huge, req)
				if !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), "at most") {
					t.Fatalf("got %v", err)
				}
			})
		})
	}
}

// Bodies that are not a well-formed bundle in the format the answer names are
// refused before any check; CBOR must be the one canonical encoding.
func TestDecodeBundleRefusesMalformed(t *testing.T) {
	tn := newTestNet(t, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	b := tn.bundleFor(t, req, 0, 1)
	good := codec.MustMarshal(b)
	for _, ct := range []string{mediaCBOR, "Application/CBOR", mediaCBOR + "; charset=binary"} {
		if _, err := decodeBundle(ct, good); err != nil {
			t.Fatalf("the good bundle as %q: %v", ct, err)
		}
	}
	// A proof hash of 33 bytes: the decoder would keep 32 of them.
	longHash := codec.MustMarshal(&struct {
		EntrySeq    uint64   `cbor:"1,keyasint"`
		Result      []byte   `cbor:"2,keyasint"`
		ResultIndex uint64   `cbor:"3,keyasint"`
		ResultCount uint64   `cbor:"4,keyasint"`
		Proof       [][]byte `cbor:"5,keyasint"`
		Executed    [][]byte `cbor:"6,keyasint"`
	}{b.EntrySeq, b.Result, b.ResultIndex, b.ResultCount, [][]byte{append(b.Proof[0][:], 0), b.Proof[1][:]}, b.Executed})
	if int(good[2]) >= 24 || good[1] != 0x01 {
		t.Fatalf("bundle encoding %x does not start with key 1 and a small entry seq", good[:3])
	}
	// The entry seq (key 1) encoded in two bytes instead of one.
	nonCanonical := append([]byte{good[0], 0x01, 0x18, good[2]}, good[3:]...)
	cases := []struct {
		name, contentType string
		body              []byte
	}{
		{"truncated CBOR", mediaCBOR, good[:len(good)-1]},
		{"trailing byte", mediaCBOR, append(append([]byte(nil), good...), 0)},
		{"unknown field", mediaCBOR, codec.MustMarshal(map[int]uint64{1: 7, 9: 1})},
		{"duplicate key", mediaCBOR, []byte{0xa2, 0x01, 0x07, 0x01, 0x07}},
		{"non-canonical", mediaCBOR, nonCanonical},
		{"proof hash of 33 bytes", mediaCBOR, longHash},
		{"JSON said to be CBOR", mediaCBOR, mustJSON(t, b)},
		{"CBOR said to be JSON", mediaJSON, good},
		{"CBOR without a content type", "", good},
		{"malformed JSON", mediaJSON, []byte(`{"executed":`)},
		{"empty", mediaCBOR, nil},
	}
	for _, tc := range cases {
		if _, err := decodeBundle(tc.contentType, tc.body); !errors.Is(err, ErrBadReply) || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
}

// Every forgery makes the client move on to the next node and succeed there.
func TestSubmitFailsOverFromLyingNode(t *testing.T) {
	tn := newTestNet(t, 4)
	for _, wf := range wireFormats() {
		for _, f := range forgeries() {
			t.Run(wf.name+"/"+f.name, func(t *testing.T) {
				liar := newFakeNode(t, tn, wf.contentType, func(req []byte) (int, []byte) {
					b := tn.bundleFor(t, req, 0, 1)
					f.mutate(t, tn, req, b)
					return http.StatusOK, wf.encode(t, b)
				})
				honest := newFakeNode(t, tn, wf.contentType, func(req []byte) (int, []byte) {
					return http.StatusOK, wf.encode(t, tn.bundleFor(t, req, 1, 3))
				})
				r, err := tn.newClient(t, liar.srv.URL, honest.srv.URL).Submit(context.Background(), appendCmd())
				if err != nil {
					t.Fatalf("Submit: %v", err)
				}
				if r.Node != honest.srv.URL {
					t.Errorf("reply from %s, want the honest node", r.Node)
				}
				if liar.hits.Load() != 1 || honest.hits.Load() != 1 {
					t.Errorf("hits liar=%d honest=%d, want 1 each", liar.hits.Load(), honest.hits.Load())
				}
				// A retry carries the very same signed bytes.
				if a, b := liar.received()[0], honest.received()[0]; !bytes.Equal(a, b) {
					t.Error("the retry sent different bytes")
				}
			})
		}
	}
}

// An answer above bundleBytesMax is not read to its end: the client moves on.
func TestSubmitFailsOverFromOversizedBundle(t *testing.T) {
	tn := newTestNet(t, 4)
	liar := newFakeNode(t, tn, mediaCBOR, func(req []byte) (int, []byte) {
		return http.StatusOK, append(codec.MustMarshal(tn.bundleFor(t, req, 0, 1)), make([]byte, bundleBytesMax)...)
	})
	honest := newFakeNode(t, tn, mediaCBOR, func(req []byte) (int, []byte) {
		return http.StatusOK, codec.MustMarshal(tn.bundleFor(t, req, 1, 3))
	})
	r, err := tn.newClient(t, liar.srv.URL, honest.srv.URL).Submit(context.Background(), appendCmd())
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if r.Node != honest.srv.URL || liar.hits.Load() != 1 {
		t.Errorf("reply from %s after %d tries of the liar, want the honest node after 1", r.Node, liar.hits.Load())
	}
}

func TestSubmitFailsOverOnUnavailableNodes(t *testing.T) {
	tn := newTestNet(t, 4)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	busy := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
		return http.StatusTooManyRequests, []byte(`{"error":"slow down","code":"busy"}`)
	})
	noQuorum := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
		return http.StatusServiceUnavailable, []byte(`{"error":"waited 10s","code":"timeout"}`)
	})
	honest := newFakeNode(t, tn, mediaJSON, func(req []byte) (int, []byte) {
		return http.StatusOK, mustJSON(t, tn.bundleFor(t, req, 0, 3))
	})
	c := tn.newClient(t, deadURL, busy.srv.URL, noQuorum.srv.URL, honest.srv.URL)
	r, err := c.Submit(context.Background(), appendCmd())
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if r.Node != honest.srv.URL {
		t.Errorf("reply from %s", r.Node)
	}
	if busy.hits.Load() != 1 || noQuorum.hits.Load() != 1 {
		t.Errorf("hits busy=%d noQuorum=%d", busy.hits.Load(), noQuorum.hits.Load())
	}
	// The next call starts at the node that answered last time.
	if _, err := c.Submit(context.Background(), appendCmd()); err != nil {
		t.Fatal(err)
	}
	if busy.hits.Load() != 1 || honest.hits.Load() != 2 {
		t.Errorf("second call: hits busy=%d honest=%d, want 1 and 2", busy.hits.Load(), honest.hits.Load())
	}
	seqs := honest.clientSeqs(t)
	if len(seqs) != 2 {
		t.Errorf("two submits used %d distinct seqs", len(seqs))
	}
}

func TestSubmitSurfacesRefusal(t *testing.T) {
	tn := newTestNet(t, 4)
	refusing := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
		return http.StatusForbidden, []byte(`{"error":"client key is not admitted","code":"not_admitted"}`)
	})
	other := newFakeNode(t, tn, mediaJSON, func(req []byte) (int, []byte) {
		return http.StatusOK, mustJSON(t, tn.bundleFor(t, req, 0, 1))
	})
	_, err := tn.newClient(t, refusing.srv.URL, other.srv.URL).Submit(context.Background(), appendCmd())
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not an *APIError", err)
	}
	if apiErr.Status != http.StatusForbidden || apiErr.Code != "not_admitted" || apiErr.Message != "client key is not admitted" {
		t.Errorf("got %+v", apiErr)
	}
	if !strings.Contains(err.Error(), "not_admitted: client key is not admitted") {
		t.Errorf("message %q", err)
	}
	if other.hits.Load() != 0 {
		t.Error("a refused request was sent to another node")
	}
}

func TestSubmitConflictWithoutBundleIsRefusal(t *testing.T) {
	tn := newTestNet(t, 4)
	node := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
		return http.StatusConflict, []byte(`{"error":"stream \"x\" is at version 3","code":"wrong_expected_version"}`)
	})
	_, err := tn.newClient(t, node.srv.URL).Submit(context.Background(), appendCmd())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != ledger.CodeWrongExpectedVersion {
		t.Fatalf("got %v", err)
	}
}

func TestSubmitConflictWithBundleIsVerified(t *testing.T) {
	for _, wf := range wireFormats() {
		tn := newTestNet(t, 4)
		node := newFakeNode(t, tn, wf.contentType, func(req []byte) (int, []byte) {
			return http.StatusConflict, wf.encode(t, tn.bundleFor(t, req, 0, 1))
		})
		r, err := tn.newClient(t, node.srv.URL).Submit(context.Background(), appendCmd())
		if err != nil || r.Replies != 2 {
			t.Fatalf("%s: got %+v, %v", wf.name, r, err)
		}
	}
}

func TestSubmitGivesUpAfterBoundedRounds(t *testing.T) {
	tn := newTestNet(t, 4)
	var nodes []*fakeNode
	var urls []string
	for i := 0; i < 2; i++ {
		n := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
			return http.StatusServiceUnavailable, []byte(`{"error":"no quorum reachable","code":"no_quorum"}`)
		})
		nodes = append(nodes, n)
		urls = append(urls, n.srv.URL)
	}
	_, err := tn.newClient(t, urls...).Submit(context.Background(), appendCmd())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v is not ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "no_quorum") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q should be one line naming the cause", err)
	}
	for i, n := range nodes {
		if got := n.hits.Load(); got != submitRoundsMax {
			t.Errorf("node %d tried %d times, want %d", i, got, submitRoundsMax)
		}
	}
}

func TestSubmitStopsWhenContextEnds(t *testing.T) {
	tn := newTestNet(t, 4)
	release := make(chan struct{})
	node := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) {
		<-release
		return http.StatusServiceUnavailable, nil
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tn.newClient(t, node.srv.URL).Submit(ctx, appendCmd())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}

func TestSubmitRefusesOversizedRequestLocally(t *testing.T) {
	tn := newTestNet(t, 4)
	node := newFakeNode(t, tn, mediaJSON, func([]byte) (int, []byte) { return http.StatusOK, nil })
	cmd := appendCmd()
	cmd.Append.Events[0].Data = bytes.Repeat([]byte("a"), DefaultRequestBytesMax)
	_, err := tn.newClient(t, node.srv.URL).Submit(context.Background(), cmd)
	if err == nil || !strings.Contains(err.Error(), "at most 65536") {
		t.Fatalf("got %v", err)
	}
	if node.hits.Load() != 0 {
		t.Error("an oversized request was sent")
	}
}

func TestNewChecksConfig(t *testing.T) {
	tn := newTestNet(t, 4)
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no nodes", Config{}, "no node URLs"},
		{"bad scheme", Config{Nodes: []string{"ftp://x"}}, "scheme"},
		{"query in URL", Config{Nodes: []string{"http://x:1/?a=b"}}, "query"},
		{"key without validators", Config{Nodes: []string{"x:1"}, Key: tn.client}, "no validators"},
		{"negative timeout", Config{Nodes: []string{"x:1"}, Timeout: -1}, "negative timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	c, err := New(Config{Nodes: []string{"127.0.0.1:7700", "https://example.org/"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Nodes(); got[0] != "http://127.0.0.1:7700" || got[1] != "https://example.org" {
		t.Errorf("normalized %v", got)
	}
	if _, err := c.Submit(context.Background(), appendCmd()); !errors.Is(err, ErrNoKey) {
		t.Errorf("read-only client submit: %v", err)
	}
}

func TestNextSeqIsStrictlyIncreasing(t *testing.T) {
	const workers, each = 8, 500
	out := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := uint64(0)
			for i := 0; i < each; i++ {
				s := nextSeq()
				if s <= prev {
					t.Errorf("seq %d after %d in one goroutine", s, prev)
				}
				prev = s
				out <- s
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := map[uint64]bool{}
	for s := range out {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	// Seqs follow the wall clock, so a later process keeps increasing.
	if s := nextSeq(); s < uint64(time.Now().Add(-time.Minute).UnixNano()) {
		t.Errorf("seq %d is not wall-clock based", s)
	}
}

// A shared statement cache skips only signatures it saw verify, under the
// same chain and validator keys: with a warm cache every forgery is still
// refused, and so is the good bundle under another chain.
func TestVerifyBundleWithSharedStatementCache(t *testing.T) {
	for _, wf := range wireFormats() {
		t.Run(wf.name, func(t *testing.T) {
			tn := newTestNet(t, 4)
			req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
			cache := NewStatementCache()
			checker := tn.checker(cache)
			good := wf.encode(t, tn.bundleFor(t, req, 0, 1))
			if _, err := checker.verifyBundle(wf.contentType, good, req); err != nil {
				t.Fatalf("the unmodified bundle fails: %v", err)
			}
			if len(cache.m) != 2 {
				t.Fatalf("cache holds %d statements after one bundle of 2, want 2", len(cache.m))
			}
			if _, err := checker.verifyBundle(wf.contentType, good, req); err != nil || len(cache.m) != 2 {
				t.Fatalf("second verification: %v, cache %d", err, len(cache.m))
			}
			for _, f := range forgeries() {
				t.Run(f.name, func(t *testing.T) {
					b := tn.bundleFor(t, req, 0, 1)
					f.mutate(t, tn, req, b)
					if _, err := checker.verifyBundle(wf.contentType, wf.encode(t, b), req); !errors.Is(err, ErrBadReply) {
						t.Fatalf("forged bundle with a warm cache: %v", err)
					}
				})
			}
			if _, err := newBundleChecker(crypto.Hash([]byte("x")), tn.pubs, cache).verifyBundle(wf.contentType, good, req); !errors.Is(err, ErrBadReply) {
				t.Fatalf("another chain with a warm cache: %v", err)
			}
			// Another validator set under the same chain is not vouched for.
			others := append([]crypto.PublicKey(nil), tn.pubs...)
			others[3] = seededKey(t, 99).Public()
			before := len(cache.m)
			if _, err := newBundleChecker(tn.chain, others, cache).verifyBundle(wf.contentType, good, req); err != nil {
				t.Fatalf("good bundle under a set that still holds its signers: %v", err)
			}
			if n := len(cache.m); n != before+2 {
				t.Fatalf("cache grew from %d to %d statements, want 2 more (another set)", before, n)
			}
			// The same keys in another order are another set: replica 0's
			// statement would name another key.
			swapped := append([]crypto.PublicKey(nil), tn.pubs...)
			swapped[0], swapped[1] = swapped[1], swapped[0]
			if _, err := newBundleChecker(tn.chain, swapped, cache).verifyBundle(wf.contentType, good, req); !errors.Is(err, ErrBadReply) {
				t.Fatalf("good bundle under the keys in another order, with a warm cache: %v", err)
			}
			// The cache is what vouches: a statement put in by hand is not checked.
			b := tn.bundleFor(t, req, 0, 1)
			env, err := pbft.DecodeEnvelope(b.Executed[1])
			if err != nil {
				t.Fatal(err)
			}
			env.Sig[0] ^= 1
			b.Executed[1] = codec.MustMarshal(env)
			m, err := env.Open(len(tn.pubs))
			if err != nil {
				t.Fatal(err)
			}
			cache.add(checker.set, b.Executed[1], m.Executed)
			if _, err := checker.verifyBundle(wf.contentType, wf.encode(t, b), req); err != nil {
				t.Fatalf("a cached statement was checked again: %v", err)
			}
		})
	}
}

func TestStatementCacheIsBounded(t *testing.T) {
	c := NewStatementCache()
	set := crypto.Hash([]byte("set"))
	for i := 0; i < StatementsMax+10; i++ {
		c.add(set, []byte(strconv.Itoa(i)), &pbft.Executed{Seq: uint64(i)})
		if len(c.m) > StatementsMax {
			t.Fatalf("cache holds %d, bound %d", len(c.m), StatementsMax)
		}
	}
}

// batch_full changed nothing: Submit signs the command again under a new
// client seq, up to batchFullResubmitsMax times, and says how often.
func TestSubmitResubmitsBatchFull(t *testing.T) {
	tn := newTestNet(t, 4)
	for _, fulls := range []int{2, batchFullResubmitsMax + 1} {
		var answered atomic.Int64
		node := newFakeNode(t, tn, mediaJSON, func(req []byte) (int, []byte) {
			if answered.Add(1) <= int64(fulls) {
				full := ledger.Result{Code: ledger.CodeBatchFull, Message: "no room", StreamVersion: -1}
				return http.StatusOK, mustJSON(t, tn.bundleWith(t, req, full, 0, 1))
			}
			return http.StatusOK, mustJSON(t, tn.bundleFor(t, req, 0, 1))
		})
		r, err := tn.newClient(t, node.srv.URL).Submit(context.Background(), appendCmd())
		if err != nil {
			t.Fatal(err)
		}
		wantCode, wantResubmits := ledger.CodeOK, fulls
		if fulls > batchFullResubmitsMax {
			wantCode, wantResubmits = ledger.CodeBatchFull, batchFullResubmitsMax
		}
		if r.Result.Code != wantCode || r.Resubmits != wantResubmits {
			t.Fatalf("%d batch_full answers: %s after %d resubmits, want %s after %d", fulls, r.Result.Code, r.Resubmits, wantCode, wantResubmits)
		}
		if seqs := node.clientSeqs(t); len(seqs) != wantResubmits+1 {
			t.Fatalf("%d distinct client seqs sent, want %d", len(seqs), wantResubmits+1)
		}
	}
}
