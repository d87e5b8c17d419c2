package main

import (
	"encoding/json"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/node"
)

// FuzzParseGenesis feeds arbitrary /v1/genesis answers to the parser: no
// panic, and what it accepts is a valid genesis that survives a round trip
// with the same hash.
func FuzzParseGenesis(f *testing.F) {
	g := &node.Genesis{
		ChainID:    "ordo-local",
		Validators: []node.Validator{{Name: "node0", PublicKey: crypto.PublicKey{1}, P2PAddrs: []string{"/ip4/127.0.0.1/tcp/7800"}}},
		Params:     node.DefaultParams(),
		Admission:  node.Admission{Mode: node.AdmissionOpen},
	}
	good, err := json.Marshal(g)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"chain_id":"x","validators":[],"params":{},"admission":{"mode":"open"}}`))
	f.Add([]byte(`{"chain_id":"x","extra":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"validators":[{"public_key":"zz"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		g, err := parseGenesis(raw)
		if err != nil {
			return
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("accepted an invalid genesis: %v", err)
		}
		again, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		g2, err := parseGenesis(again)
		if err != nil {
			t.Fatalf("re-encoded genesis refused: %v", err)
		}
		if g2.Hash() != g.Hash() {
			t.Fatal("genesis hash changed across a JSON round trip")
		}
	})
}
