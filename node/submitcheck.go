package node

import (
	"context"
	"errors"

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

// runSubmitChecker checks the signatures of HTTP submits, in batches of
// whatever waits when it comes round.
func (n *Node) runSubmitChecker() {
	defer n.wg.Done()
	batch := make([]*submitCheck, 0, submitCheckBatchMax)
	for {
		batch = batch[:0]
		select {
		case <-n.stop:
			return
		case c := <-n.submitChecks:
			batch = append(batch, c)
		}
	drain:
		for len(batch) < submitCheckBatchMax {
			select {
			case c := <-n.submitChecks:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		bv := crypto.NewBatchVerifier(n.chain, len(batch))
		for _, c := range batch {
			bv.Add(c.client, pbft.KindRequest.String(), c.body, c.sig)
		}
		_, valid := bv.Verify()
		for i, c := range batch {
			c.valid <- valid[i]
		}
	}
}
