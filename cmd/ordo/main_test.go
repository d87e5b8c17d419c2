package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/node"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ordo runs the CLI in-process and returns stdout, stderr and the exit code.
func ordo(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb syncBuffer
	code := run(context.Background(), append([]string{"ordo"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// mustOrdo runs the CLI and fails the test unless it succeeds.
func mustOrdo(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := ordo(t, args...)
	if code != 0 {
		t.Fatalf("ordo %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// failOrdo runs the CLI, expects exit 1 with exactly one "ordo: " line on
// stderr containing want, and returns that line.
func failOrdo(t *testing.T, want string, args ...string) string {
	t.Helper()
	out, errs, code := ordo(t, args...)
	if code != 1 {
		t.Fatalf("ordo %s: exit %d, want 1 (stdout %q, stderr %q)", strings.Join(args, " "), code, out, errs)
	}
	lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "ordo: ") || !strings.Contains(last, want) {
		t.Fatalf("ordo %s: stderr %q, want one line containing %q", strings.Join(args, " "), errs, want)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.Contains(l, "level=WARN") && !strings.HasPrefix(l, "ordo: warning:") {
			t.Fatalf("ordo %s: stray stderr line %q", strings.Join(args, " "), l)
		}
	}
	if strings.Contains(out, "USAGE") || strings.Contains(errs, "goroutine ") {
		t.Fatalf("ordo %s: usage dump or stack trace: %q %q", strings.Join(args, " "), out, errs)
	}
	return last
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output %q: %v", s, err)
	}
	return v
}

type keygenOut struct {
	PublicKey string `json:"public_key"`
	PeerID    string `json:"peer_id"`
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.key")
	out := decode[keygenOut](t, mustOrdo(t, "keygen", "--out", path))
	k, err := crypto.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.PublicKey != k.Public().String() {
		t.Errorf("printed key %s, file holds %v", out.PublicKey, k.Public())
	}
	if !strings.HasPrefix(out.PeerID, "12D3KooW") {
		t.Errorf("peer id %q is not an Ed25519 libp2p id", out.PeerID)
	}
	other := decode[keygenOut](t, mustOrdo(t, "keygen", "--out", filepath.Join(dir, "b.key")))
	if other.PublicKey == out.PublicKey {
		t.Error("two keygens made the same key")
	}
	failOrdo(t, "file exists", "keygen", "--out", path)
	failOrdo(t, "--out is required", "keygen")
	failOrdo(t, "unexpected argument", "keygen", "--out", filepath.Join(dir, "c.key"), "extra")
}

// cluster is a directory with validator keys, a client key and a genesis
// made with the CLI, and a fake node serving that network.
type cluster struct {
	dir       string
	keys      []crypto.PrivateKey
	clientKey string
	genesis   string
	node      *fakeNode
}

func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir()}
	var vals []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(c.dir, fmt.Sprintf("v%d.key", i))
		mustOrdo(t, "keygen", "--out", p)
		k, err := crypto.ReadKeyFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c.keys = append(c.keys, k)
		vals = append(vals, p)
	}
	// The client key lives in its own directory so that no genesis.json sits
	// beside it unless a test puts one there.
	clientDir := filepath.Join(c.dir, "client")
	if err := os.Mkdir(clientDir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.clientKey = filepath.Join(clientDir, "client.key")
	mustOrdo(t, "keygen", "--out", c.clientKey)
	c.genesis = filepath.Join(c.dir, "genesis.json")
	mustOrdo(t, append([]string{"genesis", "--validators", strings.Join(vals, ","), "--out", c.genesis}, extra...)...)
	g, err := node.LoadGenesis(c.genesis)
	if err != nil {
		t.Fatal(err)
	}
	c.node = newFakeNode(t, g, c.keys)
	return c
}

func TestGenesis(t *testing.T) {
	dir := t.TempDir()
	var paths, hexes []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(dir, fmt.Sprintf("v%d.key", i))
		paths = append(paths, p)
		hexes = append(hexes, decode[keygenOut](t, mustOrdo(t, "keygen", "--out", p)).PublicKey)
	}
	clientHex := decode[keygenOut](t, mustOrdo(t, "keygen", "--out", filepath.Join(dir, "client.key"))).PublicKey

	// Keys as files and as hex mix; names, addresses and an allowlist.
	out := filepath.Join(dir, "g1.json")
	printed := decode[map[string]any](t, mustOrdo(t, "genesis",
		"--validators", paths[0]+","+hexes[1], "--validators", paths[2]+","+hexes[3],
		"--out", out, "--chain-id", "test-chain", "--names", "a,b,c,d",
		"--p2p-addrs", "/ip4/127.0.0.1/tcp/7800,/ip4/127.0.0.1/tcp/7801,/ip4/127.0.0.1/tcp/7802,/ip4/127.0.0.1/tcp/7803",
		"--clients", filepath.Join(dir, "client.key")))
	g, err := node.LoadGenesis(out)
	if err != nil {
		t.Fatal(err)
	}
	if g.ChainID != "test-chain" || len(g.Validators) != 4 || g.Admission.Mode != node.AdmissionAllowlist {
		t.Fatalf("genesis %+v", g)
	}
	for i, v := range g.Validators {
		if v.PublicKey.String() != hexes[i] || v.Name != string(rune('a'+i)) || v.P2PAddrs[0] != fmt.Sprintf("/ip4/127.0.0.1/tcp/780%d", i) {
			t.Errorf("validator %d: %+v", i, v)
		}
	}
	if len(g.Admission.Clients) != 1 || g.Admission.Clients[0].String() != clientHex {
		t.Errorf("admission %+v", g.Admission)
	}
	if g.Params != node.DefaultParams() {
		t.Errorf("params %+v", g.Params)
	}
	if printed["genesis_hash"] != g.Hash().String() {
		t.Errorf("printed hash %v, file hashes to %v", printed["genesis_hash"], g.Hash())
	}

	// Defaults: open admission, node0.., chain ordo-local.
	out2 := filepath.Join(dir, "g2.json")
	mustOrdo(t, "genesis", "--validators", strings.Join(hexes, ","), "--out", out2, "--open")
	g2, err := node.LoadGenesis(out2)
	if err != nil {
		t.Fatal(err)
	}
	if g2.ChainID != defaultChainID || g2.Admission.Mode != node.AdmissionOpen || g2.Validators[3].Name != "node3" {
		t.Errorf("defaults %+v", g2)
	}

	bad := filepath.Join(dir, "bad.json")
	cases := []struct {
		want string
		args []string
	}{
		{"--validators is required", []string{"--out", bad}},
		{"--out is required", []string{"--validators", hexes[0]}},
		{"validator 1: \"zz\" is neither a hex public key nor a key file", []string{"--validators", hexes[0] + ",zz", "--out", bad}},
		{"--names has 1 names for 2 validators", []string{"--validators", hexes[0] + "," + hexes[1], "--names", "x", "--out", bad}},
		{"--p2p-addrs has 1 addresses", []string{"--validators", hexes[0] + "," + hexes[1], "--p2p-addrs", "/ip4/1.2.3.4/tcp/1", "--out", bad}},
		{"p2p address \"nope\"", []string{"--validators", hexes[0], "--p2p-addrs", "nope", "--out", bad}},
		{"--open and --clients exclude each other", []string{"--validators", hexes[0], "--open", "--clients", clientHex, "--out", bad}},
		{"share public key", []string{"--validators", hexes[0] + "," + hexes[0], "--out", bad}},
		{"chain_id", []string{"--validators", hexes[0], "--chain-id", "bad id!", "--out", bad}},
		{"file exists", []string{"--validators", hexes[0], "--out", out}},
		{"flag provided but not defined: -bogus", []string{"--validators", hexes[0], "--out", bad, "--bogus"}},
	}
	for _, tc := range cases {
		failOrdo(t, tc.want, append([]string{"genesis"}, tc.args...)...)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Error("a failed genesis command left a file behind")
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	for _, cmd := range []string{"keygen", "genesis", "node", "status", "append", "read", "verify"} {
		out := mustOrdo(t, cmd, "--help")
		if !strings.Contains(out, "ordo "+cmd) {
			t.Errorf("%s --help printed %q", cmd, out)
		}
	}
	if out := mustOrdo(t, "--help"); !strings.Contains(out, "append") || !strings.Contains(out, "genesis") {
		t.Errorf("--help printed %q", out)
	}
	failOrdo(t, `unknown command "frobnicate"`, "frobnicate")
	failOrdo(t, "flag provided but not defined", "--nope")
	failOrdo(t, "see 'ordo status --help'", "status", "--nope")
	failOrdo(t, "--node is required", "status")
	failOrdo(t, "--home is required", "node")
	failOrdo(t, "--log-level \"loud\"", "node", "--home", t.TempDir(), "--log-level", "loud")
}

type appendOut struct {
	Positions     []uint64 `json:"positions"`
	StreamVersion int64    `json:"stream_version"`
	EntrySeq      uint64   `json:"entry_seq"`
	Replies       int      `json:"replies"`
	ID            string   `json:"id"`
}

func (c *cluster) appendArgs(extra ...string) []string {
	return append([]string{"append", "--node", c.node.srv.URL, "--key", c.clientKey, "--genesis", c.genesis}, extra...)
}

func TestAppend(t *testing.T) {
	c := newCluster(t)
	a := decode[appendOut](t, mustOrdo(t, c.appendArgs("--stream", "orders", "--type", "placed", "--data", `{"n":1}`)...))
	if len(a.Positions) != 1 || a.Positions[0] != 1 || a.StreamVersion != 0 || a.EntrySeq != 1 || a.Replies != 2 {
		t.Fatalf("first append %+v", a)
	}
	id := "0b5e1f3c-3d2a-4f51-9c6e-0a1b2c3d4e5f"
	args := c.appendArgs("--stream", "orders", "--type", "placed", "--data", `{"n":2}`, "--id", id,
		"--expected-version", "0", "--metadata", `{"by":"test"}`)
	b := decode[appendOut](t, mustOrdo(t, args...))
	if b.Positions[0] != 2 || b.StreamVersion != 1 || b.ID != id {
		t.Fatalf("second append %+v", b)
	}
	// The same id again is an idempotent retry: the original position.
	retry := decode[appendOut](t, mustOrdo(t, args...))
	if retry.Positions[0] != 2 {
		t.Fatalf("retry %+v, want position 2", retry)
	}
	ev := c.node.events[1]
	if string(ev.data.Metadata) != `{"by":"test"}` || ev.data.ContentType != "application/json" || ev.data.Type != "placed" {
		t.Errorf("the node received %+v", ev.data)
	}

	failOrdo(t, `wrong_expected_version: stream "orders" is at version 1`,
		c.appendArgs("--stream", "orders", "--type", "t", "--data", "{}", "--expected-version", "no_stream")...)
	mustOrdo(t, c.appendArgs("--stream", "fresh", "--type", "t", "--data", "{}", "--expected-version", "no_stream")...)
	mustOrdo(t, c.appendArgs("--stream", "fresh", "--type", "t", "--data", "[1]", "--expected-version", "exists")...)
	failOrdo(t, "wrong_expected_version", c.appendArgs("--stream", "none", "--type", "t", "--data", "{}", "--expected-version", "exists")...)

	failOrdo(t, "--data is not valid JSON", c.appendArgs("--stream", "s", "--type", "t", "--data", "{nope")...)
	failOrdo(t, "--metadata is not valid JSON", c.appendArgs("--stream", "s", "--type", "t", "--data", "1", "--metadata", "x")...)
	failOrdo(t, "--id \"42\" is not a UUID", c.appendArgs("--stream", "s", "--type", "t", "--data", "1", "--id", "42")...)
	failOrdo(t, "--expected-version \"-4\"", c.appendArgs("--stream", "s", "--type", "t", "--data", "1", "--expected-version", "-4")...)
	failOrdo(t, "--stream is required", c.appendArgs("--type", "t", "--data", "1")...)
	failOrdo(t, "--key is required", "append", "--node", c.node.srv.URL, "--stream", "s", "--type", "t", "--data", "1")
	failOrdo(t, "--node is required", "append", "--key", c.clientKey, "--genesis", c.genesis, "--stream", "s", "--type", "t", "--data", "1")
}

func TestAppendWithAnotherGenesisFails(t *testing.T) {
	c := newCluster(t)
	other := newCluster(t)
	// The node signs for its own chain; a client holding another genesis
	// refuses the reply (and the node the request).
	failOrdo(t, "bad_signature", "append", "--node", c.node.srv.URL, "--key", c.clientKey, "--genesis", other.genesis,
		"--stream", "s", "--type", "t", "--data", "1")
}

func TestAppendRefusedByAllowlist(t *testing.T) {
	// Admitted: some other client, not the one this test signs with.
	other, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{0xab}, crypto.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, "--clients", other.Public().String())
	failOrdo(t, "not_admitted", c.appendArgs("--stream", "s", "--type", "t", "--data", "1")...)
}

func TestAppendFindsGenesis(t *testing.T) {
	c := newCluster(t)
	base := []string{"append", "--node", c.node.srv.URL, "--key", c.clientKey, "--stream", "s", "--type", "t", "--data", "1"}

	// Fetched from the node, with a warning.
	out, errs, code := ordo(t, base...)
	if code != 0 || !strings.Contains(errs, "warning: no --genesis given; trusting "+c.node.srv.URL) {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	decode[appendOut](t, out)

	// $ORDO_GENESIS.
	t.Setenv(envGenesis, c.genesis)
	if _, errs, code := ordo(t, base...); code != 0 || errs != "" {
		t.Fatalf("with $%s: exit %d, stderr %q", envGenesis, code, errs)
	}
	t.Setenv(envGenesis, filepath.Join(c.dir, "missing.json"))
	failOrdo(t, "$ORDO_GENESIS", base...)
	t.Setenv(envGenesis, "")

	// genesis.json beside the key.
	raw, err := os.ReadFile(c.genesis)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(c.clientKey), "genesis.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := ordo(t, base...); code != 0 || errs != "" {
		t.Fatalf("with genesis.json beside the key: exit %d, stderr %q", code, errs)
	}
}

func TestStatus(t *testing.T) {
	c := newCluster(t)
	mustOrdo(t, c.appendArgs("--stream", "s", "--type", "t", "--data", "1")...)
	out := mustOrdo(t, "status", "--node", "http://127.0.0.1:1,"+c.node.srv.URL)
	if strings.Count(out, "\n") != 1 {
		t.Errorf("status is not one line: %q", out)
	}
	st := decode[map[string]any](t, out)
	if st["committed_seq"] != float64(1) || st["genesis_hash"] != c.node.genesis.Hash().String() {
		t.Errorf("status %v", st)
	}
	failOrdo(t, "no node gave a usable answer", "status", "--node", "http://127.0.0.1:1")
}

type eventOut struct {
	Position uint64          `json:"position"`
	Stream   string          `json:"stream"`
	Version  uint64          `json:"version"`
	ID       string          `json:"id"`
	Data     json.RawMessage `json:"data"`
}

func lines(t *testing.T, out string) []eventOut {
	t.Helper()
	var evs []eventOut
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			evs = append(evs, decode[eventOut](t, l))
		}
	}
	return evs
}

func TestRead(t *testing.T) {
	c := newCluster(t)
	for i := 0; i < 5; i++ {
		stream := []string{"a", "b"}[i%2]
		mustOrdo(t, c.appendArgs("--stream", stream, "--type", "t", "--data", fmt.Sprintf(`{"i":%d}`, i))...)
	}
	node := c.node.srv.URL

	all := lines(t, mustOrdo(t, "read", "--node", node, "--all"))
	if len(all) != 5 || all[0].Position != 1 || all[4].Position != 5 || string(all[2].Data) != `{"i":2}` {
		t.Fatalf("$all %+v", all)
	}
	if got := lines(t, mustOrdo(t, "read", "--node", node, "--all", "--from", "4")); len(got) != 2 || got[0].Position != 4 {
		t.Errorf("$all from 4: %+v", got)
	}
	// A limit larger than one page is served in pages; a small one cuts.
	if got := lines(t, mustOrdo(t, "read", "--node", node, "--all", "--limit", "2")); len(got) != 2 {
		t.Errorf("$all limit 2: %+v", got)
	}
	a := lines(t, mustOrdo(t, "read", "--node", node, "--stream", "a"))
	if len(a) != 3 || a[0].Version != 0 || a[2].Version != 2 || a[2].Stream != "a" {
		t.Fatalf("stream a: %+v", a)
	}
	if got := lines(t, mustOrdo(t, "read", "--node", node, "--stream", "a", "--from", "1", "--limit", "1")); len(got) != 1 || got[0].Version != 1 {
		t.Errorf("stream a from 1 limit 1: %+v", got)
	}
	back := lines(t, mustOrdo(t, "read", "--node", node, "--stream", "a", "--backwards"))
	if len(back) != 3 || back[0].Version != 2 || back[2].Version != 0 {
		t.Errorf("stream a backwards: %+v", back)
	}
	if got := lines(t, mustOrdo(t, "read", "--node", node, "--stream", "a", "--backwards", "--from", "1")); len(got) != 2 || got[0].Version != 1 {
		t.Errorf("stream a backwards from 1: %+v", got)
	}
	failOrdo(t, `stream_not_found: stream "nothing" has no events`, "read", "--node", node, "--stream", "nothing")

	failOrdo(t, "exactly one of --stream S and --all", "read", "--node", node)
	failOrdo(t, "exactly one of --stream S and --all", "read", "--node", node, "--all", "--stream", "a")
	failOrdo(t, "does not apply to --all", "read", "--node", node, "--all", "--backwards")
	failOrdo(t, "does not go with --backwards", "read", "--node", node, "--stream", "a", "--backwards", "--follow")
	failOrdo(t, "--limit 0", "read", "--node", node, "--all", "--limit", "0")
}

// follow runs `ordo read --follow --node <fn> …` until the test cancels it and
// returns its output buffer and a function that stops it and returns its exit
// code.
func follow(t *testing.T, fn *fakeNode, args ...string) (*syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"ordo", "read", "--follow", "--node", fn.srv.URL}, args...), &out, &errb)
	}()
	stop := func() int {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("follow exited %d: %s", code, errb.String())
			}
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not stop when interrupted")
			return -1
		}
	}
	t.Cleanup(func() { cancel() })
	return &out, stop
}

// waitLines waits until out holds n lines.
func waitLines(t *testing.T, out *syncBuffer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d lines, have %q", n, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadFollow(t *testing.T) {
	c := newCluster(t)
	mustOrdo(t, c.appendArgs("--stream", "a", "--type", "t", "--data", "0")...)
	mustOrdo(t, c.appendArgs("--stream", "b", "--type", "t", "--data", "1")...)

	allOut, stopAll := follow(t, c.node, "--all")
	streamOut, stopStream := follow(t, c.node, "--stream", "a")
	// A stream that does not exist yet is followed from its first event.
	laterOut, stopLater := follow(t, c.node, "--stream", "later")
	waitLines(t, allOut, 2)
	waitLines(t, streamOut, 1)

	for i := 2; i < 6; i++ {
		stream := []string{"a", "b"}[i%2]
		mustOrdo(t, c.appendArgs("--stream", stream, "--type", "t", "--data", fmt.Sprint(i))...)
	}
	mustOrdo(t, c.appendArgs("--stream", "later", "--type", "t", "--data", "6")...)
	waitLines(t, allOut, 7)
	waitLines(t, streamOut, 3)
	waitLines(t, laterOut, 1)
	stopAll()
	stopStream()
	stopLater()
	if later := lines(t, laterOut.String()); len(later) != 1 || later[0].Stream != "later" || later[0].Version != 0 {
		t.Errorf("stream later: %+v", later)
	}

	all := lines(t, allOut.String())
	for i, e := range all {
		if e.Position != uint64(i+1) || string(e.Data) != fmt.Sprint(i) {
			t.Errorf("$all line %d: %+v", i, e)
		}
	}
	a := lines(t, streamOut.String())
	if len(a) != 3 {
		t.Fatalf("stream a: %+v", a)
	}
	for i, e := range a {
		if e.Stream != "a" || e.Version != uint64(i) {
			t.Errorf("stream a line %d: %+v", i, e)
		}
	}
}
