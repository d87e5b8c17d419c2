package cqrs

import (
	"encoding/json"
	"fmt"
)

// Bounds on the decoded rows the built-in projections keep in memory.
const (
	// rowsCachedMax bounds the committed rows one generation keeps decoded
	// between transactions. A built-in row holds at most two keys' worth of
	// text (RowKeyBytesMax each) and a few integers, so a generation's cache
	// stays within about 1.5 MiB.
	rowsCachedMax = 1024
	// txnRowsChangedMax bounds the rows one transaction keeps decoded before
	// it writes them to badger (and stops caching them): the rows of a
	// transaction's events, at most this many at a time.
	txnRowsChangedMax = 256
	// rowBytesTypical sizes the buffer built-in rows and their keys are
	// encoded into: a streams row with a short name is about 200 bytes.
	rowBytesTypical = 256
)

// builtinRow is a built-in projection's row kept decoded while events change
// it. It is read with encoding/json and written by appendJSON, which produces
// the bytes json.Marshal would: the stored rows, and so the query API's
// answers, are those of the per-event encoding.
type builtinRow interface {
	appendJSON(b []byte) []byte
}

// rowCache holds a generation's most recently committed built-in rows,
// decoded, so that a row changed by one transaction after another is neither
// read from badger (which looks through every level for a key it holds in
// memory) nor decoded again. Only the generation's runner goroutine uses it,
// and a row enters it only once the transaction that wrote it committed, so
// every entry equals the stored row.
type rowCache struct {
	// rows maps a key to its row, or to nil while a transaction has taken
	// it or since it was forgotten.
	rows map[string]builtinRow
	// ring holds the keys of rows in the order they entered; when it is
	// full, the oldest leaves.
	ring []string
	next int
}

// take hands the cached row under key to a transaction, which changes it in
// place: until put brings it back, the key is not cached.
func (c *rowCache) take(key string) (builtinRow, bool) {
	row := c.rows[key]
	if row == nil {
		return nil, false
	}
	c.rows[key] = nil
	return row, true
}

func (c *rowCache) put(key string, row builtinRow) {
	if c.rows == nil {
		c.rows = make(map[string]builtinRow)
	}
	if _, ok := c.rows[key]; !ok {
		if len(c.ring) < rowsCachedMax {
			c.ring = append(c.ring, key)
		} else {
			delete(c.rows, c.ring[c.next])
			c.ring[c.next] = key
			c.next = (c.next + 1) % rowsCachedMax
		}
	}
	c.rows[key] = row
}

func (c *rowCache) forget(key string) {
	if _, ok := c.rows[key]; ok {
		c.rows[key] = nil
	}
}

func (c *rowCache) clear() {
	c.rows, c.ring, c.next = nil, nil, 0
}

// loadRow returns the row under key for a built-in projection to change and
// then pass to keepRow, and whether there was one (if not, the row is new).
// In the engine's transaction the row comes from the transaction's own
// changes, then from the generation's cache (which gives it up until the
// transaction commits, so a discarded transaction leaves no changed row
// behind), then from badger. A row the transaction kept comes back itself,
// to be changed in place: an Apply loads each key once, and one that
// changed a row returns no ErrSkip. Any other Tx is read and decoded every
// time.
func loadRow[R any, P interface {
	*R
	builtinRow
}](t Tx, key string) (P, bool, error) {
	bt, ok := t.(*tx)
	if !ok {
		row := P(new(R))
		found, err := getRow(t, key, row)
		return row, found, err
	}
	if kept, ok := bt.changed[key]; ok {
		row, ok := kept.(P)
		if !ok {
			return nil, false, fmt.Errorf("row %q is kept as %T, not %T", key, kept, row)
		}
		return row, true, nil
	}
	if cached, ok := bt.rows.take(key); ok {
		row, ok := cached.(P)
		if !ok {
			return nil, false, fmt.Errorf("row %q is cached as %T, not %T", key, cached, row)
		}
		return row, true, nil
	}
	row := P(new(R))
	found, err := getRow(t, key, row)
	return row, found, err
}

// keepRow records row as the new value under key. The engine's transaction
// writes it once, when the transaction ends (or when it holds
// txnRowsChangedMax changed rows); any other Tx gets it at once.
func keepRow(t Tx, key string, row builtinRow) error {
	bt, ok := t.(*tx)
	if !ok {
		return t.Set(key, row.appendJSON(nil))
	}
	return bt.keep(key, row)
}

// getRow decodes the row under key into v, leaving v alone if there is none.
func getRow(t Tx, key string, v any) (bool, error) {
	b, found, err := t.Get(key)
	if err != nil || !found {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("stored row %q: %w", key, err)
	}
	return true, nil
}

// appendJSONString appends s as json.Marshal writes a string. Text that
// needs no escaping is copied; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				panic(fmt.Sprintf("cqrs: json.Marshal of a string failed: %v", err))
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
