package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/node"
	"github.com/ordoledger/ordo/pbft"
)

// fakeNode is an httptest server that answers appends like an honest node of
// a 4-validator network whose keys it holds: with real signed reply bundles,
// so the real client verifies them. It counts what it saw.
type fakeNode struct {
	t       *testing.T
	srv     *httptest.Server
	keys    []crypto.PrivateKey
	genesis *node.Genesis
	// block makes every append wait until its request is cancelled.
	block bool
	// lagMs is what /v1/projections reports; nil answers 404.
	lagMs *float64
	// admitted is the one client key an allowlist network admits.
	admitted crypto.PrivateKey

	mu          sync.Mutex
	events      uint64
	seq         uint64
	ids         map[[16]byte]bool
	clients     map[crypto.PublicKey]bool
	inFlight    int
	inFlightMax int
}

// newFakeNode serves a network that admits every client, or, unless open,
// only the key fn.admitted.
func newFakeNode(t *testing.T, open bool) *fakeNode {
	t.Helper()
	fn := &fakeNode{t: t, ids: map[[16]byte]bool{}, clients: map[crypto.PublicKey]bool{}}
	g := &node.Genesis{ChainID: "bench-test", Params: node.DefaultParams(), Admission: node.Admission{Mode: node.AdmissionOpen}}
	if !open {
		k, err := crypto.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		fn.admitted = k
		g.Admission = node.Admission{Mode: node.AdmissionAllowlist, Clients: []crypto.PublicKey{k.Public()}}
	}
	for i := 0; i < 4; i++ {
		k, err := crypto.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		fn.keys = append(fn.keys, k)
		g.Validators = append(g.Validators, node.Validator{Name: fmt.Sprintf("node%d", i), PublicKey: k.Public(), P2PAddrs: []string{}})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	fn.genesis = g
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", fn.submit)
	mux.HandleFunc("GET /v1/status", fn.status)
	mux.HandleFunc("GET /v1/projections", fn.projections)
	fn.srv = httptest.NewServer(mux)
	t.Cleanup(fn.srv.Close)
	return fn
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	// The test reads the status; a failed write only loses the message.
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

func (fn *fakeNode) submit(w http.ResponseWriter, r *http.Request) {
	fn.mu.Lock()
	fn.inFlight++
	fn.inFlightMax = max(fn.inFlightMax, fn.inFlight)
	fn.mu.Unlock()
	defer func() {
		fn.mu.Lock()
		fn.inFlight--
		fn.mu.Unlock()
	}()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if fn.block {
		// The server notices a client hanging up only once the body is read.
		<-r.Context().Done()
		return
	}
	chain := fn.genesis.Hash()
	sr, req, err := pbft.DecodeRequest(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if !crypto.Verify(req.Client, pbft.KindRequest.String(), chain, sr.Body, sr.Sig) {
		writeErr(w, http.StatusUnauthorized, "bad_signature", "request signature does not verify")
		return
	}
	if !fn.genesis.Admits(req.Client) {
		writeErr(w, http.StatusForbidden, "not_admitted", "client is not admitted")
		return
	}
	cmd, err := codec.Canonical[ledger.Command](req.Command)
	if err != nil || cmd.Append == nil || len(cmd.Append.Events) != 1 {
		writeErr(w, http.StatusBadRequest, "malformed", fmt.Sprintf("command: %v", err))
		return
	}
	fn.mu.Lock()
	fn.seq++
	res := ledger.Result{EntrySeq: fn.seq, Code: ledger.CodeOK}
	if id := cmd.Append.Events[0].ID; !fn.ids[id] {
		fn.ids[id] = true
		fn.events++
	}
	fn.clients[req.Client] = true
	res.Positions = []uint64{fn.events}
	fn.mu.Unlock()
	res.RequestHash = crypto.Hash(body)
	leaf := codec.MustMarshal(&res)
	root := crypto.MerkleRoot([][]byte{leaf})
	var executed []string
	for i := 0; i <= pbft.MaxFaulty(len(fn.keys)); i++ {
		env := pbft.Seal(crypto.NewSigner(fn.keys[i], chain), pbft.KindExecuted,
			&pbft.Executed{Seq: res.EntrySeq, ResultsRoot: root, Replica: uint32(i)})
		executed = append(executed, base64.StdEncoding.EncodeToString(codec.MustMarshal(env)))
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"entry_seq": res.EntrySeq, "result_b64": base64.StdEncoding.EncodeToString(leaf),
		"result_index": 0, "result_count": 1, "proof": []string{}, "executed": executed,
	})
}

func (fn *fakeNode) status(w http.ResponseWriter, r *http.Request) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{
		"node": "node0", "index": 0, "committed_seq": fn.seq, "executed_seq": fn.seq,
		"last_position": fn.events, "peers_connected": 3,
	})
}

func (fn *fakeNode) projections(w http.ResponseWriter, r *http.Request) {
	if fn.lagMs == nil {
		writeErr(w, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"projections": []map[string]any{
		{"name": "streams", "lag_ms": 0}, {"name": "balances", "lag_ms": *fn.lagMs},
	}})
}

// counts returns the distinct events and client keys the node saw and the
// most requests it held at once.
func (fn *fakeNode) counts() (events uint64, clients int, inFlightMax int) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return fn.events, len(fn.clients), fn.inFlightMax
}

// submitters returns n clients of the fake network, each with its own key.
func (fn *fakeNode) submitters(n int) []Submitter {
	fn.t.Helper()
	out := make([]Submitter, n)
	for i := range out {
		k, err := crypto.GenerateKey(nil)
		if err != nil {
			fn.t.Fatal(err)
		}
		c, err := client.New(client.Config{
			Nodes: []string{fn.srv.URL}, Key: k, Chain: fn.genesis.Hash(), Validators: fn.genesis.Keys(),
		})
		if err != nil {
			fn.t.Fatal(err)
		}
		out[i] = c
	}
	return out
}
