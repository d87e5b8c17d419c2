package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/p2p"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "generate an Ed25519 key (a validator's or a client's)",
		Description: "Writes a new key to --out (mode 0600, never overwriting a file) and prints\n" +
			`{"public_key":HEX,"peer_id":ID}; peer_id is the libp2p identity a validator with this key has.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "key file to create"},
		},
		Action: keygen,
	}
}

func keygen(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	out, err := required(c, "out")
	if err != nil {
		return err
	}
	key, err := crypto.GenerateKey(nil)
	if err != nil {
		return err
	}
	peerID, err := p2p.PeerIDFromPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("deriving the peer id: %w", err)
	}
	if err := crypto.WriteKeyFile(out, key); err != nil {
		return err
	}
	return printJSON(c.App.Writer, struct {
		PublicKey crypto.PublicKey `json:"public_key"`
		PeerID    string           `json:"peer_id"`
	}{key.Public(), peerID})
}
