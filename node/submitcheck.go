package node

import (
	"context"
	"errors"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// Bounds of the submit checker.
const (
	// submitChecksQueueLen bounds the submits waiting for their signature
	// check; past it a submit waits (and times out as busy).
	submitChecksQueueLen = 4096
	// submitCheckBatchMax bounds the signatures checked in one batch.
	submitCheckBatchMax = 64
	// submitCheckHold is how long a batch waits for more submits while they
	// keep coming, and so the most a submit's check is delayed.
	submitCheckHold = time.Millisecond
)

// submitCheck is one HTTP submit's request signature, waiting to be checked.
type submitCheck struct {
	client    crypto.PublicKey
	body, sig []byte
	valid     chan bool // buffered: the checker never waits on it
}

// errStopping is a submit's answer when the node stops before its check.
var errStopping = errors.New("node: stopping")

// checkSubmit checks a submitted request's signature together with the other
// submits waiting at the moment: checked alone, a signature costs about 1.8×
// its share of a batch of 64 (crypto's BenchmarkVerifyBatchSizes), and every
// submit would pay that.
func (n *Node) checkSubmit(ctx context.Context, client crypto.PublicKey, body, sig []byte) (bool, error) {
	c := &submitCheck{client: client, body: body, sig: sig, valid: make(chan bool, 1)}
	select {
	case n.submitChecks <- c:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-n.stop:
		return false, errStopping
	}
	select {
	case ok := <-c.valid:
		return ok, nil
	case <-n.stop:
		return false, errStopping
	}
}

// runSubmitChecker checks the signatures of HTTP submits in batches. While
// submits keep coming (the checker was idle less than submitCheckHold), it
// waits up to submitCheckHold for more to join a batch: otherwise nearly every
// batch holds one submit, as each arrives while the previous is checked. A
// submit that comes after a quiet spell is checked at once.
func (n *Node) runSubmitChecker() {
	defer n.wg.Done()
	batch := make([]*submitCheck, 0, submitCheckBatchMax)
	hold := time.NewTimer(submitCheckHold)
	hold.Stop()
	var idleSince time.Time
	for {
		batch = batch[:0]
		select {
		case <-n.stop:
			return
		case c := <-n.submitChecks:
			batch = append(batch, c)
		}
		flowing := time.Since(idleSince) < submitCheckHold
		batch = appendWaiting(batch, n.submitChecks, submitCheckBatchMax)
		if flowing && len(batch) < submitCheckBatchMax {
			hold.Reset(submitCheckHold)
		gather:
			for len(batch) < submitCheckBatchMax {
				select {
				case c := <-n.submitChecks:
					batch = append(batch, c)
				case <-hold.C:
					break gather
				case <-n.stop:
					break gather
				}
			}
			hold.Stop()
		}
		bv := crypto.NewBatchVerifier(n.chain, len(batch))
		for _, c := range batch {
			bv.Add(c.client, pbft.KindRequest.String(), c.body, c.sig)
		}
		_, valid := bv.Verify()
		n.metrics.submitCheckSigs.Observe(float64(len(batch)))
		for i, c := range batch {
			c.valid <- valid[i]
		}
		idleSince = time.Now()
	}
}
