package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// Submits checked together each get their own signature's answer, and a node
// that stops answers the ones still waiting.
func TestSubmitChecksAnswerEach(t *testing.T) {
	chain := crypto.Hash([]byte("submit checks"))
	n := &Node{chain: chain, metrics: newMetrics(), submitChecks: make(chan *submitCheck, submitChecksQueueLen), stop: make(chan struct{})}
	n.wg.Add(1)
	go n.runSubmitChecker()

	const submits = 3*submitCheckBatchMax + 5
	type sample struct {
		client    crypto.PublicKey
		body, sig []byte
		want      bool
	}
	samples := make([]sample, submits)
	for i := range samples {
		k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i%250 + 1)}, crypto.SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(fmt.Sprintf("request %d", i))
		sig := crypto.NewSigner(k, chain).Sign(pbft.KindRequest.String(), body)
		want := i%7 != 3
		switch {
		case !want && i%2 == 0:
			body = append(body, '!') // signed other bytes
		case !want:
			sig = sig[:10] // not a signature
		}
		samples[i] = sample{client: k.Public(), body: body, sig: sig, want: want}
	}
	got := make([]bool, submits)
	var wg sync.WaitGroup
	for i := range samples {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := samples[i]
			ok, err := n.checkSubmit(context.Background(), s.client, s.body, s.sig)
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
			}
			got[i] = ok
		}()
	}
	wg.Wait()
	for i := range samples {
		if got[i] != samples[i].want {
			t.Errorf("submit %d judged %v, want %v", i, got[i], samples[i].want)
		}
	}

	close(n.stop)
	n.wg.Wait()
	if _, err := n.checkSubmit(context.Background(), samples[0].client, samples[0].body, samples[0].sig); !errors.Is(err, errStopping) {
		t.Fatalf("a submit after the node stopped: %v, want errStopping", err)
	}
}
