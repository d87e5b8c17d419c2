package ledger

import (
	"bytes"
	"fmt"
)

// TimeoutMsMax bounds a pending transfer's timeout: 100 years of 365 days.
const TimeoutMsMax = 100 * 365 * 24 * 60 * 60 * 1000

// expiryScanKeysMax bounds one read of the expiry index.
const expiryScanKeysMax = 64

// expire runs at the start of every batch, before its requests: it expires,
// in deadline order (ties by id), up to limit pending transfers whose
// deadline is before the batch's log time, emitting PendingExpired for each.
// It reads the expiry index from its start, so it costs O(expired), and it
// reads the index as committed before the batch, which at this point is the
// index itself. Transfers left over by the limit expire in later batches;
// until then settle treats them as expired.
func (b *ledgerBatch) expire(limit int) error {
	now := b.tx.Timestamp()
	c, err := b.newChain(false)
	if err != nil {
		return err
	}
	from := expiryPrefix
	staged := 0
	// commit appends the staged events, leaving room for their records.
	commit := func() error {
		b.reserve(opFlushCost.times(staged))
		_, err := c.commit()
		return err
	}
	for left := limit; left > 0; {
		keys, err := b.tx.CommittedKeys(expiryPrefix, from, min(left, expiryScanKeysMax))
		if err != nil {
			return err
		}
		for _, k := range keys {
			deadline, id, err := parseExpiryKey(k)
			if err != nil {
				return err
			}
			// The rest expire in later batches, as past the limit.
			if deadline >= now || !b.fits(opCost.plus(opFlushCost).times(staged+1)) {
				return commit()
			}
			if err := c.expireOne(id, deadline); err != nil {
				return fmt.Errorf("expire pending transfer %s: %w", id, err)
			}
			staged++
			left--
		}
		if len(keys) < expiryScanKeysMax {
			break
		}
		from = append(bytes.Clone(keys[len(keys)-1]), 0)
	}
	return commit()
}

func (c *chain) expireOne(id string, deadline int64) error {
	p, found, err := c.transfer(id)
	if err != nil {
		return err
	}
	if !found || p.Status != statusPending || p.Deadline != deadline {
		return fmt.Errorf("the expiry index names deadline %d, the record says otherwise", deadline)
	}
	ev := pendingSettled{PendingID: id, Amount: p.Amount, DebitAccount: p.DebitAccount, CreditAccount: p.CreditAccount}
	if err := c.applySettled(EventPendingExpired, &ev, "", c.next); err != nil {
		return err
	}
	return c.emit(TransferStreamPrefix+id, EventPendingExpired, &ev, nil)
}
