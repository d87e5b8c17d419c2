package client

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// fuzzBundles seeds a bundle fuzz target with format's encodings of good
// bundles for req and of every forgery, and returns the checker and the
// one result an accepted bundle may carry.
func fuzzBundles(f *testing.F, format wireFormat) (*testNet, []byte, ledger.Result) {
	tn := newTestNet(f, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	good := tn.bundleFor(f, req, 0, 1)
	want, err := codec.Canonical[ledger.Result](good.Result)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(format.encode(f, good))
	f.Add(format.encode(f, tn.bundleFor(f, req, 0, 1, 2, 3)))
	f.Add(format.encode(f, tn.bundleFor(f, req, 3)))
	for _, forged := range forgeries() {
		b := tn.bundleFor(f, req, 0, 1)
		forged.mutate(f, tn, req, b)
		f.Add(format.encode(f, b))
	}
	return tn, req, want
}

// acceptedOnlyIfSigned is the oracle of the bundle fuzz targets: the fuzzer
// cannot sign, so whatever the check accepts must be the result the seeds'
// validators signed for req, with f+1 of them.
func acceptedOnlyIfSigned(t *testing.T, r *Reply, err error, tn *testNet, req []byte, want ledger.Result) {
	if err != nil {
		return
	}
	if r.Replies < pbft.MaxFaulty(len(tn.pubs))+1 {
		t.Fatalf("accepted with %d replies", r.Replies)
	}
	if r.Result.RequestHash != crypto.Hash(req) {
		t.Fatal("accepted a result for another request")
	}
	if r.EntrySeq != testEntrySeq || !reflect.DeepEqual(r.Result, want) {
		t.Fatalf("accepted entry %d with result %+v; the validators signed entry %d with %+v", r.EntrySeq, r.Result, testEntrySeq, want)
	}
}

// FuzzVerifyBundle feeds arbitrary JSON answers to the bundle check: it must
// never panic, and whatever it accepts must really be vouched for by f+1
// validators.
func FuzzVerifyBundle(f *testing.F) {
	tn, req, want := fuzzBundles(f, wireFormats()[0])
	f.Add([]byte(`{"entry_seq":7,"executed":["AAEC","oWE="],"proof":["zz"],"result_b64":"oA=="}`))
	f.Add([]byte(`{"executed":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	checker := tn.checker(nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := checker.verifyBundle(mediaJSON, body, req)
		acceptedOnlyIfSigned(t, r, err, tn, req, want)
	})
}

// FuzzVerifyBundleCBOR is FuzzVerifyBundle for the CBOR answer, the one the
// Go client asks for.
func FuzzVerifyBundleCBOR(f *testing.F) {
	tn, req, want := fuzzBundles(f, wireFormats()[1])
	good := codec.MustMarshal(tn.bundleFor(f, req, 0, 1))
	f.Add(good[:len(good)/2])
	f.Add(append(append([]byte(nil), good...), 0))
	f.Add([]byte{0xa6, 0x01, 0x07, 0x02, 0x40, 0x03, 0x00, 0x04, 0x01, 0x05, 0x80, 0x06, 0x80})
	f.Add([]byte{0xa1, 0x06, 0x9f, 0x40, 0xff})
	f.Add([]byte{0xa1, 0x05, 0x81, 0x41, 0x00})
	f.Add([]byte{0xbf, 0xff})
	f.Add([]byte{})
	checker := tn.checker(nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := checker.verifyBundle(mediaCBOR, body, req)
		acceptedOnlyIfSigned(t, r, err, tn, req, want)
	})
}

// FuzzEventPage decodes arbitrary event pages: no panic, and an accepted
// event re-encodes to JSON (the node's own object).
func FuzzEventPage(f *testing.F) {
	f.Add([]byte(eventsJSON))
	f.Add([]byte(`{"events":[{"position":1,"data":null}],"next":2}`))
	f.Add([]byte(`{"events":[{"timestamp":"x"}]}`))
	f.Add([]byte(`{"events":[1]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p EventPage
		if err := json.Unmarshal(body, &p); err != nil {
			return
		}
		for _, e := range p.Events {
			out, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("re-encoding an accepted event: %v", err)
			}
			if !json.Valid(out) {
				t.Fatalf("re-encoded event is not JSON: %s", out)
			}
		}
	})
}
