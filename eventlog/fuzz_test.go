package eventlog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

func sampleEntry() *Entry {
	e := &Entry{
		Seq: 3, View: 1, Timestamp: 42, Digest: crypto.Hash([]byte("d")),
		Requests: [][]byte{[]byte("r1"), []byte("r2")}, Certificate: []byte("c"),
		Results: [][]byte{[]byte("a"), []byte("b")}, PrevHash: crypto.Hash([]byte("p")),
		FirstPosition: 7, EventCount: 2,
	}
	e.ResultsRoot = crypto.MerkleRoot(e.Results)
	e.Hash = EntryHash(e.PrevHash, e.Seq, e.Digest, e.ResultsRoot)
	return e
}

func FuzzDecodeEntry(f *testing.F) {
	good := codec.MustMarshal(sampleEntry())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x05, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		if e.Hash != EntryHash(e.PrevHash, e.Seq, e.Digest, e.ResultsRoot) || e.ResultsRoot != crypto.MerkleRoot(e.Results) {
			t.Fatalf("DecodeEntry accepted an entry that fails its own hashes: %+v", e)
		}
		if _, err := decodeStoredEntry(e.Seq+1, b); err == nil {
			t.Fatal("a stored entry decoded under another seq")
		}
	})
}

func FuzzDecodeStoredEvent(f *testing.F) {
	good := codec.MustMarshal(&Event{Position: 9, Stream: "s", Version: 2, ID: [16]byte{1}, Type: "t", Data: []byte("d"), EntrySeq: 4, Timestamp: 5})
	f.Add(uint64(9), good)
	f.Add(uint64(8), good)
	f.Add(uint64(1), codec.MustMarshal(&Event{Position: 1, Stream: "a\x00b"}))
	f.Add(uint64(1), []byte{0xff})
	f.Fuzz(func(t *testing.T, pos uint64, b []byte) {
		ev, err := decodeStoredEvent(pos, b)
		if err != nil {
			return
		}
		if ev.Position != pos || checkStreamName(ev.Stream) != nil {
			t.Fatalf("decoded event %+v at position %d", ev, pos)
		}
	})
}

func FuzzDecodeIndexValues(f *testing.F) {
	f.Add(codec.MustMarshal(&EventRef{Stream: "s", Position: 1, Version: 0, ContentHash: crypto.Hash()}))
	f.Add(marshalHead(head{Seq: 1, Hash: crypto.Hash(), LastPosition: 3}))
	f.Add(u64(7))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeEventRef([16]byte{}, b); err == nil {
			again := codec.MustMarshal(&r)
			if _, err := decodeEventRef([16]byte{}, again); err != nil {
				t.Fatalf("a decoded ref does not decode again: %v", err)
			}
		}
		if h, err := decodeHead(b); err == nil {
			if _, err := decodeHead(marshalHead(h)); err != nil {
				t.Fatalf("a decoded head does not decode again: %v", err)
			}
		}
		if v, err := decodeU64("value", b); err == nil && !bytes.Equal(u64(v), b) {
			t.Fatalf("u64 %x decoded to %d", b, v)
		}
	})
}

// recordingHandler keeps every record it is given.
type recordingHandler struct{ records *[]string }

func (h recordingHandler) Enabled(_ context.Context, _ slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	*h.records = append(*h.records, fmt.Sprintf("%s %s", r.Level, r.Message))
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLoggerKeepsWarnings(t *testing.T) {
	var records []string
	l := badgerLogger{slog.New(recordingHandler{&records})}
	l.Debugf("debug %d\n", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d\n", 4)
	if got := strings.Join(records, "|"); got != "WARN warn 3|ERROR error 4" {
		t.Fatalf("badger logs passed on: %q", got)
	}
}
