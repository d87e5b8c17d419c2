package crypto

import (
	"sync"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// expandedKeysMax bounds the cache of expanded public keys. Each is about
// 1.5 KiB, so a full cache holds about 6 MiB.
const expandedKeysMax = 4096

// expandedKeys caches the decompressed form of the public keys seen lately.
// Decompressing a key costs a field square root, about a third of one
// verification; validators and active clients sign again and again. When the
// cache is full it is emptied (bounded, and no worse than no cache for a
// caller that rotates through more keys than it holds).
var expandedKeys = struct {
	sync.Mutex
	m map[PublicKey]*ed25519.ExpandedPublicKey
}{m: make(map[PublicKey]*ed25519.ExpandedPublicKey)}

// expand returns pub's expanded form, or nil if pub does not decode to a
// curve point (such a key verifies nothing). Only valid keys are cached.
func expand(pub PublicKey) *ed25519.ExpandedPublicKey {
	expandedKeys.Lock()
	x := expandedKeys.m[pub]
	expandedKeys.Unlock()
	if x != nil {
		return x
	}
	x, err := ed25519.NewExpandedPublicKey(pub[:])
	if err != nil {
		return nil
	}
	expandedKeys.Lock()
	if len(expandedKeys.m) >= expandedKeysMax {
		clear(expandedKeys.m)
	}
	expandedKeys.m[pub] = x
	expandedKeys.Unlock()
	return x
}
