package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// The protocol state (the view and the envelopes this replica must remember
// across a crash) lives in one append-only file, protocolStateFile, beside the
// event log. A write appends one record and fdatasyncs the file: about half
// the CPU and two thirds of the time of a badger commit plus msync, and it is
// on every round's path before votes leave.
//
// The file is a header (protoMagic, the chain digest, a CRC-32C of both) and
// then records: body length (4 bytes), CRC-32C of the length (4 bytes), CRC-32C
// of the body (4 bytes), body.
// A body holds one PutMeta: the keys it sets, each with its value, then the
// keys it deletes; counts and lengths are uvarints. Replaying the records in
// order gives the state. Every record is fdatasynced before the next is
// written, so only the last can be torn by a crash, in any of its blocks. A
// broken record with no whole record after it is that torn last record and is
// cut off; one with a whole record after it is damage a crash cannot cause,
// and the node refuses to start rather than forget the votes after it.
const (
	protocolStateFile = "protocol.log"
	// protocolStateDirOld is where older nodes kept the protocol state, in a
	// badger store; a node that finds it moves its keys into the file. Once
	// the file holds them the store is renamed with protoRetiredSuffix, then
	// removed, so a crash never leaves half a store where a whole one was.
	protocolStateDirOld = "protocol"
	protoRetiredSuffix  = ".retired"
	// protoRecordBytesMax bounds one record (one round's protocol state).
	// badger, which held it before, took about 9.6 MiB in one transaction.
	protoRecordBytesMax = 64 << 20
	// protoCompactBytesMin and protoCompactRatio decide when the file is
	// rewritten with only its live keys: once it is at least this long and
	// this many times what the live keys take.
	protoCompactBytesMin = 32 << 20
	protoCompactRatio    = 4
	protoRecordHeader    = 12
	// protoBufKeepBytes: a record buffer up to this size is kept for the
	// next write.
	protoBufKeepBytes = 1 << 20
)

var (
	protoMagic = []byte("ordo/protocol/1\n")
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

const protoFileHeader = 16 + crypto.DigestSize + 4

// errProtoCorrupt marks a protocol-state file that is damaged before its end.
var errProtoCorrupt = errors.New("corrupt")

// protoStore is the protocol state: the live keys in memory, every change
// appended to the file. One goroutine uses it at a time (restore, then the
// driver, then Close).
type protoStore struct {
	path  string
	chain crypto.Digest
	f     *os.File // nil in memory
	// size is the file's length: where the next record goes.
	size      int64
	live      map[string][]byte
	liveBytes int64
	// failed is sticky: after a write fails the file's tail is unknown, so
	// nothing more is written.
	failed error
	buf    []byte
	logger *slog.Logger
	// recordMax and compactMin are protoRecordBytesMax and
	// protoCompactBytesMin (tests lower them).
	recordMax  int
	compactMin int64
	// compactAfter holds the next compaction off until the file reaches it,
	// after one failed.
	compactAfter int64
}

// openProtoStore opens the protocol state in dataDir, or in memory when
// dataDir is empty. A store written for another chain is refused.
func openProtoStore(dataDir string, chain crypto.Digest, logger *slog.Logger) (*protoStore, error) {
	s := &protoStore{chain: chain, logger: logger, live: map[string][]byte{}, recordMax: protoRecordBytesMax, compactMin: protoCompactBytesMin}
	if dataDir == "" {
		return s, nil
	}
	s.path = filepath.Join(dataDir, protocolStateFile)
	oldDir := filepath.Join(dataDir, protocolStateDirOld)
	// What a crash left of a rewrite before its rename, or of a retired old
	// store: the file is whole without either.
	if err := os.Remove(s.path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("protocol state: %w", err)
	}
	if err := os.RemoveAll(oldDir + protoRetiredSuffix); err != nil {
		return nil, fmt.Errorf("protocol state: remove the retired old store: %w", err)
	}
	old, hasOld, err := readOldStore(oldDir, chain, logger)
	if err != nil {
		return nil, err
	}
	_, err = os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if hasOld {
			logger.Info("protocol state: moving the old store into one file", "keys", len(old), "path", s.path)
			s.live = maps.Clone(old)
		}
		if _, err := s.rewrite(); err != nil {
			return nil, err
		}
		s.live = map[string][]byte{}
	case err != nil:
		return nil, fmt.Errorf("protocol state: %w", err)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("protocol state: %w", err)
	}
	valid, err := s.replay(data)
	if err != nil {
		return nil, fmt.Errorf("protocol state %s: %w", s.path, err)
	}
	if hasOld {
		// A move that crashed before the old store was retired left both,
		// equal. Unequal, an older ordo ran here after the file was made and
		// each holds votes the other lacks: only the operator can choose.
		if !maps.EqualFunc(s.live, old, bytes.Equal) {
			return nil, fmt.Errorf("protocol state: %s and the older store %s both exist and differ: an ordo older than the file ran on this data directory after it was made; remove the one this node did not last run with", s.path, oldDir)
		}
		if err := retire(oldDir); err != nil {
			return nil, err
		}
	}
	s.f, err = os.OpenFile(s.path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("protocol state: %w", err)
	}
	if valid < int64(len(data)) {
		logger.Warn("protocol state: cutting off a record torn by a crash", "path", s.path, "offset", valid, "bytes", int64(len(data))-valid)
		if err := s.f.Truncate(valid); err != nil {
			s.f.Close()
			return nil, fmt.Errorf("protocol state: cut a torn record: %w", err)
		}
		if err := s.f.Sync(); err != nil {
			s.f.Close()
			return nil, fmt.Errorf("protocol state: cut a torn record: %w", err)
		}
	}
	s.size = valid
	return s, nil
}

// readOldStore reads every key of an older node's badger store in oldDir;
// has is false when there is none.
func readOldStore(oldDir string, chain crypto.Digest, logger *slog.Logger) (keys map[string][]byte, has bool, err error) {
	if _, err := os.Stat(oldDir); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("protocol state: the old store: %w", err)
	}
	old, err := eventlog.Open(eventlog.Options{Dir: oldDir, Genesis: chain, Logger: logger, NoExecutorCache: true})
	if err != nil {
		return nil, false, fmt.Errorf("protocol state: open the old store: %w", err)
	}
	keys = map[string][]byte{}
	err = old.ScanMeta("", func(key string, val []byte) error {
		keys[key] = val
		return nil
	})
	if cerr := old.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("protocol state: read the old store: %w", err)
	}
	return keys, true, nil
}

// retire removes the old store once the file holds its keys: first a rename,
// made durable, so that no crash leaves part of it under its own name.
func retire(oldDir string) error {
	retired := oldDir + protoRetiredSuffix
	if err := os.Rename(oldDir, retired); err != nil {
		return fmt.Errorf("protocol state: retire the old store: %w", err)
	}
	if err := syncDir(filepath.Dir(oldDir)); err != nil {
		return fmt.Errorf("protocol state: retire the old store: %w", err)
	}
	if err := os.RemoveAll(retired); err != nil {
		return fmt.Errorf("protocol state: remove the retired old store: %w", err)
	}
	return nil
}

// rewrite replaces the file, atomically, with a header and s.live. renamed
// reports whether the new file took the old one's name: an error before that
// leaves the old file as it was, one after it leaves unknown which of the two
// a crash would bring back.
func (s *protoStore) rewrite() (renamed bool, err error) {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false, fmt.Errorf("protocol state: rewrite: %w", err)
	}
	size, err := writeSnapshot(f, s.chain, s.live, s.recordMax)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("protocol state: rewrite: %w", err)
	}
	s.size = size
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return true, fmt.Errorf("protocol state: rewrite: %w", err)
	}
	return true, nil
}

// writeSnapshot writes a header and every key of live, in key order, in
// records of at most recordMax bytes (or one key each), and returns the
// bytes written.
func writeSnapshot(w io.Writer, chain crypto.Digest, live map[string][]byte, recordMax int) (int64, error) {
	hdr := protoHeader(chain)
	if _, err := w.Write(hdr); err != nil {
		return 0, err
	}
	size := int64(len(hdr))
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for len(keys) > 0 {
		n, bodyBytes := 0, 2*binary.MaxVarintLen64
		for n < len(keys) {
			kv := 2*binary.MaxVarintLen64 + len(keys[n]) + len(live[keys[n]])
			if n > 0 && bodyBytes+kv > recordMax {
				break
			}
			bodyBytes += kv
			n++
		}
		rec, err := appendRecord(nil, keys[:n], live, nil, recordMax)
		if err != nil {
			return size, err
		}
		if _, err := w.Write(rec); err != nil {
			return size, err
		}
		size += int64(len(rec))
		keys = keys[n:]
	}
	return size, nil
}

func protoHeader(chain crypto.Digest) []byte {
	b := make([]byte, 0, protoFileHeader)
	b = append(b, protoMagic...)
	b = append(b, chain[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// appendRecord appends the record setting keys (to their values in vals) and
// deleting dels; a body above recordMax bytes is refused.
func appendRecord(b []byte, keys []string, vals map[string][]byte, dels []string, recordMax int) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, protoRecordHeader)...)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		v := vals[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = binary.AppendUvarint(b, uint64(len(dels)))
	for _, k := range dels {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	body := b[start+protoRecordHeader:]
	if len(body) > recordMax {
		return b[:start], fmt.Errorf("a record of %d bytes exceeds %d", len(body), recordMax)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(b[start:start+4], crcTable))
	binary.BigEndian.PutUint32(b[start+8:], crc32.Checksum(body, crcTable))
	return b, nil
}

// replay checks the header and applies every record to s.live. It returns
// the length of the valid prefix: shorter than data when the last record was
// torn by a crash.
func (s *protoStore) replay(data []byte) (int64, error) {
	if len(data) < protoFileHeader || !bytes.Equal(data[:len(protoMagic)], protoMagic) {
		return 0, fmt.Errorf("%w: not a protocol-state file", errProtoCorrupt)
	}
	hdr := data[:protoFileHeader]
	if crc32.Checksum(hdr[:protoFileHeader-4], crcTable) != binary.BigEndian.Uint32(hdr[protoFileHeader-4:]) {
		return 0, fmt.Errorf("%w: the file's header is damaged", errProtoCorrupt)
	}
	if !bytes.Equal(hdr, protoHeader(s.chain)) {
		return 0, errors.New("protocol state of another chain")
	}
	off := protoFileHeader
	for off < len(data) {
		body, n, ok := s.record(data[off:])
		if !ok {
			if at, found := s.recordAfter(data, off); found {
				return 0, fmt.Errorf("%w at offset %d: a broken record, and a whole one after it at %d", errProtoCorrupt, off, at)
			}
			return int64(off), nil // the last record, torn
		}
		if err := s.applyBody(body); err != nil {
			return 0, fmt.Errorf("%w at offset %d: %v", errProtoCorrupt, off, err)
		}
		off += n
	}
	return int64(off), nil
}

// record reads the record at the start of b: its body and its length with
// the header, or false when it is not whole (cut short, a length out of
// bounds, or a checksum that fails).
func (s *protoStore) record(b []byte) (body []byte, n int, ok bool) {
	if len(b) < protoRecordHeader || crc32.Checksum(b[:4], crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return nil, 0, false
	}
	l := binary.BigEndian.Uint32(b)
	if l == 0 || uint64(l) > uint64(s.recordMax) || uint64(l) > uint64(len(b)-protoRecordHeader) {
		return nil, 0, false
	}
	n = protoRecordHeader + int(l)
	body = b[protoRecordHeader:n]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[8:]) {
		return nil, 0, false
	}
	return body, n, true
}

// recordAfter finds a whole record starting after off, where a broken one
// starts.
func (s *protoStore) recordAfter(data []byte, off int) (int, bool) {
	for at := off + 1; at+protoRecordHeader <= len(data); at++ {
		if _, _, ok := s.record(data[at:]); ok {
			return at, true
		}
	}
	return 0, false
}

// applyBody applies one record's sets and deletes to s.live.
func (s *protoStore) applyBody(body []byte) error {
	r := body
	next := func() ([]byte, error) {
		l, k := binary.Uvarint(r)
		if k <= 0 || l > uint64(len(r)-k) {
			return nil, errors.New("truncated field")
		}
		f := r[k : k+int(l) : k+int(l)]
		r = r[k+int(l):]
		return f, nil
	}
	count := func() (int, error) {
		c, k := binary.Uvarint(r)
		if k <= 0 || c > uint64(len(r)) {
			return 0, errors.New("bad count")
		}
		r = r[k:]
		return int(c), nil
	}
	sets, err := count()
	if err != nil {
		return err
	}
	for range sets {
		k, err := next()
		if err != nil {
			return err
		}
		v, err := next()
		if err != nil {
			return err
		}
		s.put(string(k), slices.Clone(v))
	}
	dels, err := count()
	if err != nil {
		return err
	}
	for range dels {
		k, err := next()
		if err != nil {
			return err
		}
		s.remove(string(k))
	}
	if len(r) != 0 {
		return fmt.Errorf("%d bytes after the record's fields", len(r))
	}
	return nil
}

func (s *protoStore) put(k string, v []byte) {
	s.remove(k)
	s.live[k] = v
	s.liveBytes += int64(len(k) + len(v))
}

func (s *protoStore) remove(k string) {
	if old, ok := s.live[k]; ok {
		s.liveBytes -= int64(len(k) + len(old))
		delete(s.live, k)
	}
}

// PutMeta sets and deletes keys in one record, on disk when it returns. A key
// both set and deleted is refused.
func (s *protoStore) PutMeta(set map[string][]byte, del []string) error {
	if s.failed != nil {
		return fmt.Errorf("put protocol state: an earlier write failed: %w", s.failed)
	}
	keys, dels, err := eventlog.MetaChange(set, del)
	if err != nil {
		return fmt.Errorf("put protocol state: %w", err)
	}
	if s.f != nil {
		rec, err := appendRecord(s.buf[:0], keys, set, dels, s.recordMax)
		if err != nil {
			return fmt.Errorf("put protocol state: %w", err)
		}
		if cap(rec) <= protoBufKeepBytes {
			s.buf = rec
		}
		if err := s.append(rec); err != nil {
			s.failed = err
			return fmt.Errorf("put protocol state: %w", err)
		}
	}
	for _, k := range keys {
		s.put(k, slices.Clone(set[k]))
	}
	for _, k := range dels {
		s.remove(k)
	}
	if s.f != nil && s.size >= max(s.compactMin, s.compactAfter) && s.size >= protoCompactRatio*(s.liveBytes+protoFileHeader) {
		if err := s.compact(); err != nil {
			s.failed = err
			return fmt.Errorf("put protocol state: %w", err)
		}
	}
	return nil
}

func (s *protoStore) append(rec []byte) error {
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		return err
	}
	s.size += int64(len(rec))
	return fdatasync(s.f)
}

// compact rewrites the file with only the live keys. A rewrite that fails
// before its rename leaves the file whole and in use: the failure is logged,
// and the next try waits until the file has grown by compactMin. One that
// fails after it is returned, and sticks: which file a crash would bring back
// is unknown.
func (s *protoStore) compact() error {
	start, before := time.Now(), s.size
	renamed, err := s.rewrite()
	if !renamed {
		s.compactAfter = before + s.compactMin
		s.logger.Warn("protocol state: compaction failed; the file stays as it was", "bytes", before, "err", err)
		return nil
	}
	old := s.f
	s.f = nil
	if cerr := old.Close(); cerr != nil {
		s.logger.Warn("protocol state: closing the file compaction replaced", "err", cerr)
	}
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	s.f = f
	s.compactAfter = 0
	s.logger.Info("protocol state: compacted", "bytes_before", before, "bytes_after", s.size, "keys", len(s.live), "took", time.Since(start))
	return nil
}

// GetMeta reads one key.
func (s *protoStore) GetMeta(key string) ([]byte, bool, error) {
	v, ok := s.live[key]
	return slices.Clone(v), ok, nil
}

// ScanMeta calls fn for every key starting with prefix, in key order, with a
// copy of its value; it stops at fn's first error.
func (s *protoStore) ScanMeta(prefix string, fn func(key string, val []byte) error) error {
	var keys []string
	for k := range s.live {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(k, slices.Clone(s.live[k])); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (s *protoStore) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("close protocol state: %w", err)
	}
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
