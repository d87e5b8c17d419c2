package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/node"
	"github.com/ordoledger/ordo/pbft"
)

// fakeNode is an httptest server that behaves like one honest node of a
// network whose validator keys it holds: it executes appends in memory with
// the ledger's append semantics and answers with real signed reply bundles.
type fakeNode struct {
	t       *testing.T
	srv     *httptest.Server
	keys    []crypto.PrivateKey
	genesis *node.Genesis
	raw     []byte // genesis JSON as served

	mu      sync.Mutex
	grew    chan struct{} // closed and replaced whenever an event is added
	events  []fakeEvent   // position i+1
	streams map[string][]int
	ids     map[[16]byte]int
	seq     uint64
}

type fakeEvent struct {
	stream  string
	version uint64
	data    ledger.EventData
	seq     uint64
}

func newFakeNode(t *testing.T, g *node.Genesis, keys []crypto.PrivateKey) *fakeNode {
	t.Helper()
	raw, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	fn := &fakeNode{t: t, keys: keys, genesis: g, raw: raw, grew: make(chan struct{}),
		streams: map[string][]int{}, ids: map[[16]byte]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", fn.submit)
	mux.HandleFunc("GET /v1/status", fn.status)
	mux.HandleFunc("GET /v1/genesis", func(w http.ResponseWriter, r *http.Request) { w.Write(raw) })
	mux.HandleFunc("GET /v1/events", fn.readAll)
	mux.HandleFunc("GET /v1/streams/{stream}", fn.readStream)
	fn.srv = httptest.NewServer(mux)
	t.Cleanup(fn.srv.Close)
	return fn
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

func (fn *fakeNode) submit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	chain := fn.genesis.Hash()
	sr, req, err := pbft.DecodeRequest(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if !crypto.Verify(req.Client, pbft.KindRequest.String(), chain, sr.Body, sr.Sig) {
		writeErr(w, http.StatusUnauthorized, "bad_signature", "request signature does not verify for this chain")
		return
	}
	if !fn.genesis.Admits(req.Client) {
		writeErr(w, http.StatusForbidden, "not_admitted", "client is not admitted")
		return
	}
	cmd, err := codec.Canonical[ledger.Command](req.Command)
	if err != nil || cmd.Append == nil {
		writeErr(w, http.StatusBadRequest, "malformed", fmt.Sprintf("command: %v", err))
		return
	}
	res := fn.execute(cmd.Append)
	res.RequestHash = crypto.Hash(body)
	leaf := codec.MustMarshal(&res)
	root := crypto.MerkleRoot([][]byte{leaf})
	executed := []string{}
	for i := 0; i <= pbft.MaxFaulty(len(fn.keys)); i++ {
		env := pbft.Seal(crypto.NewSigner(fn.keys[i], chain), pbft.KindExecuted,
			&pbft.Executed{Seq: res.EntrySeq, ResultsRoot: root, Replica: uint32(i)})
		executed = append(executed, base64.StdEncoding.EncodeToString(codec.MustMarshal(env)))
	}
	json.NewEncoder(w).Encode(map[string]any{
		"entry_seq": res.EntrySeq, "result_b64": base64.StdEncoding.EncodeToString(leaf),
		"result_index": 0, "result_count": 1, "proof": []string{}, "executed": executed,
	})
}

// execute applies an append as the ledger does: idempotent ids first, then
// the expected version.
func (fn *fakeNode) execute(cmd *ledger.AppendCommand) ledger.Result {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	fn.seq++
	res := ledger.Result{EntrySeq: fn.seq}
	idx := fn.streams[cmd.Stream]
	cur := int64(len(idx)) - 1
	res.StreamVersion = cur
	if i, ok := fn.ids[cmd.Events[0].ID]; ok {
		res.Code = ledger.CodeOK
		res.Positions = []uint64{uint64(i + 1)}
		res.StreamVersion = int64(fn.events[i].version)
		return res
	}
	wrong := false
	switch v := cmd.ExpectedVersion; {
	case v == ledger.ExpectedNoStream:
		wrong = cur >= 0
	case v == ledger.ExpectedExists:
		wrong = cur < 0
	case v >= 0:
		wrong = v != cur
	}
	if wrong {
		res.Code = ledger.CodeWrongExpectedVersion
		res.Message = fmt.Sprintf("stream %q is at version %d", cmd.Stream, cur)
		return res
	}
	for _, ev := range cmd.Events {
		cur++
		fn.ids[ev.ID] = len(fn.events)
		fn.streams[cmd.Stream] = append(fn.streams[cmd.Stream], len(fn.events))
		fn.events = append(fn.events, fakeEvent{stream: cmd.Stream, version: uint64(cur), data: ev, seq: fn.seq})
		res.Positions = append(res.Positions, uint64(len(fn.events)))
	}
	res.Code = ledger.CodeOK
	res.StreamVersion = cur
	close(fn.grew)
	fn.grew = make(chan struct{})
	return res
}

func (fn *fakeNode) status(w http.ResponseWriter, r *http.Request) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{
		"node": "node0", "index": 0, "committed_seq": fn.seq, "executed_seq": fn.seq, "view": 0,
		"last_position": len(fn.events), "genesis_hash": fn.genesis.Hash().String(), "peers_connected": 3,
	})
}

func (fn *fakeNode) eventJSON(i int) map[string]any {
	e := fn.events[i]
	return map[string]any{
		"position": i + 1, "stream": e.stream, "version": e.version, "id": uuid.UUID(e.data.ID).String(),
		"type": e.data.Type, "data": json.RawMessage(e.data.Data), "entry_seq": e.seq,
		"timestamp": time.Unix(0, int64(e.seq)).UTC().Format(time.RFC3339Nano),
	}
}

func query(r *http.Request, name string, def uint64) uint64 {
	v, err := strconv.ParseUint(r.URL.Query().Get(name), 10, 64)
	if err != nil {
		return def
	}
	return v
}

func (fn *fakeNode) readAll(w http.ResponseWriter, r *http.Request) {
	from := max(query(r, "from", 1), 1)
	limit := int(query(r, "limit", 100))
	if wait := query(r, "wait_ms", 0); wait > 0 {
		fn.mu.Lock()
		grew, have := fn.grew, uint64(len(fn.events)) >= from
		fn.mu.Unlock()
		if !have {
			select {
			case <-grew:
			case <-time.After(time.Duration(wait) * time.Millisecond):
			case <-r.Context().Done():
			}
		}
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	page := []map[string]any{}
	for i := int(from) - 1; i < len(fn.events) && len(page) < limit; i++ {
		page = append(page, fn.eventJSON(i))
	}
	json.NewEncoder(w).Encode(map[string]any{"events": page, "next": int(from) + len(page)})
}

func (fn *fakeNode) readStream(w http.ResponseWriter, r *http.Request) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	idx, ok := fn.streams[r.PathValue("stream")]
	if !ok {
		writeErr(w, http.StatusNotFound, "stream_not_found", fmt.Sprintf("stream %q has no events", r.PathValue("stream")))
		return
	}
	backwards := r.URL.Query().Get("backwards") == "true"
	limit := int(query(r, "limit", 100))
	page := []map[string]any{}
	if backwards {
		from := query(r, "from", ^uint64(0))
		for v := min(from, uint64(len(idx))-1); v < uint64(len(idx)) && len(page) < limit; v-- {
			page = append(page, fn.eventJSON(idx[v]))
		}
	} else {
		for v := query(r, "from", 0); v < uint64(len(idx)) && len(page) < limit; v++ {
			page = append(page, fn.eventJSON(idx[v]))
		}
	}
	json.NewEncoder(w).Encode(map[string]any{"events": page, "next": 0})
}
