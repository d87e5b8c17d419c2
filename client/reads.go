package client

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// Reads trust the node that answers: they are for looking, not for proof.
// Proof of a single event comes from its entry's certificate.

// FromEnd as the from argument of a backwards ReadStream starts at the
// stream's last event.
const FromEnd = math.MaxUint64

// genesisBytesMax bounds the genesis document a node may send.
const genesisBytesMax = 1 << 20

// Status is GET /v1/status. Raw keeps the node's JSON as it came, with any
// fields this client does not know.
type Status struct {
	Node             string            `json:"node"`
	Index            int               `json:"index"`
	PeerID           string            `json:"peer_id"`
	View             uint64            `json:"view"`
	Primary          int               `json:"primary"`
	CommittedSeq     uint64            `json:"committed_seq"`
	ExecutedSeq      uint64            `json:"executed_seq"`
	StableCheckpoint uint64            `json:"stable_checkpoint"`
	PeersConnected   int               `json:"peers_connected"`
	Evidence         []json.RawMessage `json:"evidence"`
	Projections      map[string]uint64 `json:"projections"`
	ChainID          string            `json:"chain_id"`
	GenesisHash      string            `json:"genesis_hash"`
	LastPosition     uint64            `json:"last_position"`
	HeadHash         string            `json:"head_hash"`
	Raw              json.RawMessage   `json:"-"`
}

// UnmarshalJSON decodes the known fields and keeps the raw object.
func (s *Status) UnmarshalJSON(b []byte) error {
	type plain Status
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = Status(p)
	s.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON returns the node's JSON when there is one.
func (s Status) MarshalJSON() ([]byte, error) {
	if len(s.Raw) > 0 {
		return s.Raw, nil
	}
	type plain Status
	return json.Marshal(plain(s))
}

// Event is one event as the read endpoints render it. Data holds the JSON value
// of an event appended as JSON; DataB64 holds other content. The same goes for
// Metadata. Raw keeps the node's object as it came.
type Event struct {
	Position    uint64          `json:"position"`
	Stream      string          `json:"stream"`
	Version     uint64          `json:"version"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data,omitempty"`
	DataB64     []byte          `json:"data_b64,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	MetadataB64 []byte          `json:"metadata_b64,omitempty"`
	EntrySeq    uint64          `json:"entry_seq"`
	Timestamp   time.Time       `json:"timestamp"`
	Raw         json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the known fields and keeps the raw object.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*e = Event(p)
	e.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON returns the node's JSON when there is one.
func (e Event) MarshalJSON() ([]byte, error) {
	if len(e.Raw) > 0 {
		return e.Raw, nil
	}
	type plain Event
	return json.Marshal(plain(e))
}

// EventPage is one page of events; Next is where the following page starts
// (a position for $all, a version for a stream).
type EventPage struct {
	Events []Event `json:"events"`
	Next   uint64  `json:"next"`
}

// EntryJSON is a committed log entry as GET /v1/entries renders it.
type EntryJSON struct {
	Seq            uint64        `json:"seq"`
	View           uint64        `json:"view"`
	Timestamp      int64         `json:"timestamp"` // agreed time, Unix nanoseconds
	Digest         crypto.Digest `json:"digest"`
	PrevHash       crypto.Digest `json:"prev_hash"`
	Hash           crypto.Digest `json:"hash"`
	ResultsRoot    crypto.Digest `json:"results_root"`
	FirstPosition  uint64        `json:"first_position"`
	EventCount     uint64        `json:"event_count"`
	Requests       [][]byte      `json:"requests_b64"`    // encoded pbft.SignedRequests
	Results        [][]byte      `json:"results_b64"`     // encoded ledger.Results
	CertificateRaw []byte        `json:"certificate_b64"` // encoded pbft.Certificate
}

// EntryPage is one page of entries; Next is the seq the following page starts at.
type EntryPage struct {
	Entries []EntryJSON `json:"entries"`
	Next    uint64      `json:"next"`
}

// Status returns GET /v1/status of the first node that answers.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.getJSON(ctx, "status", "/v1/status", c.timeout, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// StatusOf returns GET /v1/status of one node, without trying others: for
// showing every node of a network.
func (c *Client) StatusOf(ctx context.Context, node string) (*Status, error) {
	u, err := normalizeURL(node)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	body, status, err := c.do(ctx, u, http.MethodGet, "/v1/status", nil, readBytesMax)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("status: %w", answerError(u, status, body))
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("status: %s: malformed answer: %w", u, err)
	}
	return &s, nil
}

// ReadAll reads the $all log from position from. limit 0 leaves the page size
// to the node. waitMs > 0 asks the node to wait up to that long for an event
// at from when there is none yet (a long poll, at most WaitMsMax).
func (c *Client) ReadAll(ctx context.Context, from uint64, limit int, waitMs int) (*EventPage, error) {
	if waitMs < 0 || waitMs > WaitMsMax {
		return nil, fmt.Errorf("read $all: wait_ms %d outside 0..%d", waitMs, WaitMsMax)
	}
	if limit < 0 {
		return nil, fmt.Errorf("read $all: negative limit %d", limit)
	}
	q := url.Values{}
	q.Set("from", strconv.FormatUint(from, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if waitMs > 0 {
		q.Set("wait_ms", strconv.Itoa(waitMs))
	}
	var p EventPage
	timeout := c.timeout + time.Duration(waitMs)*time.Millisecond
	if err := c.getJSON(ctx, "read $all", "/v1/events?"+q.Encode(), timeout, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ReadStream reads one stream from version from, forwards or backwards. A
// backwards read from FromEnd starts at the stream's last event.
func (c *Client) ReadStream(ctx context.Context, stream string, from uint64, limit int, backwards bool) (*EventPage, error) {
	if stream == "" {
		return nil, fmt.Errorf("read stream: empty stream name")
	}
	if limit < 0 {
		return nil, fmt.Errorf("read stream %q: negative limit %d", stream, limit)
	}
	q := url.Values{}
	if from != FromEnd {
		q.Set("from", strconv.FormatUint(from, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	q.Set("backwards", strconv.FormatBool(backwards))
	var p EventPage
	path := "/v1/streams/" + url.PathEscape(stream) + "?" + q.Encode()
	if err := c.getJSON(ctx, fmt.Sprintf("read stream %q", stream), path, c.timeout, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Entry returns committed entry seq.
func (c *Client) Entry(ctx context.Context, seq uint64) (*EntryJSON, error) {
	var e EntryJSON
	if err := c.getJSON(ctx, fmt.Sprintf("entry %d", seq), "/v1/entries/"+strconv.FormatUint(seq, 10), c.timeout, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Entries returns up to limit committed entries from seq from (limit 0 leaves
// the page size to the node).
func (c *Client) Entries(ctx context.Context, from uint64, limit int) (*EntryPage, error) {
	if limit < 0 {
		return nil, fmt.Errorf("entries: negative limit %d", limit)
	}
	q := url.Values{}
	q.Set("from", strconv.FormatUint(from, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p EntryPage
	if err := c.getJSON(ctx, "entries", "/v1/entries?"+q.Encode(), c.timeout, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Genesis returns the raw GET /v1/genesis body of the first node that answers.
// It is the node's word only: callers that trust it for the validator set
// should say so.
func (c *Client) Genesis(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.failover(ctx, "genesis", func(ctx context.Context, node string) error {
		body, status, err := c.do(ctx, node, http.MethodGet, "/v1/genesis", nil, genesisBytesMax)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return answerError(node, status, body)
		}
		if !json.Valid(body) {
			return &retryableError{err: fmt.Errorf("%s: genesis is not JSON", node)}
		}
		out = body
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
