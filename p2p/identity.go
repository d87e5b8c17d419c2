package p2p

import (
	"crypto/ed25519"
	"fmt"

	lcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ordoledger/ordo/crypto"
)

// PeerIDFromPublicKey returns the libp2p peer ID ("12D3Koo…") of the validator
// whose consensus key is pub.
func PeerIDFromPublicKey(pub crypto.PublicKey) (string, error) {
	id, err := peerIDFromPublicKey(pub)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func peerIDFromPublicKey(pub crypto.PublicKey) (peer.ID, error) {
	k, err := lcrypto.UnmarshalEd25519PublicKey(pub[:])
	if err != nil {
		return "", fmt.Errorf("libp2p public key from %s: %w", pub, err)
	}
	id, err := peer.IDFromPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("peer ID from %s: %w", pub, err)
	}
	return id, nil
}

// libp2pKey builds the libp2p identity from the consensus key's seed, so that
// both keys are one.
func libp2pKey(k crypto.PrivateKey) (lcrypto.PrivKey, error) {
	priv := ed25519.NewKeyFromSeed(k.Seed())
	lk, err := lcrypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("libp2p identity from validator key: %w", err)
	}
	return lk, nil
}
