package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func testChain(b byte) crypto.Digest {
	var d crypto.Digest
	d[0] = b
	return d
}

func openTestProto(t testing.TB, dir string) *protoStore {
	t.Helper()
	s, err := openProtoStore(dir, testChain(1), quietLog)
	if err != nil {
		t.Fatalf("open protocol state: %v", err)
	}
	return s
}

// snapshot is everything ScanMeta shows.
func snapshot(t testing.TB, s *protoStore) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	var last string
	err := s.ScanMeta("", func(k string, v []byte) error {
		if len(got) > 0 && k <= last {
			return fmt.Errorf("key %q after %q: not in order", k, last)
		}
		last = k
		got[k] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameState(t testing.TB, what string, got, want map[string][]byte) {
	t.Helper()
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("%s: %d keys, want %d (%v against %v)", what, len(got), len(want), slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

// randomRounds applies rounds of random sets and deletes to s and to a model.
func randomRounds(t testing.TB, s *protoStore, model map[string][]byte, rng *rand.Rand, rounds int) {
	t.Helper()
	for range rounds {
		set := map[string][]byte{}
		var del []string
		for range rng.IntN(4) {
			k := fmt.Sprintf("pbft/env/%04x", rng.IntN(64))
			v := make([]byte, rng.IntN(300))
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			set[k] = v
		}
		for k := range model {
			if _, setToo := set[k]; !setToo && rng.IntN(6) == 0 {
				del = append(del, k)
			}
		}
		if err := s.PutMeta(set, del, rng.IntN(2) == 0); err != nil {
			t.Fatal(err)
		}
		maps.Copy(model, set)
		for _, k := range del {
			delete(model, k)
		}
	}
}

func TestProtoStoreReopensWithWhatWasWritten(t *testing.T) {
	dir := t.TempDir()
	s := openTestProto(t, dir)
	model := map[string][]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	randomRounds(t, s, model, rng, 300)
	if err := s.PutMeta(map[string][]byte{metaView: {0, 0, 0, 0, 0, 0, 0, 7}}, nil, true); err != nil {
		t.Fatal(err)
	}
	model[metaView] = []byte{0, 0, 0, 0, 0, 0, 0, 7}
	sameState(t, "before closing", snapshot(t, s), model)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestProto(t, dir)
	defer s.Close()
	sameState(t, "reopened", snapshot(t, s), model)

	v, ok, err := s.GetMeta(metaView)
	if err != nil || !ok || !bytes.Equal(v, model[metaView]) {
		t.Fatalf("GetMeta(view) = %x, %v, %v", v, ok, err)
	}
	if _, ok, _ := s.GetMeta("pbft/none"); ok {
		t.Fatal("GetMeta found a key never written")
	}
	var envs int
	if err := s.ScanMeta(metaEnvPrefix, func(k string, _ []byte) error {
		if !strings.HasPrefix(k, metaEnvPrefix) {
			t.Fatalf("ScanMeta(%q) gave %q", metaEnvPrefix, k)
		}
		envs++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if envs != len(model)-1 {
		t.Fatalf("ScanMeta(%q) gave %d keys, want %d", metaEnvPrefix, envs, len(model)-1)
	}
	v[0] = 9 // the copy GetMeta returned is the caller's
	if again, _, _ := s.GetMeta(metaView); again[0] != 0 {
		t.Fatal("changing GetMeta's answer changed the store")
	}
}

func TestProtoStoreRefusesBadWrites(t *testing.T) {
	s := openTestProto(t, t.TempDir())
	defer s.Close()
	if err := s.PutMeta(map[string][]byte{"a": {1}}, []string{"a"}, true); err == nil {
		t.Fatal("a key both set and deleted was taken")
	}
	s.recordMax = 100
	if err := s.PutMeta(map[string][]byte{"big": make([]byte, 101)}, nil, true); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("a record above the bound: err %v", err)
	}
	// A refused write leaves the store as it was, and usable.
	if err := s.PutMeta(map[string][]byte{"a": {1}}, nil, true); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after refusals", snapshot(t, s), map[string][]byte{"a": {1}})
}

// Every cut inside the last record, and zeros after it, read as that record
// torn by a crash: the file reopens with the state before it, cut back to
// the valid prefix, and takes writes again.
func TestProtoStoreCutsATornLastRecord(t *testing.T) {
	dir := t.TempDir()
	s := openTestProto(t, dir)
	before := map[string][]byte{}
	randomRounds(t, s, before, rand.New(rand.NewPCG(3, 4)), 40)
	validLen := s.size
	if err := s.PutMeta(map[string][]byte{"pbft/env/last": bytes.Repeat([]byte{7}, 500)}, []string{"pbft/env/0001"}, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, protocolStateFile)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := map[string][]byte{}
	for cut := validLen; cut < int64(len(full)); cut += 7 {
		damaged[fmt.Sprintf("cut at %d", cut)] = full[:cut]
	}
	last := slices.Clone(full)
	last[len(last)-1] ^= 0xff
	damaged["last byte flipped"] = last
	damaged["zeros after the end"] = append(slices.Clone(full[:validLen]), make([]byte, 4096)...)
	for name, data := range damaged {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := openTestProto(t, dir)
			sameState(t, "after the torn write", snapshot(t, s), before)
			if err := s.PutMeta(map[string][]byte{"pbft/env/after": {1}}, nil, true); err != nil {
				t.Fatal(err)
			}
			s.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() <= validLen || fi.Size() > validLen+64 {
				t.Fatalf("file is %d bytes after cutting to %d and one small record", fi.Size(), validLen)
			}
			s = openTestProto(t, dir)
			defer s.Close()
			want := maps.Clone(before)
			want["pbft/env/after"] = []byte{1}
			sameState(t, "reopened after the torn write", snapshot(t, s), want)
		})
	}
}

// Damage before the last record is not a crash's doing: the node refuses to
// start rather than forget votes it sent.
func TestProtoStoreRefusesDamageBeforeTheEnd(t *testing.T) {
	dir := t.TempDir()
	s := openTestProto(t, dir)
	randomRounds(t, s, map[string][]byte{}, rand.New(rand.NewPCG(5, 6)), 20)
	s.Close()
	path := filepath.Join(dir, protocolStateFile)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{protoFileHeader, protoFileHeader + 2, protoFileHeader + 5, protoFileHeader + 9, protoFileHeader + protoRecordHeader + 1, len(full) / 2} {
		data := slices.Clone(full)
		data[at] ^= 0x10
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := openProtoStore(dir, testChain(1), quietLog)
		if !errors.Is(err, errProtoCorrupt) {
			t.Fatalf("byte %d of %d flipped: open gave %v, want corruption", at, len(full), err)
		}
	}
	if err := os.WriteFile(path, full, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openProtoStore(dir, testChain(2), quietLog); err == nil || !strings.Contains(err.Error(), "another chain") {
		t.Fatalf("opened for another chain: err %v", err)
	}
}

func TestProtoStoreCompacts(t *testing.T) {
	dir := t.TempDir()
	s := openTestProto(t, dir)
	s.compactMin = 16 << 10
	model := map[string][]byte{}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		randomRounds(t, s, model, rng, 50)
		if s.size > max(s.compactMin, protoCompactRatio*(s.liveBytes+protoFileHeader))+4096 {
			t.Fatalf("file %d bytes with %d live: not compacted", s.size, s.liveBytes)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, protocolStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != s.size {
		t.Fatalf("file is %d bytes, the store thinks %d", fi.Size(), s.size)
	}
	if fi.Size() > 4*s.compactMin {
		t.Fatalf("file is %d bytes after 1,000 rounds of about 600 bytes: never compacted", fi.Size())
	}
	sameState(t, "after compactions", snapshot(t, s), model)
	s.Close()
	s = openTestProto(t, dir)
	defer s.Close()
	sameState(t, "reopened after compactions", snapshot(t, s), model)
}

// A data directory of an older node keeps its protocol state in a badger
// store; the first start moves it into the file and removes the store.
func TestProtoStoreMovesTheOldBadgerStore(t *testing.T) {
	dir := t.TempDir()
	oldDir := filepath.Join(dir, protocolStateDirOld)
	old, err := eventlog.Open(eventlog.Options{Dir: oldDir, Genesis: testChain(1), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{metaView: {0, 0, 0, 0, 0, 0, 0, 3}, envKey(1): {1, 2, 3}, envKey(2): bytes.Repeat([]byte{9}, 5000)}
	if err := old.PutMeta(want, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openTestProto(t, dir)
	sameState(t, "moved", snapshot(t, s), want)
	if _, err := os.Stat(oldDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old store is still there: %v", err)
	}
	s.Close()
	s = openTestProto(t, dir)
	defer s.Close()
	sameState(t, "reopened after the move", snapshot(t, s), want)
}

func TestProtoStoreInMemory(t *testing.T) {
	s := openTestProto(t, "")
	model := map[string][]byte{}
	randomRounds(t, s, model, rand.New(rand.NewPCG(9, 10)), 100)
	sameState(t, "in memory", snapshot(t, s), model)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzProtoStoreReplay feeds arbitrary bytes after a valid header: replay
// never panics, and what it accepts it accepts again when cut to the prefix
// it called valid.
func FuzzProtoStoreReplay(f *testing.F) {
	hdr := protoHeader(testChain(1))
	rec, err := appendRecord(nil, []string{"a", "pbft/view"}, map[string][]byte{"a": {1, 2}, "pbft/view": make([]byte, 8)}, []string{"b"}, protoRecordBytesMax)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add(append(slices.Clone(rec), rec[:5]...))
	f.Add(append(slices.Clone(rec), make([]byte, 20)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, tail []byte) {
		data := append(slices.Clone(hdr), tail...)
		s := &protoStore{chain: testChain(1), live: map[string][]byte{}, recordMax: protoRecordBytesMax}
		valid, err := s.replay(data)
		if err != nil {
			if !errors.Is(err, errProtoCorrupt) {
				t.Fatalf("replay error %v is not marked corrupt", err)
			}
			return
		}
		if valid < int64(len(hdr)) || valid > int64(len(data)) {
			t.Fatalf("valid prefix %d of %d bytes", valid, len(data))
		}
		again := &protoStore{chain: testChain(1), live: map[string][]byte{}, recordMax: protoRecordBytesMax}
		valid2, err := again.replay(data[:valid])
		if err != nil || valid2 != valid {
			t.Fatalf("the valid prefix replays to %d, %v", valid2, err)
		}
		sameState(t, "prefix", again.live, s.live)
	})
}

// BenchmarkProtocolStateWrite is one round's durable write of protocol state
// (a PRE-PREPARE of 32 requests or a vote, and the deletes of a pruning pass
// now and then): into the file, and into a badger store as older nodes kept
// it, for comparison in the same run.
func BenchmarkProtocolStateWrite(b *testing.B) {
	type putter interface {
		PutMeta(set map[string][]byte, del []string, sync bool) error
		Close() error
	}
	stores := []struct {
		name string
		open func(dir string) (putter, error)
	}{
		{"file", func(dir string) (putter, error) { return openProtoStore(dir, testChain(1), quietLog) }},
		{"badger", func(dir string) (putter, error) {
			return eventlog.Open(eventlog.Options{Dir: dir, Genesis: testChain(1), Logger: quietLog})
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s, err := st.open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			prePrepare, vote := make([]byte, 32*330), make([]byte, 200)
			var counter uint64
			cpu := processCPU(b)
			for b.Loop() {
				v := vote
				if counter%3 == 0 {
					v = prePrepare
				}
				var del []string
				if counter%64 == 63 {
					for c := counter - 63; c < counter-31; c++ {
						del = append(del, envKey(c))
					}
				}
				if err := s.PutMeta(map[string][]byte{envKey(counter): v}, del, true); err != nil {
					b.Fatal(err)
				}
				counter++
			}
			cpu = processCPU(b) - cpu
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
