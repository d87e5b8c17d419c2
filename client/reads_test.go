package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// readNode fakes the read endpoints of a node and records the queries.
type readNode struct {
	srv     *httptest.Server
	mu      sync.Mutex
	queries []*url.URL
}

const (
	statusJSON = `{"node":"node0","index":0,"peer_id":"12D3KooW","view":2,"primary":2,"committed_seq":41,"executed_seq":41,` +
		`"stable_checkpoint":0,"peers_connected":3,"evidence":[],"projections":{"streams":9},"chain_id":"ordo-local",` +
		`"genesis_hash":"ab","last_position":9,"head_hash":"cd","future_field":true}`
	eventsJSON = `{"events":[` +
		`{"position":4,"stream":"s","version":0,"id":"0b5e1f3c-3d2a-4f51-9c6e-0a1b2c3d4e5f","type":"t","data":{"a":[1,2]},"metadata":{"m":1},"entry_seq":3,"timestamp":"2026-01-02T03:04:05.123456789Z"},` +
		`{"position":5,"stream":"s","version":1,"id":"1b5e1f3c-3d2a-4f51-9c6e-0a1b2c3d4e5f","type":"t","data_b64":"AAEC","entry_seq":3,"timestamp":"2026-01-02T03:04:05.123456789Z"}` +
		`],"next":6}`
	entryJSON = `{"seq":3,"view":0,"timestamp":1767323045123456789,"digest":"` + hex64a + `","prev_hash":"` + hex64a + `","hash":"` + hex64a +
		`","results_root":"` + hex64a + `","first_position":4,"event_count":2,"requests_b64":["AAEC"],"results_b64":["AwQ="],"certificate_b64":"BQY="}`
	hex64a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func newReadNode(t *testing.T) *readNode {
	t.Helper()
	rn := &readNode{}
	rn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rn.mu.Lock()
		rn.queries = append(rn.queries, r.URL)
		rn.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/status":
			io.WriteString(w, statusJSON)
		case r.URL.Path == "/v1/events" || strings.HasPrefix(r.URL.Path, "/v1/streams/"):
			io.WriteString(w, eventsJSON)
		case r.URL.Path == "/v1/entries/3":
			io.WriteString(w, entryJSON)
		case r.URL.Path == "/v1/entries":
			io.WriteString(w, `{"entries":[`+entryJSON+`],"next":4}`)
		case r.URL.Path == "/v1/genesis":
			io.WriteString(w, `{"chain_id":"ordo-local"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no entry 9","code":"not_found"}`)
		}
	}))
	t.Cleanup(rn.srv.Close)
	return rn
}

func (rn *readNode) last() *url.URL {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.queries[len(rn.queries)-1]
}

func readClient(t *testing.T, nodes ...string) *Client {
	t.Helper()
	c, err := New(Config{Nodes: nodes, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStatusKeepsTheNodesJSON(t *testing.T) {
	rn := newReadNode(t)
	s, err := readClient(t, rn.srv.URL).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != "node0" || s.CommittedSeq != 41 || s.View != 2 || s.PeersConnected != 3 || s.Projections["streams"] != 9 {
		t.Errorf("decoded %+v", s)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"future_field":true`) {
		t.Errorf("re-encoded status lost fields: %s", out)
	}
}

func TestStatusFailsOverToALiveNode(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	rn := newReadNode(t)
	s, err := readClient(t, deadURL, rn.srv.URL).Status(context.Background())
	if err != nil || s.Node != "node0" {
		t.Fatalf("got %+v, %v", s, err)
	}
}

func TestStatusOfAskesOnlyThatNode(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	rn := newReadNode(t)
	c := readClient(t, rn.srv.URL)
	if _, err := c.StatusOf(context.Background(), deadURL); err == nil {
		t.Fatal("status of a dead node succeeded")
	}
	if s, err := c.StatusOf(context.Background(), rn.srv.URL); err != nil || s.CommittedSeq != 41 {
		t.Fatalf("got %+v, %v", s, err)
	}
}

func TestReadAllSendsLongPoll(t *testing.T) {
	rn := newReadNode(t)
	c := readClient(t, rn.srv.URL)
	p, err := c.ReadAll(context.Background(), 4, 10, 2500)
	if err != nil {
		t.Fatal(err)
	}
	q := rn.last().Query()
	if rn.last().Path != "/v1/events" || q.Get("from") != "4" || q.Get("limit") != "10" || q.Get("wait_ms") != "2500" {
		t.Errorf("query %v", rn.last())
	}
	if len(p.Events) != 2 || p.Next != 6 {
		t.Fatalf("page %+v", p)
	}
	e := p.Events[0]
	if e.Position != 4 || e.ID != "0b5e1f3c-3d2a-4f51-9c6e-0a1b2c3d4e5f" || string(e.Data) != `{"a":[1,2]}` || e.EntrySeq != 3 {
		t.Errorf("event %+v", e)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC); !e.Timestamp.Equal(want) {
		t.Errorf("timestamp %v", e.Timestamp)
	}
	if got := p.Events[1].DataB64; string(got) != "\x00\x01\x02" {
		t.Errorf("data_b64 decoded to %q", got)
	}
	raw, err := json.Marshal(p.Events[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"position":4,"stream":"s"`) || !strings.Contains(string(raw), `"metadata":{"m":1}`) {
		t.Errorf("event re-encoded as %s", raw)
	}

	if _, err := c.ReadAll(context.Background(), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if q := rn.last().Query(); q.Has("limit") || q.Has("wait_ms") || q.Get("from") != "0" {
		t.Errorf("defaults sent as %v", rn.last())
	}
	if _, err := c.ReadAll(context.Background(), 0, 0, WaitMsMax+1); err == nil {
		t.Error("a wait above WaitMsMax was accepted")
	}
}

func TestReadStreamQuery(t *testing.T) {
	rn := newReadNode(t)
	c := readClient(t, rn.srv.URL)
	if _, err := c.ReadStream(context.Background(), "orders-1", 3, 5, false); err != nil {
		t.Fatal(err)
	}
	u := rn.last()
	if u.Path != "/v1/streams/orders-1" || u.Query().Get("from") != "3" || u.Query().Get("limit") != "5" || u.Query().Get("backwards") != "false" {
		t.Errorf("query %v", u)
	}
	if _, err := c.ReadStream(context.Background(), "a:b@c", FromEnd, 0, true); err != nil {
		t.Fatal(err)
	}
	u = rn.last()
	if u.Path != "/v1/streams/a:b@c" || u.Query().Has("from") || u.Query().Get("backwards") != "true" {
		t.Errorf("query %v", u)
	}
	if _, err := c.ReadStream(context.Background(), "", 0, 0, false); err == nil {
		t.Error("empty stream name accepted")
	}
}

func TestEntries(t *testing.T) {
	rn := newReadNode(t)
	c := readClient(t, rn.srv.URL)
	e, err := c.Entry(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 3 || e.FirstPosition != 4 || e.EventCount != 2 || e.Hash.String() != hex64a || string(e.CertificateRaw) != "\x05\x06" || len(e.Requests) != 1 {
		t.Errorf("entry %+v", e)
	}
	p, err := c.Entries(context.Background(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 1 || p.Next != 4 || rn.last().Query().Get("limit") != "1" {
		t.Errorf("page %+v from %v", p, rn.last())
	}
	_, err = c.Entry(context.Background(), 9)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || apiErr.Code != "not_found" {
		t.Fatalf("missing entry: %v", err)
	}
}

func TestGenesisIsRaw(t *testing.T) {
	rn := newReadNode(t)
	g, err := readClient(t, rn.srv.URL).Genesis(context.Background())
	if err != nil || string(g) != `{"chain_id":"ordo-local"}` {
		t.Fatalf("got %q, %v", g, err)
	}
}

func TestNonJSONErrorIsQuoted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("x", 1000), http.StatusBadRequest)
	}))
	defer srv.Close()
	_, err := readClient(t, srv.URL).Status(context.Background())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "" || len(apiErr.Message) > errorMessageMax+len("…") {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "status: 400: xxx") {
		t.Errorf("message %q", err)
	}
}

func TestOversizedAnswerIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"chain_id":"`+strings.Repeat("x", genesisBytesMax)+`"}`)
	}))
	defer srv.Close()
	_, err := readClient(t, srv.URL).Genesis(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}
