package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/cqrs"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// HTTP bounds.
const (
	readLimitDefault = 100
	readLimitMax     = 1000
	waitMsMax        = 30000
	jsonBodyBytesMax = 256 << 10
)

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", n.handleSubmit)
	mux.HandleFunc("POST /v1/requests/batch", n.handleSubmitBatch)
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("GET /v1/genesis", n.handleGenesis)
	mux.HandleFunc("GET /v1/events", n.handleEvents)
	mux.HandleFunc("GET /v1/streams/{stream}", n.handleStream)
	mux.HandleFunc("GET /v1/entries/{seq}", n.handleEntry)
	mux.HandleFunc("GET /v1/entries", n.handleEntries)
	views := n.views.Handler()
	mux.Handle("/v1/projections", views)
	mux.Handle("/v1/projections/", views)
	mux.Handle("/v1/subscribe", views)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", n.handleDashboard)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// ResultJSON is a ledger.Result as the API shows it.
type ResultJSON struct {
	Code          string   `json:"code"`
	Message       string   `json:"message"`
	Positions     []uint64 `json:"positions"`
	StreamVersion int64    `json:"stream_version"`
	EntrySeq      uint64   `json:"entry_seq"`
	RequestHash   string   `json:"request_hash"`
	Ops           []OpJSON `json:"ops,omitempty"`
}

// OpJSON is one ledger operation's outcome in a command that carried a list.
type OpJSON struct {
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
	Position uint64 `json:"position,omitempty"`
}

func resultJSON(r *ledger.Result) ResultJSON {
	pos := r.Positions
	if pos == nil {
		pos = []uint64{}
	}
	out := ResultJSON{Code: r.Code, Message: r.Message, Positions: pos, StreamVersion: r.StreamVersion, EntrySeq: r.EntrySeq, RequestHash: r.RequestHash.String()}
	for _, op := range r.Ops {
		out.Ops = append(out.Ops, OpJSON{Code: op.Code, Message: op.Message, Position: op.Position})
	}
	return out
}

// bundleJSON is the JSON answer of a submit: the fields of pbft.ReplyBundle
// under its json names, with the result also rendered for humans (never
// evidence: clients check result_b64).
type bundleJSON struct {
	EntrySeq    uint64     `json:"entry_seq"`
	Result      ResultJSON `json:"result"`
	ResultB64   string     `json:"result_b64"`
	ResultIndex uint64     `json:"result_index"`
	ResultCount uint64     `json:"result_count"`
	Proof       []string   `json:"proof"`
	Executed    []string   `json:"executed"`
}

func (n *Node) handleSubmit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, status, msg := n.submitHTTP(w, r)
	n.metrics.submits.WithLabelValues(code).Inc()
	if status == http.StatusOK {
		since(n.metrics.submitSeconds, start)
	} else {
		writeError(w, status, code, msg)
	}
}

// submitHTTP checks, forwards and submits one signed request, then waits for
// its reply bundle. It writes the 200 answer itself and returns the outcome.
func (n *Node) submitHTTP(w http.ResponseWriter, r *http.Request) (code string, status int, msg string) {
	if msg := n.haltedMessage(); msg != "" {
		return "halted", http.StatusServiceUnavailable, msg
	}
	if n.admitSome(1) == 0 {
		return "busy", http.StatusTooManyRequests, noPlacesMessage
	}
	defer n.submitsInFlight.Add(-1)
	max := n.genesis.Params.RequestBytesMax
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		max = jsonBodyBytesMax
	}
	body, code, status, msg := readBody(w, r, max)
	if status != 0 {
		return code, status, msg
	}
	raw := body
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var env struct {
			RequestB64 string `json:"request_b64"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			return "malformed", http.StatusBadRequest, "JSON envelope: " + err.Error()
		}
		var err error
		if raw, err = base64.StdEncoding.DecodeString(env.RequestB64); err != nil {
			return "malformed", http.StatusBadRequest, "request_b64: " + err.Error()
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), replyTimeout)
	defer cancel()
	b, code, status, msg := n.submitRequest(ctx, raw)
	if status != http.StatusOK {
		return code, status, msg
	}
	return writeBundle(w, r, b)
}

// noPlacesMessage explains a submit refused because submitsInFlightMax
// requests wait for their replies here already.
var noPlacesMessage = fmt.Sprintf("%d requests already waiting for replies here; retry later or elsewhere", submitsInFlightMax)

// haltedMessage is why this replica takes no submits, or "" if it does.
func (n *Node) haltedMessage() string {
	if why := n.halted.Load(); why != nil {
		return "this replica has stopped voting: " + *why
	}
	return ""
}

// admitSome reserves up to k of the submitsInFlightMax places and returns how
// many it got; the caller gives them back.
func (n *Node) admitSome(k int) int {
	for {
		cur := n.submitsInFlight.Load()
		take := min(int64(k), submitsInFlightMax-cur)
		if take <= 0 {
			return 0
		}
		if n.submitsInFlight.CompareAndSwap(cur, cur+take) {
			return int(take)
		}
	}
}

// readBody reads a request body of at most max bytes, or says why not (a
// zero status means read).
func readBody(w http.ResponseWriter, r *http.Request, max int) (body []byte, code string, status int, msg string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("request body above %d bytes", max)
	}
	if err != nil {
		return nil, "malformed", http.StatusBadRequest, "reading body: " + err.Error()
	}
	return body, "", 0, ""
}

// submitRequest checks one signed request, forwards it to the primary, hands
// it to the replica and waits, until ctx ends, for its reply bundle. It
// returns the bundle with status 200, or the outcome's code, status and
// message.
func (n *Node) submitRequest(ctx context.Context, raw []byte) (b *pbft.ReplyBundle, code string, status int, msg string) {
	if len(raw) > n.genesis.Params.RequestBytesMax {
		return nil, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("request of %d bytes above request_bytes_max %d", len(raw), n.genesis.Params.RequestBytesMax)
	}
	sr, req, err := pbft.DecodeRequest(raw)
	if err != nil {
		return nil, "malformed", http.StatusBadRequest, err.Error()
	}
	if !n.admits(req.Client) {
		return nil, "not_admitted", http.StatusForbidden, fmt.Sprintf("client %v is not admitted (not on the genesis allowlist, or not a usable Ed25519 key)", req.Client)
	}
	h := crypto.Hash(raw)
	if !n.verified.has(h) {
		ok, err := n.checkSubmit(ctx, req.Client, sr.Body, sr.Sig)
		switch {
		case errors.Is(err, errStopping):
			return nil, "stopping", http.StatusServiceUnavailable, "the node is stopping"
		case err != nil:
			return nil, "busy", http.StatusTooManyRequests, "no signature check in time: the node is overloaded"
		case !ok:
			return nil, "bad_signature", http.StatusUnauthorized, "request signature does not verify for this chain"
		}
		n.verified.add(h)
	}
	wt := n.replies.register(h)
	defer n.replies.cancel(wt)
	select {
	case b := <-wt.ch:
		// A retry of a request executed here: nothing to forward.
		return b, "", http.StatusOK, ""
	default:
	}
	frame := frameOf(tagRequest, raw)
	if p := n.status.Load().Primary; p != n.self {
		n.host.Send(p, frame)
		n.metrics.forwards.WithLabelValues("primary").Inc()
	}
	done := make(chan error, 1)
	select {
	case n.submitCh <- submission{raw: raw, done: done}:
	case <-ctx.Done():
		return nil, "busy", http.StatusTooManyRequests, "the node's submit queue is full"
	}
	select {
	case err := <-done:
		switch {
		case errors.Is(err, pbft.ErrPendingFull):
			return nil, "busy", http.StatusTooManyRequests, err.Error()
		case errors.Is(err, pbft.ErrRequestTooLarge):
			return nil, "too_large", http.StatusRequestEntityTooLarge, err.Error()
		case err != nil:
			return nil, "rejected", http.StatusBadRequest, err.Error()
		}
	case <-ctx.Done():
		return nil, "timeout", http.StatusServiceUnavailable, "the node did not accept the request in time"
	}
	everyone := time.NewTimer(n.forwardAllAfter())
	defer everyone.Stop()
	for {
		select {
		case <-everyone.C:
			// Not ordered yet: now every replica's request timer runs, so a
			// primary that drops requests is voted out.
			n.host.Broadcast(frame)
			n.metrics.forwards.WithLabelValues("all").Inc()
		case b := <-wt.ch:
			return b, "", http.StatusOK, ""
		case <-ctx.Done():
			return nil, "timeout", http.StatusServiceUnavailable, fmt.Sprintf("no reply from f+1 replicas within %v; the request may still commit, retry it unchanged", replyTimeout)
		}
	}
}

// forwardAllAfter is how long a submitted request goes only to the primary of
// this replica's view (the one that orders it; the others see it in the
// PRE-PREPARE) before it goes to every replica: a quarter of the view-change
// timeout, at most forwardAllAfterMax. Sending it to everyone at once cost
// each replica a frame, a decode and a pending-queue entry per request.
func (n *Node) forwardAllAfter() time.Duration {
	return min(time.Duration(n.genesis.Params.ViewChangeTimeoutMs)*time.Millisecond/4, forwardAllAfterMax)
}

// Media types of a submit's answer.
const (
	mediaJSON = "application/json"
	mediaCBOR = "application/cbor"
)

// acceptsCBOR reports whether the request's Accept header lists
// application/cbor with a quality above zero. The Go client asks for it; curl
// and clients of older builds do not, and get JSON.
func acceptsCBOR(r *http.Request) bool {
	for _, field := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(field, ",") {
			mt, params, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), mediaCBOR) && !qualityZero(params) {
				return true
			}
		}
	}
	return false
}

// qualityZero reports whether the parameters of one media range of an Accept
// header (what follows its first ';') refuse it: q=0, or a q that does not
// parse.
func qualityZero(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err != nil || q <= 0
		}
	}
	return false
}

// bundleResult decodes the result in one of our own bundles.
func bundleResult(b *pbft.ReplyBundle) ledger.Result {
	var res ledger.Result
	if err := codec.Unmarshal(b.Result, &res); err != nil {
		panic("node: our own result does not decode: " + err.Error())
	}
	return res
}

// bundleCBOR returns a bundle's canonical CBOR and its result's code.
func bundleCBOR(b *pbft.ReplyBundle) (code string, body []byte) {
	res := bundleResult(b)
	return res.Code, codec.MustMarshal(b)
}

// writeBundle writes the 200 answer for a request's reply bundle: the
// canonical CBOR of b if the client asked for it, otherwise JSON with the
// result also rendered for humans.
func writeBundle(w http.ResponseWriter, r *http.Request, b *pbft.ReplyBundle) (code string, status int, msg string) {
	if acceptsCBOR(r) {
		code, body := bundleCBOR(b)
		w.Header().Set("Content-Type", mediaCBOR)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		return code, http.StatusOK, ""
	}
	res := bundleResult(b)
	out := bundleJSON{
		EntrySeq: b.EntrySeq, Result: resultJSON(&res), ResultB64: base64.StdEncoding.EncodeToString(b.Result),
		ResultIndex: b.ResultIndex, ResultCount: b.ResultCount, Proof: make([]string, len(b.Proof)), Executed: make([]string, len(b.Executed)),
	}
	for i, p := range b.Proof {
		out.Proof[i] = p.String()
	}
	for i, e := range b.Executed {
		out.Executed[i] = base64.StdEncoding.EncodeToString(e)
	}
	writeJSON(w, http.StatusOK, out)
	return res.Code, http.StatusOK, ""
}

// StatusJSON is the answer of GET /v1/status.
type StatusJSON struct {
	Node             string            `json:"node"`
	Index            uint32            `json:"index"`
	PeerID           string            `json:"peer_id"`
	View             uint64            `json:"view"`
	Primary          uint32            `json:"primary"`
	CommittedSeq     uint64            `json:"committed_seq"`
	ExecutedSeq      uint64            `json:"executed_seq"`
	StableCheckpoint uint64            `json:"stable_checkpoint"`
	PeersConnected   int               `json:"peers_connected"`
	Evidence         []EvidenceJSON    `json:"evidence"`
	Equivocations    uint64            `json:"equivocations"`
	ViewChanges      uint64            `json:"view_changes"`
	Projections      map[string]uint64 `json:"projections"`
	ChainID          string            `json:"chain_id"`
	GenesisHash      string            `json:"genesis_hash"`
	LastPosition     uint64            `json:"last_position"`
	HeadHash         string            `json:"head_hash"`
	PendingRequests  int               `json:"pending_requests"`
	Halted           string            `json:"halted,omitempty"`
}

func (n *Node) statusJSON() StatusJSON {
	st := n.status.Load()
	applied, head := n.store.Applied()
	committed := st.Committed
	if committed < applied {
		committed = applied
	}
	evidence := make([]EvidenceJSON, len(st.Evidence))
	for i, e := range st.Evidence {
		evidence[i] = EvidenceJSON{
			Replica: e.Replica, Name: n.genesis.Validators[e.Replica].Name, Kind: e.Kind.String(), View: e.View, Seq: e.Seq,
			FirstB64: base64.StdEncoding.EncodeToString(codec.MustMarshal(&e.First)), SecondB64: base64.StdEncoding.EncodeToString(codec.MustMarshal(&e.Second)),
		}
	}
	out := StatusJSON{
		Node: n.genesis.Validators[n.self].Name, Index: n.self, PeerID: n.host.PeerID(),
		View: st.View, Primary: st.Primary, CommittedSeq: committed, ExecutedSeq: applied,
		StableCheckpoint: st.StableCheckpoint, Equivocations: st.Equivocations, ViewChanges: st.ViewChanges,
		PeersConnected: n.host.Connected(), Evidence: evidence, Projections: n.views.Positions(),
		ChainID: n.genesis.ChainID, GenesisHash: n.chain.String(), LastPosition: n.store.LastPosition(),
		HeadHash: head.String(), PendingRequests: st.Pending,
	}
	if why := n.halted.Load(); why != nil {
		out.Halted = *why
	}
	return out
}

// EvidenceJSON is proof that a validator signed two conflicting messages: both
// envelopes verify against its key, so anyone can check it.
type EvidenceJSON struct {
	Replica   uint32 `json:"replica"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	View      uint64 `json:"view"`
	Seq       uint64 `json:"seq"`
	FirstB64  string `json:"first_b64"`
	SecondB64 string `json:"second_b64"`
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.statusJSON())
}

func (n *Node) handleGenesis(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.genesis)
}

type eventPage struct {
	Events []cqrs.EventJSON `json:"events"`
	Next   uint64           `json:"next"`
}

func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("query parameter %s=%q is not a non-negative integer", name, s)
	}
	return v, nil
}

func readLimit(r *http.Request) (int, error) {
	l, err := queryUint(r, "limit", readLimitDefault)
	if err != nil {
		return 0, err
	}
	if l == 0 || l > readLimitMax {
		return 0, fmt.Errorf("limit=%d outside 1..%d", l, readLimitMax)
	}
	return int(l), nil
}

// pageFrom1 reads from (counting from 1; 0 means 1) and limit of a paged read.
func pageFrom1(r *http.Request) (uint64, int, error) {
	from, err := queryUint(r, "from", 1)
	if err != nil {
		return 0, 0, err
	}
	limit, err := readLimit(r)
	return max(from, 1), limit, err
}

func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) {
	from, limit, err := pageFrom1(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	waitMs, err := queryUint(r, "wait_ms", 0)
	if err != nil || waitMs > waitMsMax {
		writeError(w, http.StatusBadRequest, "malformed", fmt.Sprintf("wait_ms must be an integer in 0..%d", waitMsMax))
		return
	}
	if waitMs > 0 && n.store.LastPosition() < from {
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(waitMs)*time.Millisecond)
		n.store.Wait(ctx, from)
		cancel()
	}
	evs, next, err := n.store.ReadAll(from, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeEvents(w, evs, next)
}

func writeEvents(w http.ResponseWriter, evs []eventlog.Event, next uint64) {
	page := eventPage{Events: make([]cqrs.EventJSON, len(evs)), Next: next}
	for i := range evs {
		page.Events[i] = cqrs.NewEventJSON(&evs[i])
	}
	writeJSON(w, http.StatusOK, page)
}

func (n *Node) handleStream(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if !ledger.ValidName(stream) {
		writeError(w, http.StatusBadRequest, "malformed", fmt.Sprintf("stream name %q: 1-128 bytes of [A-Za-z0-9._:@-]", stream))
		return
	}
	backwards := r.URL.Query().Get("backwards") == "true"
	def := uint64(0)
	if backwards {
		def = ^uint64(0)
	}
	from, err := queryUint(r, "from", def)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	limit, err := readLimit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	evs, next, err := n.store.ReadStream(stream, from, limit, backwards)
	if errors.Is(err, eventlog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "stream_not_found", fmt.Sprintf("stream %q has no events", stream))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeEvents(w, evs, next)
}

// EntryJSON is a committed entry as the API shows it.
type EntryJSON struct {
	Seq            uint64   `json:"seq"`
	View           uint64   `json:"view"`
	Timestamp      int64    `json:"timestamp"`
	Digest         string   `json:"digest"`
	PrevHash       string   `json:"prev_hash"`
	Hash           string   `json:"hash"`
	ResultsRoot    string   `json:"results_root"`
	FirstPosition  uint64   `json:"first_position"`
	EventCount     uint64   `json:"event_count"`
	RequestsB64    []string `json:"requests_b64"`
	ResultsB64     []string `json:"results_b64"`
	CertificateB64 string   `json:"certificate_b64"`
}

func entryJSON(e *eventlog.Entry) EntryJSON {
	out := EntryJSON{
		Seq: e.Seq, View: e.View, Timestamp: e.Timestamp, Digest: e.Digest.String(), PrevHash: e.PrevHash.String(),
		Hash: e.Hash.String(), ResultsRoot: e.ResultsRoot.String(), FirstPosition: e.FirstPosition, EventCount: e.EventCount,
		RequestsB64: make([]string, len(e.Requests)), ResultsB64: make([]string, len(e.Results)),
		CertificateB64: base64.StdEncoding.EncodeToString(e.Certificate),
	}
	for i, b := range e.Requests {
		out.RequestsB64[i] = base64.StdEncoding.EncodeToString(b)
	}
	for i, b := range e.Results {
		out.ResultsB64[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

func (n *Node) handleEntry(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", fmt.Sprintf("entry seq %q is not a positive integer", r.PathValue("seq")))
		return
	}
	e, err := n.store.Entry(seq)
	if errors.Is(err, eventlog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no committed entry %d", seq))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, entryJSON(e))
}

func (n *Node) handleEntries(w http.ResponseWriter, r *http.Request) {
	from, limit, err := pageFrom1(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	es, err := n.store.Entries(from, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	out := struct {
		Entries []EntryJSON `json:"entries"`
		Next    uint64      `json:"next"`
	}{Entries: make([]EntryJSON, len(es)), Next: from}
	for i, e := range es {
		out.Entries[i] = entryJSON(e)
		out.Next = e.Seq + 1
	}
	writeJSON(w, http.StatusOK, out)
}
