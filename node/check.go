package node

import (
	"fmt"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// checkCommitted verifies that batch was committed at seq: cert is a valid
// commit certificate for seq under the genesis validators and the batch
// hashes, with the certificate's timestamp, to the certified digest.
func checkCommitted(cert *pbft.Certificate, batch [][]byte, seq uint64, keys []crypto.PublicKey, chain crypto.Digest) error {
	if cert.Seq != seq {
		return fmt.Errorf("entry %d: certificate is for seq %d", seq, cert.Seq)
	}
	if err := pbft.VerifyCertificate(cert, keys, chain); err != nil {
		return fmt.Errorf("entry %d: %w", seq, err)
	}
	if d := pbft.BatchDigest(cert.Timestamp, batch); d != cert.Digest {
		return fmt.Errorf("entry %d: batch digest %v does not match the certified %v", seq, d, cert.Digest)
	}
	return nil
}
