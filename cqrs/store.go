package cqrs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/codec"
)

// Key prefixes; see doc.go for the layout.
const (
	prefixMeta       byte = 0x01
	prefixGenCounter byte = 0x02
	prefixCheckpoint byte = 0x03
	prefixDrop       byte = 0x04
	prefixRow        byte = 0x10
	prefixState      byte = 0x11
)

// Bounds on what a projection may store.
const (
	// RowKeyBytesMax bounds a row key and a private state key.
	RowKeyBytesMax = 512
	// RowBytesMax bounds one row or state value. It stays below badger's value
	// threshold (1 MiB), so every value lives in the LSM tree and there is no
	// value log to garbage-collect.
	RowBytesMax = 512 << 10
)

// metaRecord says which generation serves a projection and which, if any, is
// being rebuilt.
type metaRecord struct {
	Gen           uint64 `cbor:"1,keyasint"`
	Version       int64  `cbor:"2,keyasint"`
	ShadowGen     uint64 `cbor:"3,keyasint,omitempty"`
	ShadowVersion int64  `cbor:"4,keyasint,omitempty"`
}

// checkpoint is written in the same transaction as the rows it describes.
type checkpoint struct {
	Position uint64 `cbor:"1,keyasint"`
	Skipped  uint64 `cbor:"2,keyasint"`
}

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

var keyGenCounter = []byte{prefixGenCounter}

// genKey is prefix, gen(8), key.
func genKey(prefix byte, gen uint64, key string) []byte {
	k := make([]byte, 9+len(key))
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:9], gen)
	copy(k[9:], key)
	return k
}

func checkpointKey(gen uint64) []byte        { return genKey(prefixCheckpoint, gen, "") }
func dropKey(gen uint64) []byte              { return genKey(prefixDrop, gen, "") }
func rowKey(gen uint64, key string) []byte   { return genKey(prefixRow, gen, key) }
func stateKey(gen uint64, key string) []byte { return genKey(prefixState, gen, key) }

func decodeMeta(b []byte) (metaRecord, error) {
	var m metaRecord
	if err := codec.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode projection meta: %w", err)
	}
	if m.Gen == 0 {
		return m, errors.New("decode projection meta: generation 0")
	}
	if m.ShadowGen == m.Gen {
		return m, fmt.Errorf("decode projection meta: shadow generation %d is the active one", m.Gen)
	}
	return m, nil
}

func decodeCheckpoint(b []byte) (checkpoint, error) {
	var c checkpoint
	if err := codec.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode checkpoint: %w", err)
	}
	return c, nil
}

// marshalMeta and marshalCheckpoint encode fixed structs of integers; a
// failure would be a broken invariant.
func marshalMeta(m metaRecord) []byte       { return codec.MustMarshal(&m) }
func marshalCheckpoint(c checkpoint) []byte { return codec.MustMarshal(&c) }

// get reads a key and copies its value out.
func get(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %x: %w", key[:1], err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, fmt.Errorf("read %x: %w", key[:1], err)
	}
	return v, true, nil
}

func loadMeta(txn *badger.Txn, name string) (metaRecord, bool, error) {
	b, found, err := get(txn, metaKey(name))
	if err != nil || !found {
		return metaRecord{}, false, err
	}
	m, err := decodeMeta(b)
	if err != nil {
		return m, false, fmt.Errorf("projection %s: %w", name, err)
	}
	return m, true, nil
}

func loadCheckpoint(txn *badger.Txn, gen uint64) (checkpoint, error) {
	b, found, err := get(txn, checkpointKey(gen))
	if err != nil {
		return checkpoint{}, err
	}
	if !found {
		return checkpoint{}, fmt.Errorf("generation %d has no checkpoint", gen)
	}
	c, err := decodeCheckpoint(b)
	if err != nil {
		return c, fmt.Errorf("generation %d: %w", gen, err)
	}
	return c, nil
}

// tx is the badger-backed Tx. It remembers a storage failure and a
// transaction that grew too big, whatever the projection does with the error,
// so that the engine can tell its own trouble from the projection's.
//
// The built-in projections change rows through loadRow and keepRow instead
// of Get and Set: tx keeps their rows decoded until writeRows encodes each
// once, so a row that several events change is read, decoded, encoded and
// written once per transaction, not once per event.
type tx struct {
	txn        *badger.Txn
	gen        uint64
	tooBig     bool
	storageErr error

	// rows is the generation's cache of committed built-in rows.
	rows *rowCache
	// changed holds the built-in rows kept since the last writeRows, and
	// changedKeys their keys in the order first kept.
	changed     map[string]builtinRow
	changedKeys []string
}

// keep makes row the transaction's value under key. While a key is kept,
// the cache holds no row for it: the cache gives up a row loadRow takes,
// and forgets one kept without loading.
func (t *tx) keep(key string, row builtinRow) error {
	if _, ok := t.changed[key]; !ok {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("set row: %w", err)
		}
		if t.changed == nil {
			t.changed = make(map[string]builtinRow)
		}
		t.changedKeys = append(t.changedKeys, key)
		t.rows.forget(key)
	}
	t.changed[key] = row
	return nil
}

// writeRows writes the kept rows into the badger transaction; they stay
// kept, for commitRows. Keys and rows are encoded one after another into
// one buffer, which badger holds until the transaction ends.
func (t *tx) writeRows() error {
	buf := make([]byte, 0, len(t.changedKeys)*rowBytesTypical)
	for _, key := range t.changedKeys {
		start := len(buf)
		buf = append(buf, prefixRow)
		buf = binary.BigEndian.AppendUint64(buf, t.gen)
		buf = append(buf, key...)
		mid := len(buf)
		buf = t.changed[key].appendJSON(buf)
		if err := t.txn.Set(buf[start:mid:mid], buf[mid:len(buf):len(buf)]); err != nil {
			return t.storage("write", err)
		}
	}
	return nil
}

// spillRows writes the kept rows and stops keeping them, to bound the rows
// a transaction holds decoded. The cache holds none of them (see keep), so
// later events read them back from the badger transaction.
func (t *tx) spillRows() error {
	if err := t.writeRows(); err != nil {
		return err
	}
	clear(t.changed)
	t.changedKeys = t.changedKeys[:0]
	return nil
}

// commitRows puts the kept rows, now committed, into the cache.
func (t *tx) commitRows() {
	for _, key := range t.changedKeys {
		t.rows.put(key, t.changed[key])
	}
}

func (t *tx) storage(op string, err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		t.tooBig = true
	} else if t.storageErr == nil {
		t.storageErr = fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func checkKey(key string) error {
	if len(key) == 0 || len(key) > RowKeyBytesMax {
		return fmt.Errorf("key of %d bytes, want 1..%d", len(key), RowKeyBytesMax)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("key %q is not UTF-8", key)
	}
	return nil
}

func checkValue(value []byte) error {
	if len(value) > RowBytesMax {
		return fmt.Errorf("value of %d bytes exceeds %d", len(value), RowBytesMax)
	}
	return nil
}

// checkRow demands a JSON object: the query API adds "position" to it.
func checkRow(row []byte) error {
	if err := checkValue(row); err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(row)
	if len(trimmed) < 2 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return errors.New("row is not a JSON object")
	}
	return nil
}

func (t *tx) read(key []byte) ([]byte, bool, error) {
	v, found, err := get(t.txn, key)
	if err != nil {
		return nil, false, t.storage("read", err)
	}
	return v, found, nil
}

func (t *tx) write(key, value []byte) error {
	if err := t.txn.Set(key, bytes.Clone(value)); err != nil {
		return t.storage("write", err)
	}
	return nil
}

func (t *tx) remove(key []byte) error {
	if err := t.txn.Delete(key); err != nil {
		return t.storage("delete", err)
	}
	return nil
}

func (t *tx) Get(key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, fmt.Errorf("get row: %w", err)
	}
	return t.read(rowKey(t.gen, key))
}

func (t *tx) Set(key string, row []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("set row: %w", err)
	}
	if err := checkRow(row); err != nil {
		return fmt.Errorf("set row %q: %w", key, err)
	}
	return t.write(rowKey(t.gen, key), row)
}

func (t *tx) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("delete row: %w", err)
	}
	return t.remove(rowKey(t.gen, key))
}

func (t *tx) GetState(key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, fmt.Errorf("get state: %w", err)
	}
	return t.read(stateKey(t.gen, key))
}

func (t *tx) SetState(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	if err := checkValue(value); err != nil {
		return fmt.Errorf("set state %q: %w", key, err)
	}
	return t.write(stateKey(t.gen, key), value)
}

func (t *tx) DeleteState(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("delete state: %w", err)
	}
	return t.remove(stateKey(t.gen, key))
}
