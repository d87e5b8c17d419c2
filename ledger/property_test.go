package ledger

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// TestClientWindowModel checks the at-most-once window against a plain model
// (a sorted set of retained seqs per client) over random, out-of-order, gappy
// and repeated seqs, with windows on both sides of the low-seq cache size.
func TestClientWindowModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		window := rapid.IntRange(1, 2*lowSeqsMax+3).Draw(rt, "window")
		h := newHarness(rt, Config{ClientWindow: window, EventsPerAppendMax: 10, EventBytesMax: 1 << 10})
		retained := map[byte][]uint64{}
		stored := map[string][]byte{}
		batches := rapid.IntRange(1, 40).Draw(rt, "batches")
		// Clock-like seqs (increasing, a little jitter from requests in flight)
		// are what clients send and what drains the low-seq cache; random ones
		// hit every other branch.
		clockLike := rapid.Bool().Draw(rt, "clock-like seqs")
		clock := uint64(1000)
		n := 0
		for b := 0; b < batches; b++ {
			size := rapid.IntRange(1, 24).Draw(rt, "batch size")
			reqs := make([]Request, size)
			for i := range reqs {
				c := rapid.ByteRange(1, 2).Draw(rt, "client")
				var seq uint64
				if clockLike {
					clock += rapid.Uint64Range(1, 3).Draw(rt, "tick")
					seq = clock - rapid.Uint64Range(0, 4).Draw(rt, "jitter")
				} else {
					seq = rapid.Uint64Range(0, uint64(3*window+10)).Draw(rt, "seq")
				}
				n++
				reqs[i] = req(c, seq, appendCmd("s", ExpectedAny, ev(n)))
			}
			results := h.runRaw(reqs...)
			for i, r := range reqs {
				c := r.Client[0]
				key := fmt.Sprint(c, "/", r.ClientSeq)
				set := retained[c]
				var res Result
				if err := codec.Unmarshal(results[i], &res); err != nil {
					rt.Fatal(err)
				}
				switch _, ok := slices.BinarySearch(set, r.ClientSeq); {
				case ok:
					if !bytes.Equal(results[i], stored[key]) {
						rt.Fatalf("client %d seq %d retained: got %s, not its stored result", c, r.ClientSeq, res.Code)
					}
				case len(set) == window && r.ClientSeq < set[0]:
					if res.Code != CodeSeqTooOld {
						rt.Fatalf("client %d seq %d below lowest %d of a full window: %s", c, r.ClientSeq, set[0], res.Code)
					}
				default:
					if res.Code != CodeOK {
						rt.Fatalf("client %d seq %d: %s %s, want ok", c, r.ClientSeq, res.Code, res.Message)
					}
					at, _ := slices.BinarySearch(set, r.ClientSeq)
					set = slices.Insert(set, at, r.ClientSeq)
					stored[key] = results[i]
					if len(set) > window {
						delete(stored, fmt.Sprint(c, "/", set[0]))
						set = set[1:]
					}
					retained[c] = set
				}
			}
		}
	})
}

// command draws one random command: mostly appends that exercise every rule,
// some malformed.
func command(t *rapid.T) []byte {
	switch rapid.IntRange(0, 9).Draw(t, "kind") {
	case 0:
		return rapid.SliceOfN(rapid.Byte(), 0, 16).Draw(t, "garbage")
	case 1:
		return codec.MustMarshal(&Command{})
	}
	stream := rapid.SampledFrom([]string{"a", "b", "c-1", "bad name"}).Draw(t, "stream")
	expected := rapid.Int64Range(-4, 4).Draw(t, "expected")
	count := rapid.IntRange(0, 4).Draw(t, "events")
	evs := make([]EventData, count)
	for i := range evs {
		// A small id space makes idempotent retries and id reuse common.
		n := rapid.IntRange(0, 12).Draw(t, "id")
		evs[i] = EventData{
			ID:          evID(n),
			Type:        rapid.SampledFrom([]string{"created", "updated", ""}).Draw(t, "type"),
			ContentType: rapid.SampledFrom([]string{ContentBytes, ContentJSON}).Draw(t, "content type"),
			Data:        []byte(rapid.SampledFrom([]string{`{"n":1}`, `[]`, `{`, ``}).Draw(t, "data")),
		}
		if n == 0 {
			evs[i].ID = [16]byte{}
		}
	}
	return appendCmd(stream, expected, evs...)
}

// TestDeterminism executes the same random batches into two fresh logs and
// requires byte-identical results, entries, head hashes and state.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{ClientWindow: rapid.IntRange(1, 8).Draw(rt, "window"), EventsPerAppendMax: 3, EventBytesMax: 64}
		a, b := newHarness(rt, cfg), newHarness(rt, cfg)
		batches := rapid.IntRange(1, 25).Draw(rt, "batches")
		for i := 0; i < batches; i++ {
			reqs := make([]Request, rapid.IntRange(0, 6).Draw(rt, "batch size"))
			for j := range reqs {
				reqs[j] = req(rapid.ByteRange(1, 3).Draw(rt, "client"), rapid.Uint64Range(0, 20).Draw(rt, "seq"), command(rt))
			}
			ra, rb := a.runRaw(reqs...), b.runRaw(reqs...)
			if len(ra) != len(reqs) {
				rt.Fatalf("%d results for %d requests", len(ra), len(reqs))
			}
			for j := range ra {
				if !bytes.Equal(ra[j], rb[j]) {
					rt.Fatalf("batch %d request %d: results differ: %x vs %x", i, j, ra[j], rb[j])
				}
				var res Result
				if err := codec.Unmarshal(ra[j], &res); err != nil {
					rt.Fatalf("result does not decode: %v", err)
				}
				switch res.Code {
				case CodeOK, CodeBadCommand, CodeWrongExpectedVersion, CodeIDReused, CodeSeqTooOld:
				default:
					rt.Fatalf("result code %q", res.Code)
				}
			}
		}
		seqA, headA := a.log.Applied()
		seqB, headB := b.log.Applied()
		if seqA != seqB || headA != headB || a.log.LastPosition() != b.log.LastPosition() {
			rt.Fatalf("heads differ: (%d, %v) vs (%d, %v)", seqA, headA, seqB, headB)
		}
		_, sa := a.log.StateDigest()
		_, sb := b.log.StateDigest()
		if sa != sb {
			rt.Fatalf("state digests differ: %v vs %v", sa, sb)
		}
		evA, _, _ := a.log.ReadAll(0, 0)
		evB, _, _ := b.log.ReadAll(0, 0)
		if !bytes.Equal(codec.MustMarshal(evA), codec.MustMarshal(evB)) {
			rt.Fatal("event logs differ")
		}
		checkStreams(rt, a.log)
	})
}

// checkStreams asserts that every event's stream version is gap-free from 0.
func checkStreams(t *rapid.T, l *eventlog.Log) {
	evs, _, err := l.ReadAll(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]uint64{}
	for _, e := range evs {
		if e.Version != next[e.Stream] {
			t.Fatalf("stream %s: version %d after %d", e.Stream, e.Version, next[e.Stream])
		}
		next[e.Stream]++
	}
}

// FuzzExecute runs arbitrary command bytes: never a panic, never an error,
// always one decodable result, and a retry returns the same bytes.
func FuzzExecute(f *testing.F) {
	f.Add(appendCmd("s", ExpectedAny, ev(1)))
	f.Add(appendCmd("s", ExpectedNoStream, ev(1), ev(2)))
	f.Add(appendCmd("s", 0, EventData{ID: evID(3), Type: "t", Data: []byte{1, 2}, Metadata: []byte("m")}))
	f.Add(codec.MustMarshal(&Command{}))
	f.Add([]byte{0xa1, 0x01, 0xa0})
	f.Add(openCmd("A", 1, 1, FlagDebitsMustNotExceedCredits))
	f.Add(openCmd("B", 1, 1, 0))
	f.Add(xferCmd(TransferCommand{ID: "T", DebitAccount: "B", CreditAccount: "A", Amount: 5, Code: 1, Pending: true, TimeoutMs: 1}))
	f.Add(postCmd("P", "T", 2))
	f.Add(voidCmd("V", "T"))
	f.Add(opsCmd(LedgerOp{CreateAccount: &CreateAccountCommand{ID: "C", Code: 1, OwnerKey: client(1)}, Linked: true},
		LedgerOp{Transfer: &TransferCommand{ID: "U", DebitAccount: "C", CreditAccount: "A", Amount: 1, Code: 1}}))
	f.Add([]byte{})
	h := newHarness(f, Config{ClientWindow: 64, EventsPerAppendMax: 100, EventBytesMax: 4096})
	seq := uint64(0)
	f.Fuzz(func(t *testing.T, cmd []byte) {
		seq++
		r := Request{Client: client(1), ClientSeq: seq, Hash: crypto.Hash(cmd), Command: cmd}
		var got [2][]byte
		for i := range got {
			applied, _ := h.log.Applied()
			e, err := h.log.Apply(eventlog.EntryHeader{Seq: applied + 1, Requests: [][]byte{cmd}},
				func(tx *eventlog.Tx) ([][]byte, error) { return h.m.Execute(tx, []Request{r}) })
			if err != nil {
				t.Fatalf("Execute failed on command %x: %v", cmd, err)
			}
			got[i] = e.Results[0]
		}
		var res Result
		if err := codec.Unmarshal(got[0], &res); err != nil {
			t.Fatalf("result does not decode: %v", err)
		}
		if res.RequestHash != r.Hash {
			t.Fatal("result not bound to the request")
		}
		if !slices.Contains(allCodes, res.Code) {
			t.Fatalf("unexpected code %q", res.Code)
		}
		for _, o := range res.Ops {
			if !slices.Contains(allCodes, o.Code) {
				t.Fatalf("unexpected operation code %q", o.Code)
			}
		}
		if !bytes.Equal(got[0], got[1]) {
			t.Fatal("a retried request did not get its stored result")
		}
	})
}

// allCodes lists every result code.
var allCodes = []string{
	CodeOK, CodeExists, CodeWrongExpectedVersion, CodeIDReused, CodeBadCommand, CodeSeqTooOld,
	CodeExistsWithDifferentFields, CodeAccountNotFound, CodeNotOwner, CodeCodeMismatch, CodeSameAccount,
	CodeAmountZero, CodeOverflow, CodeExceedsCredits, CodeExceedsDebits, CodeLinkedEventFailed,
	CodeLinkedEventChainOpen, CodePendingTransferNotFound, CodePendingTransferNotPending,
	CodePendingTransferExpired, CodePendingTransferAlreadyPosted, CodePendingTransferAlreadyVoided,
	CodeExceedsPendingAmount, CodeBatchFull,
}

func FuzzDecodeClientState(f *testing.F) {
	f.Add((&clientState{count: 3, low: []uint64{1, 5, 9}}).encode())
	f.Add((&clientState{}).encode())
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeClientState(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.encode(), b) {
			t.Fatalf("client record %x re-encodes to %x", b, c.encode())
		}
	})
}
