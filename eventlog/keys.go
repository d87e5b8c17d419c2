package eventlog

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Key prefixes; see doc.go for the layout.
const (
	prefixHead    byte = 0x01
	prefixGenesis byte = 0x02
	prefixEntry   byte = 0x10
	prefixEvent   byte = 0x11
	prefixStream  byte = 0x12
	// 0x13 is retired: older logs hold stream head keys there (doc.go).
	prefixID    byte = 0x14
	prefixState byte = 0x20
	prefixMeta  byte = 0x30
)

// Bounds on names and keys.
const (
	// StreamNameBytesMax bounds a stream name. The executor enforces the
	// user-facing rules (characters); the log only needs names to be short and
	// free of the 0x00 separator.
	StreamNameBytesMax = 128
	// StateKeyBytesMax and MetaKeyBytesMax bound keys in the two key spaces
	// (badger's own limit is far higher; ours keeps indexes small).
	StateKeyBytesMax = 1024
	MetaKeyBytesMax  = 1024
)

var (
	keyHead    = []byte{prefixHead}
	keyGenesis = []byte{prefixGenesis}
)

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func withU64(prefix byte, v uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], v)
	return k
}

func entryKey(seq uint64) []byte { return withU64(prefixEntry, seq) }
func eventKey(pos uint64) []byte { return withU64(prefixEvent, pos) }

// streamPrefix is every index key of one stream: 0x12 stream 0x00.
func streamPrefix(stream string) []byte {
	k := make([]byte, 0, 2+len(stream)+8)
	k = append(k, prefixStream)
	k = append(k, stream...)
	return append(k, 0)
}

func streamKey(stream string, version uint64) []byte {
	return append(streamPrefix(stream), u64(version)...)
}

func idKey(id [16]byte) []byte {
	return append([]byte{prefixID}, id[:]...)
}

func stateKey(key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > StateKeyBytesMax {
		return nil, fmt.Errorf("state key of %d bytes, want 1..%d", len(key), StateKeyBytesMax)
	}
	return append([]byte{prefixState}, key...), nil
}

func metaKey(key string) ([]byte, error) {
	if len(key) == 0 || len(key) > MetaKeyBytesMax {
		return nil, fmt.Errorf("meta key of %d bytes, want 1..%d", len(key), MetaKeyBytesMax)
	}
	return append([]byte{prefixMeta}, key...), nil
}

func checkStreamName(stream string) error {
	if len(stream) == 0 || len(stream) > StreamNameBytesMax {
		return fmt.Errorf("stream name of %d bytes, want 1..%d", len(stream), StreamNameBytesMax)
	}
	if strings.IndexByte(stream, 0) >= 0 {
		return fmt.Errorf("stream name %q contains a 0x00 byte", stream)
	}
	return nil
}

func decodeU64(what string, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%s: %d bytes, want 8: %w", what, len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}
