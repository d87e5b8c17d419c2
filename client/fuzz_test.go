package client

import (
	"encoding/json"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// FuzzVerifyBundle feeds arbitrary answers to the bundle check: it must never
// panic, and whatever it accepts must really be vouched for by f+1 validators.
func FuzzVerifyBundle(f *testing.F) {
	tn := newTestNet(f, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	good := tn.bundleFor(f, req, 0, 1)
	f.Add(mustJSON(f, good))
	f.Add(mustJSON(f, tn.bundleFor(f, req, 0, 1, 2, 3)))
	f.Add(mustJSON(f, tn.bundleFor(f, req, 3)))
	f.Add([]byte(`{"entry_seq":7,"executed":["AAEC","oWE="],"proof":["zz"],"result_b64":"oA=="}`))
	f.Add([]byte(`{"executed":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := verifyBundle(body, req, tn.pubs, tn.chain, nil)
		if err != nil {
			return
		}
		if r.Replies < pbft.MaxFaulty(len(tn.pubs))+1 {
			t.Fatalf("accepted with %d replies", r.Replies)
		}
		if r.Result.RequestHash != crypto.Hash(req) {
			t.Fatal("accepted a result for another request")
		}
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
