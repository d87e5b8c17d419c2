package node

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// genesisBytesMax bounds how much of a genesis file is read.
const genesisBytesMax = 1 << 20

// Client admission modes.
const (
	AdmissionOpen      = "open"
	AdmissionAllowlist = "allowlist"
)

// Validator is one replica in genesis order: its index is its position.
type Validator struct {
	Name      string           `json:"name" cbor:"1,keyasint"`
	PublicKey crypto.PublicKey `json:"public_key" cbor:"2,keyasint"`
	P2PAddrs  []string         `json:"p2p_addrs" cbor:"3,keyasint"`
}

// Params are the protocol parameters every replica must agree on.
type Params struct {
	BatchRequestsMax    int    `json:"batch_requests_max" cbor:"1,keyasint"`
	BatchBytesMax       int    `json:"batch_bytes_max" cbor:"2,keyasint"`
	BatchDelayMs        int    `json:"batch_delay_ms" cbor:"3,keyasint"`
	CheckpointInterval  uint64 `json:"checkpoint_interval" cbor:"4,keyasint"`
	WindowSeqs          uint64 `json:"window_seqs" cbor:"5,keyasint"`
	ViewChangeTimeoutMs int    `json:"view_change_timeout_ms" cbor:"6,keyasint"`
	RequestBytesMax     int    `json:"request_bytes_max" cbor:"7,keyasint"`
	ClockSkewMaxMs      int    `json:"clock_skew_max_ms" cbor:"8,keyasint"`
}

// DefaultParams are the parameters `ordo genesis` writes.
func DefaultParams() Params {
	return Params{
		BatchRequestsMax:    2048,
		BatchBytesMax:       2 << 20,
		BatchDelayMs:        2,
		CheckpointInterval:  128,
		WindowSeqs:          256,
		ViewChangeTimeoutMs: 2000,
		RequestBytesMax:     64 << 10,
		ClockSkewMaxMs:      2000,
	}
}

// Admission says which clients may submit requests.
type Admission struct {
	Mode    string             `json:"mode" cbor:"1,keyasint"`
	Clients []crypto.PublicKey `json:"clients,omitempty" cbor:"2,keyasint,omitempty"`
}

// Genesis fixes a chain: its ID, validators in replica order, protocol
// parameters and client admission. Its Hash is in every signature's domain.
type Genesis struct {
	ChainID    string      `json:"chain_id" cbor:"1,keyasint"`
	Validators []Validator `json:"validators" cbor:"2,keyasint"`
	Params     Params      `json:"params" cbor:"3,keyasint"`
	Admission  Admission   `json:"admission" cbor:"4,keyasint"`
}

var chainIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,64}$`)

// Validate checks the genesis for internal consistency.
func (g *Genesis) Validate() error {
	if !chainIDPattern.MatchString(g.ChainID) {
		return fmt.Errorf("genesis: chain_id %q must be 1-64 characters of [A-Za-z0-9._:@-]", g.ChainID)
	}
	n := len(g.Validators)
	if n < 1 {
		return fmt.Errorf("genesis: no validators")
	}
	if n > 256 {
		return fmt.Errorf("genesis: %d validators, at most 256", n)
	}
	seen := map[crypto.PublicKey]int{}
	for i, v := range g.Validators {
		if j, dup := seen[v.PublicKey]; dup {
			return fmt.Errorf("genesis: validators %d and %d share public key %v", j, i, v.PublicKey)
		}
		seen[v.PublicKey] = i
		if v.PublicKey.Weak() {
			return fmt.Errorf("genesis: validator %d's public key %v is not a usable Ed25519 key (small order or off the curve)", i, v.PublicKey)
		}
		if v.Name == "" {
			return fmt.Errorf("genesis: validator %d has no name", i)
		}
	}
	p := g.Params
	switch {
	case p.BatchRequestsMax < 1 || p.BatchRequestsMax > ledger.RequestsPerBatchMax:
		return fmt.Errorf("genesis: batch_requests_max %d outside 1..%d", p.BatchRequestsMax, ledger.RequestsPerBatchMax)
	case p.BatchBytesMax < 1024 || p.BatchBytesMax > 8<<20:
		return fmt.Errorf("genesis: batch_bytes_max %d outside 1KiB..8MiB", p.BatchBytesMax)
	case p.BatchDelayMs < 0 || p.BatchDelayMs > 1000:
		return fmt.Errorf("genesis: batch_delay_ms %d outside 0..1000", p.BatchDelayMs)
	case p.CheckpointInterval < 1:
		return fmt.Errorf("genesis: checkpoint_interval must be at least 1")
	case p.WindowSeqs < 2*p.CheckpointInterval:
		return fmt.Errorf("genesis: window_seqs %d must be at least twice checkpoint_interval %d", p.WindowSeqs, p.CheckpointInterval)
	case p.WindowSeqs > 1<<16:
		return fmt.Errorf("genesis: window_seqs %d above 65536", p.WindowSeqs)
	case p.ViewChangeTimeoutMs < 10:
		return fmt.Errorf("genesis: view_change_timeout_ms %d below 10", p.ViewChangeTimeoutMs)
	case p.RequestBytesMax < 256 || p.RequestBytesMax > min(p.BatchBytesMax, ledger.CommandBytesMax):
		return fmt.Errorf("genesis: request_bytes_max %d outside 256..%d (and batch_bytes_max)", p.RequestBytesMax, ledger.CommandBytesMax)
	case p.ClockSkewMaxMs < 1:
		return fmt.Errorf("genesis: clock_skew_max_ms must be positive")
	}
	switch g.Admission.Mode {
	case AdmissionOpen:
	case AdmissionAllowlist:
		if len(g.Admission.Clients) == 0 {
			return fmt.Errorf("genesis: admission allowlist is empty")
		}
		for i, k := range g.Admission.Clients {
			if k.Weak() {
				return fmt.Errorf("genesis: allowlisted client %d's key %v is not a usable Ed25519 key", i, k)
			}
		}
	default:
		return fmt.Errorf("genesis: admission mode %q, want %q or %q", g.Admission.Mode, AdmissionOpen, AdmissionAllowlist)
	}
	return nil
}

// Hash is the chain identity: SHA-256 of the genesis' canonical CBOR encoding,
// so JSON formatting of the file does not change it.
func (g *Genesis) Hash() crypto.Digest {
	return crypto.Hash(codec.MustMarshal(g))
}

// Keys returns the validators' public keys in replica order.
func (g *Genesis) Keys() []crypto.PublicKey {
	keys := make([]crypto.PublicKey, len(g.Validators))
	for i, v := range g.Validators {
		keys[i] = v.PublicKey
	}
	return keys
}

// F returns the number of faulty validators tolerated.
func (g *Genesis) F() int { return pbft.MaxFaulty(len(g.Validators)) }

// Admits reports whether the client key may submit requests. Callers on a hot
// path also refuse weak keys (see Node.admits).
func (g *Genesis) Admits(k crypto.PublicKey) bool {
	if g.Admission.Mode == AdmissionOpen {
		return true
	}
	for _, c := range g.Admission.Clients {
		if c == k {
			return true
		}
	}
	return false
}

// LoadGenesis reads and validates a genesis file.
func LoadGenesis(path string) (*Genesis, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load genesis: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(&limitedReader{r: f, left: genesisBytesMax})
	dec.DisallowUnknownFields()
	var g Genesis
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	return &g, nil
}

// WriteGenesis writes g as indented JSON, refusing to overwrite a file.
func WriteGenesis(path string, g *Genesis) error {
	if err := g.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return fmt.Errorf("write genesis: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write genesis: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write genesis %s: %w", path, err)
	}
	return f.Close()
}

type limitedReader struct {
	r    *os.File
	left int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, fmt.Errorf("file larger than %d bytes", genesisBytesMax)
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= n
	return n, err
}
