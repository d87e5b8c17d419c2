package ledger

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

var testGenesis = crypto.Hash([]byte("ledger test genesis"))

// tb is what the harness needs of *testing.T, *testing.F and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

type harness struct {
	t   tb
	log *eventlog.Log
	m   *Machine
	// inspect, if set, runs inside each batch's transaction after Execute.
	inspect func(tx *eventlog.Tx)
}

func newHarness(t tb, cfg Config) *harness {
	t.Helper()
	return openHarness(t, cfg, eventlog.Options{InMemory: true})
}

// newDiskHarness keeps its log on disk, for entries over 1 MiB.
func newDiskHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return openHarness(t, cfg, eventlog.Options{Dir: t.TempDir()})
}

func openHarness(t tb, cfg Config, opts eventlog.Options) *harness {
	t.Helper()
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, log: openTestLog(t, opts), m: m}
}

// openTestLog opens a log for the test genesis, closed when the test ends.
func openTestLog(t tb, opts eventlog.Options) *eventlog.Log {
	t.Helper()
	opts.Genesis, opts.Logger = testGenesis, slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := eventlog.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// runRaw executes one batch at log time seq seconds and returns the encoded results.
func (h *harness) runRaw(reqs ...Request) [][]byte {
	h.t.Helper()
	seq, _ := h.log.Applied()
	return h.runRawAt(int64(seq+1)*1e9, reqs...)
}

// runRawAt executes one batch at log time ts.
func (h *harness) runRawAt(ts int64, reqs ...Request) [][]byte {
	h.t.Helper()
	seq, _ := h.log.Applied()
	raw := make([][]byte, len(reqs))
	for i := range reqs {
		raw[i] = reqs[i].Hash[:]
	}
	e, err := h.log.Apply(eventlog.EntryHeader{Seq: seq + 1, Timestamp: ts, Requests: raw},
		func(tx *eventlog.Tx) ([][]byte, error) {
			results, err := h.m.Execute(tx, reqs)
			if err == nil && h.inspect != nil {
				h.inspect(tx)
			}
			return results, err
		})
	if err != nil {
		h.t.Fatal(err)
	}
	return e.Results
}

func (h *harness) run(reqs ...Request) []Result {
	h.t.Helper()
	return decodeResults(h.t, h.runRaw(reqs...))
}

// runAt executes one batch at log time ts and decodes the results.
func (h *harness) runAt(ts int64, reqs ...Request) []Result {
	h.t.Helper()
	return decodeResults(h.t, h.runRawAt(ts, reqs...))
}

func decodeResults(t tb, raw [][]byte) []Result {
	t.Helper()
	out := make([]Result, len(raw))
	for i, b := range raw {
		if err := codec.Unmarshal(b, &out[i]); err != nil {
			t.Fatalf("result %d does not decode: %v", i, err)
		}
	}
	return out
}

func (h *harness) one(req Request) Result {
	h.t.Helper()
	return h.run(req)[0]
}

func client(n byte) crypto.PublicKey {
	var k crypto.PublicKey
	k[0] = n
	return k
}

// req builds a request of client c with seq s for cmd.
func req(c byte, s uint64, cmd []byte) Request {
	return Request{Client: client(c), ClientSeq: s, Hash: crypto.Hash([]byte{c}, []byte(fmt.Sprint(s)), cmd), Command: cmd}
}

func evID(n int) [16]byte {
	var id [16]byte
	id[0] = 0x10
	id[14] = byte(n >> 8)
	id[15] = byte(n)
	return id
}

func ev(n int) EventData {
	return EventData{ID: evID(n), Type: "created", ContentType: ContentJSON, Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

func appendCmd(stream string, expected int64, evs ...EventData) []byte {
	return codec.MustMarshal(&Command{Append: &AppendCommand{Stream: stream, ExpectedVersion: expected, Events: evs}})
}

func wantResult(t tb, what string, r Result, code string, positions string, version int64) {
	t.Helper()
	if r.Code != code || fmt.Sprint(r.Positions) != positions || r.StreamVersion != version {
		t.Fatalf("%s: got %s %v version %d (%q), want %s %s version %d", what, r.Code, r.Positions, r.StreamVersion, r.Message, code, positions, version)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("a zero Config validated")
	}
	if got := (Config{EventBytesMax: 5, OpsPerBatchMax: 7}).WithDefaults(); got != (Config{ClientWindow: 4096, EventsPerAppendMax: 1000, EventBytesMax: 5,
		OpsPerCommandMax: 256, OpsPerBatchMax: 7, ExpiriesPerBatchMax: 1024}) {
		t.Errorf("WithDefaults = %+v", got)
	}
	if _, err := NewMachine(Config{}); err != nil {
		t.Errorf("NewMachine of the zero Config: %v", err)
	}
	ok := func(change func(*Config)) Config {
		c := DefaultConfig()
		change(&c)
		return c
	}
	for _, c := range []Config{
		ok(func(c *Config) { c.ClientWindow = -1 }),
		ok(func(c *Config) { c.EventsPerAppendMax = -1 }),
		ok(func(c *Config) { c.EventBytesMax = -1 }),
		ok(func(c *Config) { c.ClientWindow = clientWindowLimit + 1 }),
		ok(func(c *Config) { c.EventsPerAppendMax = eventsPerAppendLimit + 1 }),
		ok(func(c *Config) { c.EventBytesMax = eventBytesLimit + 1 }),
		ok(func(c *Config) { c.OpsPerCommandMax = -1 }),
		ok(func(c *Config) { c.OpsPerBatchMax = -1 }),
		ok(func(c *Config) { c.ExpiriesPerBatchMax = -1 }),
		ok(func(c *Config) { c.OpsPerBatchMax = opsPerBatchLimit + 1 }),
		ok(func(c *Config) { c.ExpiriesPerBatchMax = expiriesPerBatchLimit + 1 }),
		ok(func(c *Config) { c.OpsPerCommandMax, c.OpsPerBatchMax = 10, 9 }),
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := NewMachine(c); err == nil {
			t.Errorf("NewMachine(%+v) accepted", c)
		}
	}
}

func TestBadCommands(t *testing.T) {
	cfg := Config{ClientWindow: 100, EventsPerAppendMax: 3, EventBytesMax: 16}
	long := strings.Repeat("x", NameBytesMax+1)
	dup := ev(1)
	cases := map[string][]byte{
		"not cbor":          {0xff, 0x00},
		"empty":             nil,
		"no operation":      codec.MustMarshal(&Command{}),
		"unknown field":     {0xa1, 0x09, 0x01},
		"trailing bytes":    append(appendCmd("s", ExpectedAny, ev(1)), 0),
		"empty stream":      appendCmd("", ExpectedAny, ev(1)),
		"stream too long":   appendCmd(long, ExpectedAny, ev(1)),
		"stream bad char":   appendCmd("a/b", ExpectedAny, ev(1)),
		"stream space":      appendCmd("a b", ExpectedAny, ev(1)),
		"stream zero byte":  appendCmd("a\x00", ExpectedAny, ev(1)),
		"expected -4":       appendCmd("s", -4, ev(1)),
		"no events":         appendCmd("s", ExpectedAny),
		"too many events":   appendCmd("s", ExpectedAny, ev(1), ev(2), ev(3), ev(4)),
		"nil id":            appendCmd("s", ExpectedAny, EventData{Type: "t"}),
		"duplicate ids":     appendCmd("s", ExpectedAny, ev(1), dup),
		"empty type":        appendCmd("s", ExpectedAny, EventData{ID: evID(1)}),
		"type too long":     appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: strings.Repeat("t", EventTypeBytesMax+1)}),
		"data too big":      appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: "t", Data: make([]byte, 10), Metadata: make([]byte, 7)}),
		"invalid json":      appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: "t", ContentType: ContentJSON, Data: []byte(`{"a":`)}),
		"empty json":        appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: "t", ContentType: ContentJSON}),
		"unknown content":   appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: "t", ContentType: "text/plain"}),
		"invalid utf8 type": appendCmd("s", ExpectedAny, EventData{ID: evID(1), Type: "\xff"}),
		"account stream":    appendCmd("account-a", ExpectedAny, ev(1)),
		"transfer stream":   appendCmd("transfer-t", ExpectedAny, ev(1)),
		"ledger event id":   appendCmd("s", ExpectedAny, EventData{ID: ledgerEventID(7), Type: "t"}),
		"two operations":    codec.MustMarshal(&Command{Append: &AppendCommand{Stream: "s", Events: []EventData{ev(1)}}, VoidPending: &VoidPendingCommand{ID: "v", PendingID: "p"}}),
	}
	h := newHarness(t, cfg)
	seq := uint64(0)
	for name, cmd := range cases {
		seq++
		r := h.one(req(1, seq, cmd))
		if r.Code != CodeBadCommand || r.Message == "" || len(r.Positions) != 0 {
			t.Errorf("%s: %s %q %v, want bad_command with a message", name, r.Code, r.Message, r.Positions)
		}
	}
	if h.log.LastPosition() != 0 {
		t.Fatalf("bad commands wrote %d events", h.log.LastPosition())
	}
	// The edges that are allowed.
	ok := appendCmd(strings.Repeat("A", NameBytesMax-6)+"._:@-9", ExpectedAny,
		EventData{ID: evID(1), Type: strings.Repeat("t", EventTypeBytesMax), Data: make([]byte, 8), Metadata: make([]byte, 8)},
		EventData{ID: evID(2), Type: "t", ContentType: ContentJSON, Data: []byte(` [1, "x"] `)},
		EventData{ID: evID(3), Type: "t"})
	wantResult(t, "edge append", h.one(req(1, 1000, ok)), CodeOK, "[1 2 3]", 2)
}

func TestExpectedVersion(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	steps := []struct {
		name      string
		stream    string
		expected  int64
		ids       []int
		code      string
		positions string
		version   int64
	}{
		{"exists on a new stream", "s", ExpectedExists, []int{1}, CodeWrongExpectedVersion, "[]", -1},
		{"version 0 on a new stream", "s", 0, []int{1}, CodeWrongExpectedVersion, "[]", -1},
		{"no_stream on a new stream", "s", ExpectedNoStream, []int{1, 2}, CodeOK, "[1 2]", 1},
		{"no_stream on an existing stream", "s", ExpectedNoStream, []int{3}, CodeWrongExpectedVersion, "[]", 1},
		{"stale version", "s", 0, []int{3}, CodeWrongExpectedVersion, "[]", 1},
		{"future version", "s", 5, []int{3}, CodeWrongExpectedVersion, "[]", 1},
		{"exact version", "s", 1, []int{3}, CodeOK, "[3]", 2},
		{"exists", "s", ExpectedExists, []int{4}, CodeOK, "[4]", 3},
		{"any on an existing stream", "s", ExpectedAny, []int{5, 6}, CodeOK, "[5 6]", 5},
		{"any on a new stream", "t", ExpectedAny, []int{7}, CodeOK, "[7]", 0},
		{"exact version of the other stream", "t", 0, []int{8}, CodeOK, "[8]", 1},
	}
	for i, s := range steps {
		evs := make([]EventData, len(s.ids))
		for j, n := range s.ids {
			evs[j] = ev(n)
		}
		r := h.one(req(1, uint64(i+1), appendCmd(s.stream, s.expected, evs...)))
		wantResult(t, s.name, r, s.code, s.positions, s.version)
		if r.EntrySeq != uint64(i+1) {
			t.Fatalf("%s: entry seq %d, want %d", s.name, r.EntrySeq, i+1)
		}
	}
	evs, _, err := h.log.ReadStream("s", 0, 100, false)
	if err != nil || len(evs) != 6 {
		t.Fatalf("stream s has %d events (%v), want 6", len(evs), err)
	}
	for i, e := range evs {
		if e.Version != uint64(i) || e.ID != evID(i+1) || e.Type != "created" || e.ContentType != ContentJSON || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
}

func TestIdempotentRetry(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	first := h.one(req(1, 1, appendCmd("s", ExpectedNoStream, ev(1), ev(2))))
	wantResult(t, "first append", first, CodeOK, "[1 2]", 1)
	h.one(req(1, 2, appendCmd("s", ExpectedAny, ev(3))))
	_, headBefore := h.log.Applied()
	_, stateBefore := h.log.StateDigest()

	// A retry under a new client seq, with an expected version that no longer
	// holds, gets the original positions and writes nothing.
	retry := h.one(req(1, 3, appendCmd("s", ExpectedNoStream, ev(1), ev(2))))
	wantResult(t, "retry", retry, CodeOK, "[1 2]", 1)
	if h.log.LastPosition() != 3 {
		t.Fatalf("retry wrote events: last position %d", h.log.LastPosition())
	}
	// Order of the ids in the retry does not matter; positions follow it.
	wantResult(t, "reordered retry", h.one(req(1, 4, appendCmd("s", ExpectedAny, ev(2), ev(1)))), CodeOK, "[2 1]", 1)
	// Another client retrying gets the same answer.
	wantResult(t, "retry by another client", h.one(req(2, 1, appendCmd("s", ExpectedAny, ev(3)))), CodeOK, "[3]", 2)

	other := ev(1)
	other.Data = []byte(`{"n":"other"}`)
	meta := ev(1)
	meta.Metadata = []byte("m")
	typ := ev(1)
	typ.Type = "other"
	ct := ev(1)
	ct.ContentType = ContentBytes
	seq := uint64(0)
	for name, cmd := range map[string][]byte{
		"other data":       appendCmd("s", ExpectedAny, other),
		"other metadata":   appendCmd("s", ExpectedAny, meta),
		"other type":       appendCmd("s", ExpectedAny, typ),
		"other content":    appendCmd("s", ExpectedAny, ct),
		"other stream":     appendCmd("t", ExpectedAny, ev(1)),
		"partial overlap":  appendCmd("s", ExpectedAny, ev(1), ev(9)),
		"overlap and diff": appendCmd("s", ExpectedAny, ev(9), other),
	} {
		seq++
		r := h.one(req(3, seq, cmd))
		wantVersion := int64(2)
		if name == "other stream" {
			wantVersion = -1
		}
		wantResult(t, name, r, CodeIDReused, "[]", wantVersion)
		if r.Message == "" {
			t.Errorf("%s: no message", name)
		}
	}
	if h.log.LastPosition() != 3 {
		t.Fatalf("refused appends wrote events: last position %d", h.log.LastPosition())
	}
	if _, head := h.log.Applied(); head == headBefore {
		t.Fatal("head hash did not move over new entries")
	}
	if _, state := h.log.StateDigest(); state == stateBefore {
		t.Fatal("state digest did not record the new requests")
	}
}

func TestClientSeqDedup(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	orig := h.runRaw(req(1, 7, appendCmd("s", ExpectedAny, ev(1))))[0]
	var r Result
	if err := codec.Unmarshal(orig, &r); err != nil {
		t.Fatal(err)
	}
	wantResult(t, "original", r, CodeOK, "[1]", 0)
	if r.EntrySeq != 1 {
		t.Fatalf("entry seq %d", r.EntrySeq)
	}

	// The same (client, seq), even with another command, gets the stored
	// result back byte for byte and changes nothing.
	again := h.runRaw(req(1, 7, appendCmd("s", ExpectedAny, ev(2))))[0]
	if !bytes.Equal(again, orig) {
		t.Fatalf("retry result %x, want the stored %x", again, orig)
	}
	if h.log.LastPosition() != 1 {
		t.Fatal("a duplicate request executed")
	}
	// Bad commands are remembered too.
	bad := h.runRaw(req(1, 8, []byte{0xff}))[0]
	if again := h.runRaw(req(1, 8, appendCmd("s", ExpectedAny, ev(2))))[0]; !bytes.Equal(again, bad) {
		t.Fatal("a retried bad command executed again")
	}
	// Twice in one batch: the second is the first's result.
	rs := h.runRaw(req(2, 1, appendCmd("s", ExpectedAny, ev(3))), req(2, 1, appendCmd("s", ExpectedAny, ev(4))))
	if !bytes.Equal(rs[0], rs[1]) || h.log.LastPosition() != 2 {
		t.Fatalf("duplicate within a batch: %x vs %x, last position %d", rs[0], rs[1], h.log.LastPosition())
	}
	// Another client's seq 7 is its own.
	wantResult(t, "other client", h.one(req(3, 7, appendCmd("s", ExpectedAny, ev(5)))), CodeOK, "[3]", 2)
	// Result fields.
	rq := req(4, 1, appendCmd("s", ExpectedAny, ev(6)))
	r = h.one(rq)
	if applied, _ := h.log.Applied(); r.RequestHash != rq.Hash || r.EntrySeq != applied {
		t.Fatalf("result binds hash %v entry %d, want %v entry %d", r.RequestHash, r.EntrySeq, rq.Hash, applied)
	}
}

func TestClientWindow(t *testing.T) {
	h := newHarness(t, Config{ClientWindow: 3, EventsPerAppendMax: 10, EventBytesMax: 1 << 10})
	n := 0
	do := func(seq uint64) Result {
		n++
		return h.one(req(1, seq, appendCmd("s", ExpectedAny, ev(n))))
	}
	for _, s := range []uint64{20, 10, 30} {
		if r := do(s); r.Code != CodeOK {
			t.Fatalf("seq %d: %s %s", s, r.Code, r.Message)
		}
	}
	// Full with {10, 20, 30}: below the lowest is too old.
	if r := do(5); r.Code != CodeSeqTooOld || r.Message == "" || r.EntrySeq == 0 {
		t.Fatalf("seq 5: %s, want %s", r.Code, CodeSeqTooOld)
	}
	// A gap above the lowest is fine and evicts the lowest.
	if r := do(25); r.Code != CodeOK {
		t.Fatalf("seq 25: %s", r.Code)
	}
	if r := do(10); r.Code != CodeSeqTooOld {
		t.Fatalf("evicted seq 10: %s, want %s", r.Code, CodeSeqTooOld)
	}
	// Retained seqs still give their stored result.
	if r := do(20); r.Code != CodeOK || fmt.Sprint(r.Positions) != "[1]" {
		t.Fatalf("retained seq 20: %s %v, want the original [1]", r.Code, r.Positions)
	}
	if r := do(1000); r.Code != CodeOK {
		t.Fatalf("seq 1000: %s", r.Code)
	}
	if r := do(20); r.Code != CodeSeqTooOld {
		t.Fatalf("evicted seq 20: %s", r.Code)
	}
	// {25, 30, 1000}: 26 is not retained but above the lowest, so it runs.
	if r := do(26); r.Code != CodeOK {
		t.Fatalf("seq 26: %s", r.Code)
	}
	if r := do(25); r.Code != CodeSeqTooOld {
		t.Fatalf("evicted seq 25: %s", r.Code)
	}
	// Another client is not affected.
	if r := h.one(req(2, 1, appendCmd("s", ExpectedAny, ev(1000)))); r.Code != CodeOK {
		t.Fatalf("client 2 seq 1: %s", r.Code)
	}
}

func TestClientWindowIncreasingSeqs(t *testing.T) {
	const window = 2*lowSeqsMax + 5
	h := newHarness(t, Config{ClientWindow: window, EventsPerAppendMax: 10, EventBytesMax: 1 << 10})
	// Wall-clock-like seqs, a batch at a time, past several refills of the
	// low-seq cache.
	const total = 200 // a multiple of the batch size, over five windows
	for b := 0; b < total/10; b++ {
		reqs := make([]Request, 10)
		for i := range reqs {
			s := uint64(1_000_000 + 10*(b*10+i))
			reqs[i] = req(1, s, appendCmd("s", ExpectedAny, ev(b*10+i)))
		}
		for i, r := range h.run(reqs...) {
			if r.Code != CodeOK {
				t.Fatalf("request %d: %s %s", b*10+i, r.Code, r.Message)
			}
		}
	}
	for k := 0; k < total; k++ {
		s := uint64(1_000_000 + 10*k)
		r := h.one(req(1, s, appendCmd("s", ExpectedAny, ev(total+k))))
		if k < total-window {
			if r.Code != CodeSeqTooOld {
				t.Fatalf("seq of request %d: %s, want %s", k, r.Code, CodeSeqTooOld)
			}
		} else if r.Code != CodeOK || fmt.Sprint(r.Positions) != fmt.Sprintf("[%d]", k+1) {
			t.Fatalf("retained seq of request %d: %s %v, want its original position %d", k, r.Code, r.Positions, k+1)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "account-1": true, "A.b_c:d@e-9": true, strings.Repeat("z", NameBytesMax): true,
		"": false, strings.Repeat("z", NameBytesMax+1): false, "a b": false, "a/b": false, "é": false, "a\n": false,
	} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
}

func TestFindResult(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.one(req(1, 1, appendCmd("s", ExpectedAny, ev(1), ev(2))))
	// Entry 2: a retry of entry 1's append (positions 1, 2), a bad command,
	// then two appends that produce positions 3 and 4, 5.
	h.run(
		req(1, 2, appendCmd("s", ExpectedAny, ev(1), ev(2))),
		req(1, 3, []byte{0xff}),
		req(2, 1, appendCmd("t", ExpectedAny, ev(3))),
		req(3, 1, appendCmd("s", ExpectedAny, ev(4), ev(5))),
	)
	e, err := h.log.Entry(2)
	if err != nil {
		t.Fatal(err)
	}
	for pos, want := range map[uint64]int{3: 2, 4: 3, 5: 3} {
		i, r, err := FindResult(e, pos)
		if err != nil || i != want || !slices.Contains(r.Positions, pos) {
			t.Fatalf("position %d: index %d (%v), want %d", pos, i, err, want)
		}
		proof, err := crypto.InclusionProof(e.Results, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := crypto.VerifyInclusion(e.Results[i], uint64(i), uint64(len(e.Results)), proof, e.ResultsRoot); err != nil {
			t.Fatalf("position %d: result proof: %v", pos, err)
		}
	}
	for _, pos := range []uint64{1, 2, 6} {
		if _, _, err := FindResult(e, pos); err == nil {
			t.Fatalf("position %d found in entry 2", pos)
		}
	}
}
