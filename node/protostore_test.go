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
		if err := s.PutMeta(set, del); err != nil {
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
	if err := s.PutMeta(map[string][]byte{metaView: {0, 0, 0, 0, 0, 0, 0, 7}}, nil); err != nil {
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
	if err := s.PutMeta(map[string][]byte{"a": {1}}, []string{"a"}); err == nil {
		t.Fatal("a key both set and deleted was taken")
	}
	s.recordMax = 100
	if err := s.PutMeta(map[string][]byte{"big": make([]byte, 101)}, nil); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("a record above the bound: err %v", err)
	}
	// A refused write leaves the store as it was, and usable.
	if err := s.PutMeta(map[string][]byte{"a": {1}}, nil); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after refusals", snapshot(t, s), map[string][]byte{"a": {1}})
}

// roundsThenLast writes random rounds into a new store in dir, then one last
// record of set and del, and closes it. It returns the state before the last
// record, where that record starts, and the file's bytes.
func roundsThenLast(t *testing.T, dir string, seed uint64, rounds int, set map[string][]byte, del []string) (map[string][]byte, int64, []byte) {
	t.Helper()
	s := openTestProto(t, dir)
	before := map[string][]byte{}
	randomRounds(t, s, before, rand.New(rand.NewPCG(seed, seed+1)), rounds)
	lastStart := s.size
	if err := s.PutMeta(set, del); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(filepath.Join(dir, protocolStateFile))
	if err != nil {
		t.Fatal(err)
	}
	return before, lastStart, full
}

// Every cut inside the last record, and zeros after it, read as that record
// torn by a crash: the file reopens with the state before it, cut back to
// the valid prefix, and takes writes again.
func TestProtoStoreCutsATornLastRecord(t *testing.T) {
	dir := t.TempDir()
	before, validLen, full := roundsThenLast(t, dir, 3, 40, map[string][]byte{"pbft/env/last": bytes.Repeat([]byte{7}, 500)}, []string{"pbft/env/0001"})
	path := filepath.Join(dir, protocolStateFile)
	damaged := map[string][]byte{}
	for cut := validLen; cut < int64(len(full)); cut += 7 {
		damaged[fmt.Sprintf("cut at %d", cut)] = full[:cut]
	}
	last := slices.Clone(full)
	last[len(last)-1] ^= 0xff
	damaged["last byte flipped"] = last
	damaged["zeros after the end"] = append(slices.Clone(full[:validLen]), make([]byte, 4096)...)
	// A crash can lose any block of the last record, not only its end: the
	// disk may write the record's later blocks and not its first.
	zeroed := func(from, to int64) []byte {
		b := slices.Clone(full)
		clear(b[from:to])
		return b
	}
	damaged["its header lost"] = zeroed(validLen, validLen+protoRecordHeader+40)
	damaged["its length written, its checksums not"] = zeroed(validLen+4, validLen+protoRecordHeader)
	damaged["a block inside it lost"] = zeroed(validLen+100, validLen+300)
	for name, data := range damaged {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := openTestProto(t, dir)
			sameState(t, "after the torn write", snapshot(t, s), before)
			if err := s.PutMeta(map[string][]byte{"pbft/env/after": {1}}, nil); err != nil {
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
	_, lastStart, full := roundsThenLast(t, dir, 5, 20, map[string][]byte{"pbft/env/last": {1, 2, 3}}, nil)
	path := filepath.Join(dir, protocolStateFile)
	// Every bit of the header and of every record but the last.
	for at := range lastStart {
		for bit := range 8 {
			data := slices.Clone(full)
			data[at] ^= 1 << bit
			r := &protoStore{chain: testChain(1), live: map[string][]byte{}, recordMax: protoRecordBytesMax}
			if _, err := r.replay(data); !errors.Is(err, errProtoCorrupt) {
				t.Fatalf("bit %d of byte %d (of %d before the last record) flipped: replay gave %v, want corruption", bit, at, lastStart, err)
			}
		}
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

// A compaction that cannot write its new file leaves the old one in use:
// the write that triggered it succeeds, later ones too, and a later
// compaction goes through once it can.
func TestProtoStoreKeepsWorkingWhenACompactionFails(t *testing.T) {
	dir := t.TempDir()
	s := openTestProto(t, dir)
	s.compactMin = 16 << 10
	path := filepath.Join(dir, protocolStateFile)
	// A directory where the rewrite's temporary file goes makes it fail.
	if err := os.MkdirAll(filepath.Join(path+".tmp", "block"), 0o700); err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{}
	rng := rand.New(rand.NewPCG(11, 12))
	randomRounds(t, s, model, rng, 400)
	if s.size < 2*s.compactMin || s.size < 2*protoCompactRatio*(s.liveBytes+protoFileHeader) {
		t.Fatalf("file of %d bytes with %d live: too small to show a failed compaction", s.size, s.liveBytes)
	}
	if s.compactAfter == 0 {
		t.Fatal("no compaction was tried")
	}
	grown := s.size
	if err := os.RemoveAll(path + ".tmp"); err != nil {
		t.Fatal(err)
	}
	randomRounds(t, s, model, rng, 400)
	if s.size >= grown || s.compactAfter != 0 {
		t.Fatalf("file of %d bytes (%d before), next compaction at %d: none went through", s.size, grown, s.compactAfter)
	}
	sameState(t, "after a failed compaction", snapshot(t, s), model)
	s.Close()
	s = openTestProto(t, dir)
	defer s.Close()
	sameState(t, "reopened after a failed compaction", snapshot(t, s), model)
}

// oldStore makes an older node's badger store in dir holding keys.
func oldStore(t *testing.T, dir string, keys map[string][]byte) {
	t.Helper()
	old, err := eventlog.Open(eventlog.Options{Dir: filepath.Join(dir, protocolStateDirOld), Genesis: testChain(1), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.PutMeta(keys, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
}

// A move that crashed before the old store was retired left the file and
// the old store, equal: the start finishes the move. Unequal, an older
// binary ran after the file was made, and the node refuses to pick one.
func TestProtoStoreFinishesOrRefusesAnInterruptedMove(t *testing.T) {
	want := map[string][]byte{metaView: {0, 0, 0, 0, 0, 0, 0, 5}, envKey(4): {4}}
	t.Run("equal", func(t *testing.T) {
		dir := t.TempDir()
		oldStore(t, dir, want)
		s := openTestProto(t, dir)
		s.Close()
		oldStore(t, dir, want)
		if err := os.MkdirAll(filepath.Join(dir, protocolStateDirOld+protoRetiredSuffix, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		s = openTestProto(t, dir)
		defer s.Close()
		sameState(t, "after finishing the move", snapshot(t, s), want)
		for _, gone := range []string{protocolStateDirOld, protocolStateDirOld + protoRetiredSuffix} {
			if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s is still there: %v", gone, err)
			}
		}
	})
	t.Run("unequal", func(t *testing.T) {
		dir := t.TempDir()
		oldStore(t, dir, want)
		s := openTestProto(t, dir)
		if err := s.PutMeta(map[string][]byte{envKey(5): {5}}, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
		oldStore(t, dir, want)
		if _, err := openProtoStore(dir, testChain(1), quietLog); err == nil || !strings.Contains(err.Error(), "differ") {
			t.Fatalf("opened with a file and an old store that differ: err %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, protocolStateDirOld)); err != nil {
			t.Fatalf("the refused start touched the old store: %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		// An old store the node cannot even stat is an error, not an
		// absence: the node must not start without the votes in it.
		dir := t.TempDir()
		loop := filepath.Join(dir, protocolStateDirOld)
		if err := os.Symlink(loop, loop); err != nil {
			t.Fatal(err)
		}
		if _, err := openProtoStore(dir, testChain(1), quietLog); err == nil {
			t.Fatal("opened beside an old store it could not stat")
		}
		if _, err := os.Lstat(loop); err != nil {
			t.Fatalf("the refused start removed the old store: %v", err)
		}
	})
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
		PutMeta(set map[string][]byte, del []string) error
		Close() error
	}
	stores := []struct {
		name string
		open func(dir string) (putter, error)
	}{
		{"file", func(dir string) (putter, error) { return openProtoStore(dir, testChain(1), quietLog) }},
		{"badger", func(dir string) (putter, error) {
			l, err := eventlog.Open(eventlog.Options{Dir: dir, Genesis: testChain(1), Logger: quietLog})
			return syncedBadger{l}, err
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
				if err := s.PutMeta(map[string][]byte{envKey(counter): v}, del); err != nil {
					b.Fatal(err)
				}
				counter++
			}
			cpu = processCPU(b) - cpu
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
		})
	}
}

// syncedBadger writes protocol state the way older nodes did: a badger
// commit, synced.
type syncedBadger struct{ *eventlog.Log }

func (b syncedBadger) PutMeta(set map[string][]byte, del []string) error {
	return b.Log.PutMeta(set, del, true)
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
