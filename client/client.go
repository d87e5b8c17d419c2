package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// Bounds of the client. Response bodies are read only up to these sizes, so a
// faulty node cannot make the client allocate without limit.
const (
	// DefaultTimeout bounds one attempt against one node. The server answers a
	// request within about 10 s or says "timeout", so 15 s leaves room.
	DefaultTimeout = 15 * time.Second
	// DefaultRequestBytesMax is the genesis default for request_bytes_max.
	DefaultRequestBytesMax = 64 << 10
	// WaitMsMax is the longest long poll the server grants.
	WaitMsMax = 30000
	// NodesMax bounds Config.Nodes.
	NodesMax = 256
	// submitRoundsMax is how many times Submit goes round the node list.
	submitRoundsMax = 3
	// batchFullResubmitsMax is how many times Submit signs a command again
	// after the ledger refused it with batch_full (the batch had no room
	// left, and nothing changed).
	batchFullResubmitsMax = 8
	// backoffInitial and backoffMax bound the pause after a busy node (429)
	// and between rounds.
	backoffInitial = 100 * time.Millisecond
	backoffMax     = 2 * time.Second
	// bundleBytesMax bounds a reply bundle: n ≤ 256 envelopes, a proof of ≤ 64
	// hashes and a result, all far below it.
	bundleBytesMax = 4 << 20
	// readBytesMax bounds a page of events or entries.
	readBytesMax = 64 << 20
	// errorBytesMax bounds an error body.
	errorBytesMax = 64 << 10
	// errorMessageMax bounds how much of a non-JSON error body is quoted.
	errorMessageMax = 200
)

// Errors that callers may test with errors.Is.
var (
	// ErrBadReply marks a reply bundle that failed verification: the node that
	// sent it is faulty (or the client's genesis is not the network's).
	ErrBadReply = errors.New("reply bundle failed verification")
	// ErrUnavailable is returned when no node gave a usable answer.
	ErrUnavailable = errors.New("no node gave a usable answer")
	// ErrNoKey is returned by Submit on a client built without a key.
	ErrNoKey = errors.New("client has no key: only reads are possible")
)

// APIError is an error answer of a node that retrying elsewhere will not fix
// (a 4xx other than 429): the request itself is refused.
type APIError struct {
	Node    string // base URL of the node that answered
	Status  int    // HTTP status
	Code    string // the server's machine-readable code, e.g. "bad_signature"
	Message string // the server's message
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = strconv.Itoa(e.Status)
	}
	return fmt.Sprintf("%s: %s (from %s)", code, e.Message, e.Node)
}

// Config configures a Client.
type Config struct {
	Nodes      []string           // base URLs, tried in turn
	Key        crypto.PrivateKey  // the client key; zero for a read-only client
	Chain      crypto.Digest      // genesis hash (node.Genesis.Hash())
	Validators []crypto.PublicKey // validator keys in genesis order
	Timeout    time.Duration      // per attempt (default DefaultTimeout)
	HTTPClient *http.Client       // default: a new http.Client
	// RequestBytesMax is the genesis request_bytes_max; a larger request is
	// refused before it is sent (default DefaultRequestBytesMax).
	RequestBytesMax int
	// Logger receives a warning for every node whose answer is refused
	// (default slog.Default()).
	Logger *slog.Logger
	// Statements, if set, is shared with other clients of the same network so
	// that each EXECUTED signature is verified once per batch, not once per
	// request (default: a cache of this client's own).
	Statements *StatementCache
	// Batcher, if set, carries Submit's requests to the nodes in exchanges
	// shared with other requests (of this client and of others using the
	// same Batcher); nil sends each in an exchange of its own.
	Batcher *Batcher
}

// Client talks to an ordo network. It is safe for concurrent use.
type Client struct {
	nodes           []string
	signer          *crypto.Signer
	bundles         *bundleChecker
	timeout         time.Duration
	requestBytesMax int
	http            *http.Client
	batcher         *Batcher
	log             *slog.Logger
	// preferred is the index of the node that last answered well; attempts
	// start there so one dead node does not cost every call a timeout.
	preferred atomic.Int64
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("client: no node URLs")
	}
	if len(cfg.Nodes) > NodesMax {
		return nil, fmt.Errorf("client: %d node URLs, at most %d", len(cfg.Nodes), NodesMax)
	}
	nodes := make([]string, len(cfg.Nodes))
	for i, n := range cfg.Nodes {
		u, err := normalizeURL(n)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		nodes[i] = u
	}
	if len(cfg.Validators) > NodesMax {
		return nil, fmt.Errorf("client: %d validators, at most %d", len(cfg.Validators), NodesMax)
	}
	statements := cfg.Statements
	if statements == nil {
		statements = NewStatementCache()
	}
	c := &Client{
		nodes:           nodes,
		bundles:         newBundleChecker(cfg.Chain, append([]crypto.PublicKey(nil), cfg.Validators...), statements),
		timeout:         cfg.Timeout,
		requestBytesMax: cfg.RequestBytesMax,
		http:            cfg.HTTPClient,
		batcher:         cfg.Batcher,
		log:             cfg.Logger,
	}
	if c.timeout < 0 {
		return nil, fmt.Errorf("client: negative timeout %v", c.timeout)
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.requestBytesMax < 0 {
		return nil, fmt.Errorf("client: negative request_bytes_max %d", c.requestBytesMax)
	}
	if c.requestBytesMax == 0 {
		c.requestBytesMax = DefaultRequestBytesMax
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if !cfg.Key.IsZero() {
		if len(cfg.Validators) == 0 {
			return nil, errors.New("client: a key is set but no validators: replies could not be verified")
		}
		c.signer = crypto.NewSigner(cfg.Key, cfg.Chain)
	}
	return c, nil
}

// normalizeURL accepts "http(s)://host:port[/]" or a bare "host:port".
func normalizeURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty node URL")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("node URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("node URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("node URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("node URL %q: must not have a query or fragment", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Nodes returns the normalized node base URLs.
func (c *Client) Nodes() []string { return append([]string(nil), c.nodes...) }

// lastSeq is the last client seq handed out in this process. Seqs come from
// the wall clock so that they keep increasing across CLI invocations with one
// key, and from this counter so that two requests in one process never share
// one, whichever Client made them.
var lastSeq atomic.Uint64

// nextSeq returns max(previous+1, now in Unix nanoseconds).
func nextSeq() uint64 {
	for {
		prev := lastSeq.Load()
		next := uint64(time.Now().UnixNano())
		if next <= prev {
			next = prev + 1
		}
		if lastSeq.CompareAndSwap(prev, next) {
			return next
		}
	}
}

// Reply is a verified answer to a request.
type Reply struct {
	// EntrySeq is the log entry whose EXECUTED statements vouch for the
	// result. For a retry of a request executed before, it is a later entry
	// than Result.EntrySeq, the one that executed the command.
	EntrySeq uint64
	Result   ledger.Result // the verified result
	Replies  int           // distinct validators whose EXECUTED statements vouch for it
	Node     string        // the node that delivered the bundle
	// Resubmits is how many times the command was refused as batch_full
	// and signed again before this result.
	Resubmits int
}

// Submit signs cmd, sends it to the nodes in turn until one returns a reply
// bundle that verifies, and returns the verified result. Every retry sends the
// same signed bytes, so the network executes the command at most once. A
// result whose Code is not ledger.CodeOK is still a successful Submit: the
// command was executed and refused by the ledger. Only ledger.CodeBatchFull,
// which changed nothing, makes Submit sign the command again under a new
// client seq, up to batchFullResubmitsMax times (Reply.Resubmits).
func (c *Client) Submit(ctx context.Context, cmd ledger.Command) (*Reply, error) {
	if c.signer == nil {
		return nil, fmt.Errorf("submit: %w", ErrNoKey)
	}
	command, err := codec.Marshal(&cmd)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	for resubmits := 0; ; resubmits++ {
		reply, err := c.submitOnce(ctx, command)
		if err != nil || reply.Result.Code != ledger.CodeBatchFull || resubmits == batchFullResubmitsMax {
			if reply != nil {
				reply.Resubmits = resubmits
			}
			return reply, err
		}
	}
}

// submitOnce signs command under a new client seq and submits it.
func (c *Client) submitOnce(ctx context.Context, command []byte) (*Reply, error) {
	req := pbft.SignRequest(c.signer, nextSeq(), command)
	if len(req) > c.requestBytesMax {
		return nil, fmt.Errorf("submit: request is %d bytes, the network accepts at most %d", len(req), c.requestBytesMax)
	}
	var reply *Reply
	err := c.failover(ctx, "submit", func(ctx context.Context, node string) error {
		a, err := c.submitExchange(ctx, node, req)
		if err != nil {
			return err
		}
		if a.status != http.StatusOK && a.status != http.StatusConflict {
			return answerError(node, a.status, a.body)
		}
		b, verr := decodeBundle(a.contentType, a.body)
		if a.status == http.StatusConflict && (verr != nil || len(b.Executed) == 0) {
			// A 409 without EXECUTED statements is the node's own refusal.
			return answerError(node, a.status, a.body)
		}
		var r *Reply
		if verr == nil {
			r, verr = c.bundles.checkBundle(b, req)
		}
		if verr != nil {
			c.log.Warn("node sent a reply bundle that fails verification; trying another node",
				"node", node, "err", verr)
			return fmt.Errorf("%s: %w", node, verr)
		}
		r.Node = node
		reply = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reply, nil
}

// submitExchange sends one signed request to node, through the Batcher if
// there is one (and the node serves batch submits), and returns the answer.
func (c *Client) submitExchange(ctx context.Context, node string, req []byte) (answer, error) {
	if c.batcher != nil {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		a, err := c.batcher.exchange(ctx, node, req)
		if !errors.Is(err, errSubmitAlone) {
			return a, err
		}
	}
	return c.exchange(ctx, c.timeout, node, http.MethodPost, "/v1/requests", acceptBundle, req, bundleBytesMax)
}

// retryableError marks an attempt failure after which another node (or a
// later round) may succeed. busy asks for a pause first.
type retryableError struct {
	err  error
	busy bool
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// failover runs attempt against the nodes in turn, starting at the preferred
// one, for up to submitRoundsMax rounds. It stops at the first success or at
// the first *APIError (a refusal no other node would reverse). Connection
// errors, 5xx, 429 and bundles that fail verification move on to the next
// node.
func (c *Client) failover(ctx context.Context, op string, attempt func(ctx context.Context, node string) error) error {
	start := int(c.preferred.Load())
	backoff := backoffInitial
	failures := make([]string, len(c.nodes))
	for round := 0; round < submitRoundsMax; round++ {
		for k := range c.nodes {
			i := (start + k) % len(c.nodes)
			node := c.nodes[i]
			err := attempt(ctx, node)
			if err == nil {
				c.preferred.Store(int64(i))
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w (last error: %v)", op, ctx.Err(), err)
			}
			if errors.Is(err, ErrBatcherClosed) {
				return fmt.Errorf("%s: %w", op, err)
			}
			var re *retryableError
			var apiErr *APIError
			if !errors.As(err, &re) && errors.As(err, &apiErr) {
				return fmt.Errorf("%s: %w", op, err)
			}
			failures[i] = err.Error()
			if re != nil && re.busy {
				if err := sleep(ctx, backoff); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				backoff = min(2*backoff, backoffMax)
			}
		}
		if round+1 < submitRoundsMax {
			if err := sleep(ctx, backoff); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
	return fmt.Errorf("%s: %w after %d rounds: %s", op, ErrUnavailable, submitRoundsMax, strings.Join(failures, "; "))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do makes one HTTP request to node with the per-attempt timeout, asking for
// JSON, and returns the body (at most bodyMax bytes) and status. Transport
// failures and 5xx/429 come back as *retryableError; other statuses are left
// to the caller.
func (c *Client) do(ctx context.Context, node, method, path string, body []byte, bodyMax int64) ([]byte, int, error) {
	a, err := c.exchange(ctx, c.timeout, node, method, path, mediaJSON, body, bodyMax)
	return a.body, a.status, err
}

// answer is a node's answer to one HTTP request.
type answer struct {
	body        []byte // at most the bound the request was made with
	status      int
	contentType string
}

// exchange is do with a timeout and an Accept header of the caller's.
func (c *Client) exchange(ctx context.Context, timeout time.Duration, node, method, path, accept string, body []byte, bodyMax int64) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, node+path, rd)
	if err != nil {
		return answer{}, fmt.Errorf("%s: %w", node, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", mediaCBOR)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, &retryableError{err: fmt.Errorf("%s: %w", node, err)}
	}
	defer resp.Body.Close()
	limit := bodyMax
	if resp.StatusCode >= 300 {
		limit = errorBytesMax
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return answer{}, &retryableError{err: fmt.Errorf("%s: reading the answer: %w", node, err)}
	}
	return classify(node, resp.StatusCode, resp.Header.Get("Content-Type"), raw, limit)
}

// classify returns one answer as it came, or a *retryableError for a 5xx, a
// 429 or a body above limit.
func classify(node string, status int, contentType string, raw []byte, limit int64) (answer, error) {
	if int64(len(raw)) > limit {
		return answer{}, &retryableError{err: fmt.Errorf("%s: answer larger than %d bytes", node, limit)}
	}
	if status >= 500 || status == http.StatusTooManyRequests {
		return answer{}, &retryableError{
			err:  answerError(node, status, raw),
			busy: status == http.StatusTooManyRequests,
		}
	}
	return answer{body: raw, status: status, contentType: contentType}, nil
}

// answerError turns a non-success answer into an error carrying the server's
// code and message.
func answerError(node string, status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	msg := ""
	if err := json.Unmarshal(body, &e); err == nil && (e.Error != "" || e.Code != "") {
		msg = e.Error
	} else {
		msg = strings.TrimSpace(string(body))
		if len(msg) > errorMessageMax {
			msg = msg[:errorMessageMax] + "…"
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
	}
	return &APIError{Node: node, Status: status, Code: e.Code, Message: msg}
}

// getJSON reads path from the nodes in turn and decodes the JSON answer into v.
func (c *Client) getJSON(ctx context.Context, op, path string, timeout time.Duration, v any) error {
	return c.failover(ctx, op, func(ctx context.Context, node string) error {
		a, err := c.exchange(ctx, timeout, node, http.MethodGet, path, mediaJSON, nil, readBytesMax)
		if err != nil {
			return err
		}
		if a.status != http.StatusOK {
			return answerError(node, a.status, a.body)
		}
		if err := json.Unmarshal(a.body, v); err != nil {
			return &retryableError{err: fmt.Errorf("%s: malformed answer: %w", node, err)}
		}
		return nil
	})
}
