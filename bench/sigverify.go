package bench

import (
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// Signature-verification measurement.
const (
	// SigBatchSize is the batch the per-signature cost is measured on.
	SigBatchSize = 64
	// SigMeasureMin is the least time the measurement runs for.
	SigMeasureMin = 200 * time.Millisecond
	// sigBodyBytes is the size of each signed body, about a small request's.
	sigBodyBytes = 256
)

// SigVerify is the measured cost of verifying one request signature in a
// batch, on this machine, in this run.
type SigVerify struct {
	PerSignatureNs float64
	Signatures     int // how many were verified to measure it
	Cores          int
}

// MeasureSigVerify times crypto.BatchVerifier on batches of SigBatchSize
// signatures by distinct keys, for at least SigMeasureMin. Building the
// batch is part of the cost, as it is in a node.
func MeasureSigVerify() (SigVerify, error) {
	var chain crypto.Digest
	if _, err := rand.Read(chain[:]); err != nil {
		return SigVerify{}, fmt.Errorf("signature timing: %w", err)
	}
	kind := pbft.KindRequest.String()
	pubs := make([]crypto.PublicKey, SigBatchSize)
	bodies := make([][]byte, SigBatchSize)
	sigs := make([][]byte, SigBatchSize)
	for i := range pubs {
		key, err := crypto.GenerateKey(nil)
		if err != nil {
			return SigVerify{}, fmt.Errorf("signature timing: %w", err)
		}
		body := make([]byte, sigBodyBytes)
		copy(body, "bench request "+strconv.Itoa(i))
		pubs[i], bodies[i] = key.Public(), body
		sigs[i] = crypto.NewSigner(key, chain).Sign(kind, body)
	}
	start := time.Now()
	verified := 0
	for time.Since(start) < SigMeasureMin {
		bv := crypto.NewBatchVerifier(chain, SigBatchSize)
		for i := range pubs {
			bv.Add(pubs[i], kind, bodies[i], sigs[i])
		}
		if ok, _ := bv.Verify(); !ok {
			return SigVerify{}, errors.New("signature timing: a valid batch failed to verify")
		}
		verified += SigBatchSize
	}
	elapsed := time.Since(start)
	return SigVerify{
		PerSignatureNs: float64(elapsed.Nanoseconds()) / float64(verified),
		Signatures:     verified,
		Cores:          runtime.NumCPU(),
	}, nil
}

// BoundEventsPerSec is the most single-event requests per second n replicas
// sharing this machine's cores could admit if verifying each request's
// signature, once per replica, were all they did.
func (s SigVerify) BoundEventsPerSec(n int) float64 {
	if n <= 0 || s.PerSignatureNs <= 0 {
		return 0
	}
	return float64(s.Cores) / (float64(n) * s.PerSignatureNs * 1e-9)
}
