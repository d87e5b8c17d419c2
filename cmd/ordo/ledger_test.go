package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/node"
	"github.com/ordoledger/ordo/pbft"
)

// ledgerNode is an httptest server that behaves like one honest node: it
// executes each request as a batch of its own with the real ledger.Machine
// on an in-memory log, at a log time the test moves, and answers with real
// signed reply bundles.
type ledgerNode struct {
	t       *testing.T
	srv     *httptest.Server
	keys    []crypto.PrivateKey
	genesis *node.Genesis
	log     *eventlog.Log
	machine *ledger.Machine

	mu  sync.Mutex
	now int64 // log time of the next batch, Unix ns
}

func newLedgerNode(t *testing.T, c *cluster) *ledgerNode {
	t.Helper()
	g, err := node.LoadGenesis(c.genesis)
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(eventlog.Options{InMemory: true, Genesis: g.Hash(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	m, err := ledger.NewMachine(ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln := &ledgerNode{t: t, keys: c.keys, genesis: g, log: l, machine: m, now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", ln.submit)
	ln.srv = httptest.NewServer(mux)
	t.Cleanup(ln.srv.Close)
	return ln
}

// advance moves the log time of the next batch.
func (ln *ledgerNode) advance(d time.Duration) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	ln.now += int64(d)
}

func (ln *ledgerNode) submit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	chain := ln.genesis.Hash()
	sr, req, err := pbft.DecodeRequest(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if !crypto.Verify(req.Client, pbft.KindRequest.String(), chain, sr.Body, sr.Sig) {
		writeErr(w, http.StatusUnauthorized, "bad_signature", "request signature does not verify for this chain")
		return
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	ln.now += int64(time.Millisecond)
	seq, _ := ln.log.Applied()
	reqs := []ledger.Request{{Client: req.Client, ClientSeq: req.Seq, Hash: crypto.Hash(body), Command: req.Command}}
	e, err := ln.log.Apply(eventlog.EntryHeader{Seq: seq + 1, Timestamp: ln.now, Requests: [][]byte{body}},
		func(tx *eventlog.Tx) ([][]byte, error) { return ln.machine.Execute(tx, reqs) })
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	executed := [][]byte{}
	for i := 0; i <= pbft.MaxFaulty(len(ln.keys)); i++ {
		env := pbft.Seal(crypto.NewSigner(ln.keys[i], chain), pbft.KindExecuted,
			&pbft.Executed{Seq: e.Seq, ResultsRoot: e.ResultsRoot, EntryHash: e.Hash, Replica: uint32(i)})
		executed = append(executed, codec.MustMarshal(env))
	}
	json.NewEncoder(w).Encode(map[string]any{
		"entry_seq": e.Seq, "result_b64": e.Results[0], "result_index": 0, "result_count": 1,
		"proof": []string{}, "executed": executed,
	})
}

// ledgerApp is the CLI with the ledger commands, whether or not main.go
// registers them yet, run as run runs it.
func ledgerApp(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb syncBuffer
	app := newApp(&out, &errb)
	for _, cmd := range []func() *cli.Command{accountCommand, transferCommand} {
		if c := cmd(); app.Command(c.Name) == nil {
			setUsageErrors(c)
			app.Commands = append(app.Commands, c)
		}
	}
	code := 0
	if err := app.RunContext(context.Background(), append([]string{"ordo"}, args...)); err != nil {
		fmt.Fprintf(&errb, "ordo: %s\n", oneLine(err))
		code = 1
	}
	return out.String(), errb.String(), code
}

type ledgerOut struct {
	Result   string `json:"result"`
	Position uint64 `json:"position"`
	EntrySeq uint64 `json:"entry_seq"`
	Replies  int    `json:"replies"`
}

// ledgerSession runs ledger commands against a ledgerNode with one client key.
type ledgerSession struct {
	t    *testing.T
	c    *cluster
	node *ledgerNode
	key  string
}

func newLedgerSession(t *testing.T) *ledgerSession {
	c := newCluster(t)
	return &ledgerSession{t: t, c: c, node: newLedgerNode(t, c), key: c.clientKey}
}

func (s *ledgerSession) args(cmd []string, extra ...string) []string {
	out := append([]string{}, cmd...)
	return append(append(out, "--node", s.node.srv.URL, "--key", s.key, "--genesis", s.c.genesis), extra...)
}

// ok runs a command that must succeed with result code.
func (s *ledgerSession) ok(code string, cmd []string, extra ...string) ledgerOut {
	s.t.Helper()
	out, errs, exit := ledgerApp(s.t, s.args(cmd, extra...)...)
	if exit != 0 || errs != "" {
		s.t.Fatalf("ordo %s: exit %d, stderr %q", strings.Join(s.args(cmd, extra...), " "), exit, errs)
	}
	o := decode[ledgerOut](s.t, out)
	if o.Result != code || o.EntrySeq == 0 || o.Replies < 2 || (o.Position == 0) != (code != ledger.CodeOK && code != ledger.CodeExists) {
		s.t.Fatalf("ordo %s: %+v, want result %s", strings.Join(cmd, " "), o, code)
	}
	return o
}

// fail runs a command that the ledger must refuse with code: exit 1, the
// result on stdout, one "ordo: code: message" line on stderr.
func (s *ledgerSession) fail(code string, cmd []string, extra ...string) {
	s.t.Helper()
	out, errs, exit := ledgerApp(s.t, s.args(cmd, extra...)...)
	o := decode[ledgerOut](s.t, out)
	if exit != 1 || o.Result != code || o.Position != 0 || o.EntrySeq == 0 {
		s.t.Fatalf("ordo %s: exit %d, %+v, want exit 1 with %s", strings.Join(cmd, " "), exit, o, code)
	}
	if lines := strings.Split(strings.TrimRight(errs, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ordo: "+code+": ") || len(lines[0]) <= len("ordo: "+code+": ") {
		s.t.Fatalf("ordo %s: stderr %q, want one line 'ordo: %s: <message>'", strings.Join(cmd, " "), errs, code)
	}
}

// usage runs a command the CLI itself must refuse before sending anything.
func (s *ledgerSession) usage(want string, args ...string) {
	s.t.Helper()
	seq, _ := s.node.log.Applied()
	out, errs, exit := ledgerApp(s.t, args...)
	lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
	if exit != 1 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "ordo: ") || !strings.Contains(lines[0], want) {
		s.t.Fatalf("ordo %s: exit %d, stdout %q, stderr %q, want one line with %q", strings.Join(args, " "), exit, out, errs, want)
	}
	if after, _ := s.node.log.Applied(); after != seq {
		s.t.Fatalf("ordo %s: a refused command reached the node", strings.Join(args, " "))
	}
}

var (
	accountCreate = []string{"account", "create"}
	transfer      = []string{"transfer"}
	transferPost  = []string{"transfer", "post"}
	transferVoid  = []string{"transfer", "void"}
)

func TestLedgerCommands(t *testing.T) {
	s := newLedgerSession(t)
	s.ok(ledger.CodeOK, accountCreate, "--id", "bank", "--code", "978")
	alice := s.ok(ledger.CodeOK, accountCreate, "--id", "alice", "--code", "978", "--flags", "debits_must_not_exceed_credits")
	s.ok(ledger.CodeOK, accountCreate, "--id", "bob", "--code", "978", "--flags", " debits_must_not_exceed_credits ,")
	if again := s.ok(ledger.CodeExists, accountCreate, "--id", "alice", "--code", "978", "--flags", "debits_must_not_exceed_credits"); again.Position != alice.Position {
		t.Fatalf("retried account create at position %d, the original is at %d", again.Position, alice.Position)
	}
	s.fail(ledger.CodeExistsWithDifferentFields, accountCreate, "--id", "alice", "--code", "840")
	s.fail(ledger.CodeBadCommand, accountCreate, "--id", "no/slashes", "--code", "978")

	fund := s.ok(ledger.CodeOK, transfer, "--id", "t1", "--from", "bank", "--to", "alice", "--amount", "100", "--code", "978")
	if again := s.ok(ledger.CodeExists, transfer, "--id", "t1", "--from", "bank", "--to", "alice", "--amount", "100", "--code", "978"); again.Position != fund.Position {
		t.Fatalf("retried transfer at position %d, the original is at %d", again.Position, fund.Position)
	}
	s.fail(ledger.CodeExistsWithDifferentFields, transfer, "--id", "t1", "--from", "bank", "--to", "alice", "--amount", "101", "--code", "978")
	s.fail(ledger.CodeExceedsCredits, transfer, "--id", "t2", "--from", "alice", "--to", "bob", "--amount", "101", "--code", "978")
	s.fail(ledger.CodeCodeMismatch, transfer, "--id", "t2", "--from", "alice", "--to", "bob", "--amount", "1", "--code", "840")
	s.fail(ledger.CodeAccountNotFound, transfer, "--id", "t2", "--from", "alice", "--to", "carol", "--amount", "1", "--code", "978")
	s.fail(ledger.CodeAmountZero, transfer, "--id", "t2", "--from", "alice", "--to", "bob", "--amount", "0", "--code", "978")

	// A reservation counts against alice's balance until it is settled.
	s.ok(ledger.CodeOK, transfer, "--id", "p1", "--from", "alice", "--to", "bob", "--amount", "70", "--code", "978", "--pending", "--timeout", "1h")
	s.fail(ledger.CodeExceedsCredits, transfer, "--id", "t3", "--from", "alice", "--to", "bob", "--amount", "31", "--code", "978")
	s.fail(ledger.CodeExceedsPendingAmount, transferPost, "--id", "s1", "--pending-id", "p1", "--amount", "71")
	post := s.ok(ledger.CodeOK, transferPost, "--id", "s1", "--pending-id", "p1", "--amount", "50")
	if again := s.ok(ledger.CodeExists, transferPost, "--id", "s1", "--pending-id", "p1", "--amount", "50"); again.Position != post.Position {
		t.Fatalf("retried post at position %d, the original is at %d", again.Position, post.Position)
	}
	s.fail(ledger.CodePendingTransferAlreadyPosted, transferVoid, "--id", "v1", "--pending-id", "p1")
	s.ok(ledger.CodeOK, transfer, "--id", "p2", "--from", "alice", "--to", "bob", "--amount", "50", "--code", "978", "--pending")
	s.ok(ledger.CodeOK, transferVoid, "--id", "v2", "--pending-id", "p2")
	s.fail(ledger.CodePendingTransferAlreadyVoided, transferPost, "--id", "s3", "--pending-id", "p2")

	// Expiry follows the log's time, not the caller's clock.
	s.ok(ledger.CodeOK, transfer, "--id", "p3", "--from", "alice", "--to", "bob", "--amount", "5", "--code", "978", "--pending", "--timeout", "30s")
	s.node.advance(31 * time.Second)
	s.fail(ledger.CodePendingTransferExpired, transferPost, "--id", "s4", "--pending-id", "p3")

	// Only the owner moves money out of an account.
	other := filepath.Join(t.TempDir(), "other.key")
	mustOrdo(t, "keygen", "--out", other)
	mallory := &ledgerSession{t: t, c: s.c, node: s.node, key: other}
	mallory.fail(ledger.CodeNotOwner, transfer, "--id", "m1", "--from", "alice", "--to", "bob", "--amount", "1", "--code", "978")
	mallory.fail(ledger.CodeNotOwner, transferVoid, "--id", "m2", "--pending-id", "p1")

	// What the log holds: one event per successful operation.
	evs, _, err := s.node.log.ReadAll(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Stream+" "+e.Type)
	}
	want := "account-bank AccountCreated, account-alice AccountCreated, account-bob AccountCreated, transfer-t1 TransferCreated, " +
		"transfer-p1 TransferCreated, transfer-p1 PendingPosted, transfer-p2 TransferCreated, transfer-p2 PendingVoided, " +
		"transfer-p3 TransferCreated, transfer-p3 PendingExpired"
	if strings.Join(got, ", ") != want {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(got, ", "), want)
	}
	if !bytes.Contains(evs[4].Data, []byte(`"pending":true,"timeout_ms":3600000`)) {
		t.Fatalf("pending transfer event %s", evs[4].Data)
	}
}

func TestLedgerCommandUsage(t *testing.T) {
	s := newLedgerSession(t)
	for _, args := range [][]string{{"account", "create"}, {"transfer"}, {"transfer", "post"}, {"transfer", "void"}} {
		out, _, exit := ledgerApp(t, append(args, "--help")...)
		if exit != 0 || !strings.Contains(out, "ordo "+strings.Join(args, " ")) || !strings.Contains(out, "--node") {
			t.Errorf("%s --help: exit %d, %q", strings.Join(args, " "), exit, out)
		}
	}
	if out, _, exit := ledgerApp(t, "account"); exit != 0 || !strings.Contains(out, "create") {
		t.Errorf("ordo account: exit %d, %q", exit, out)
	}
	s.usage(`unknown command "delete"`, "account", "delete")
	s.usage("--id is required", s.args(accountCreate, "--code", "1")...)
	s.usage("--code is required", s.args(accountCreate, "--id", "a")...)
	s.usage("--code \"x\"", s.args(accountCreate, "--id", "a", "--code", "x")...)
	s.usage(`unknown account flag "overdraft"`, s.args(accountCreate, "--id", "a", "--code", "1", "--flags", "overdraft")...)
	s.usage("given twice", s.args(accountCreate, "--id", "a", "--code", "1", "--flags", "debits_must_not_exceed_credits,debits_must_not_exceed_credits")...)
	s.usage("--key is required", "account", "create", "--node", s.node.srv.URL, "--id", "a", "--code", "1")
	s.usage("--from is required", s.args(transfer, "--id", "t", "--to", "b", "--amount", "1", "--code", "1")...)
	s.usage("--amount \"-1\"", s.args(transfer, "--id", "t", "--from", "a", "--to", "b", "--amount", "-1", "--code", "1")...)
	s.usage("--timeout is for --pending transfers only", s.args(transfer, "--id", "t", "--from", "a", "--to", "b", "--amount", "1", "--code", "1", "--timeout", "1s")...)
	s.usage("whole number of milliseconds", s.args(transfer, "--id", "t", "--from", "a", "--to", "b", "--amount", "1", "--code", "1", "--pending", "--timeout", "1500us")...)
	s.usage("unexpected argument \"extra\"", s.args(transfer, "--id", "t", "--from", "a", "--to", "b", "--amount", "1", "--code", "1", "extra")...)
	s.usage("--pending-id is required", s.args(transferPost, "--id", "s")...)
	s.usage("flag provided but not defined: -amount", s.args(transferVoid, "--id", "v", "--pending-id", "p", "--amount", "1")...)
}
