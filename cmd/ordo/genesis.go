package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/multiformats/go-multiaddr"
	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/node"
)

// defaultChainID is the chain id `ordo genesis` writes unless told otherwise.
const defaultChainID = "ordo-local"

func genesisCommand() *cli.Command {
	return &cli.Command{
		Name:  "genesis",
		Usage: "write the genesis file that fixes a chain: its validators, parameters and client admission",
		Description: "Each validator and client key is given as a hex public key or as the path of a key file.\n" +
			"Validators are replicas 0..n-1 in the order given. Admission is open unless --clients is given.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "validators", Usage: "validator keys, in replica order (hex or key file paths)"},
			&cli.StringFlag{Name: "out", Usage: "genesis file to create"},
			&cli.StringFlag{Name: "chain-id", Usage: "chain id", Value: defaultChainID},
			&cli.BoolFlag{Name: "open", Usage: "admit every client key (the default)"},
			&cli.StringSliceFlag{Name: "clients", Usage: "admit only these client keys (hex or key file paths)"},
			&cli.StringSliceFlag{Name: "names", Usage: "validator names, in replica order (default node0, node1, …)"},
			&cli.StringSliceFlag{Name: "p2p-addrs", Usage: "each validator's libp2p multiaddr, in replica order"},
		},
		Action: genesis,
	}
}

func genesis(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	out, err := required(c, "out")
	if err != nil {
		return err
	}
	keys := c.StringSlice("validators")
	if len(keys) == 0 {
		return errors.New("--validators is required (see 'ordo genesis --help')")
	}
	names := c.StringSlice("names")
	if len(names) != 0 && len(names) != len(keys) {
		return fmt.Errorf("--names has %d names for %d validators", len(names), len(keys))
	}
	addrs := c.StringSlice("p2p-addrs")
	if len(addrs) != 0 && len(addrs) != len(keys) {
		return fmt.Errorf("--p2p-addrs has %d addresses for %d validators", len(addrs), len(keys))
	}
	if c.Bool("open") && c.IsSet("clients") {
		return errors.New("--open and --clients exclude each other")
	}
	g := &node.Genesis{
		ChainID:   c.String("chain-id"),
		Params:    node.DefaultParams(),
		Admission: node.Admission{Mode: node.AdmissionOpen},
	}
	for i, k := range keys {
		pub, err := publicKeyArg(k)
		if err != nil {
			return fmt.Errorf("validator %d: %w", i, err)
		}
		v := node.Validator{Name: fmt.Sprintf("node%d", i), PublicKey: pub, P2PAddrs: []string{}}
		if len(names) != 0 {
			v.Name = strings.TrimSpace(names[i])
		}
		if len(addrs) != 0 {
			a := strings.TrimSpace(addrs[i])
			if _, err := multiaddr.NewMultiaddr(a); err != nil {
				return fmt.Errorf("validator %d: p2p address %q: %w", i, a, err)
			}
			v.P2PAddrs = []string{a}
		}
		g.Validators = append(g.Validators, v)
	}
	if c.IsSet("clients") {
		g.Admission.Mode = node.AdmissionAllowlist
		for i, k := range c.StringSlice("clients") {
			pub, err := publicKeyArg(k)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			g.Admission.Clients = append(g.Admission.Clients, pub)
		}
	}
	if err := node.WriteGenesis(out, g); err != nil {
		return err
	}
	return printJSON(c.App.Writer, struct {
		ChainID     string        `json:"chain_id"`
		GenesisHash crypto.Digest `json:"genesis_hash"`
		Validators  int           `json:"validators"`
		Admission   string        `json:"admission"`
		Out         string        `json:"out"`
	}{g.ChainID, g.Hash(), len(g.Validators), g.Admission.Mode, out})
}

// publicKeyArg reads a key given as hex or as the path of a key file.
func publicKeyArg(s string) (crypto.PublicKey, error) {
	s = strings.TrimSpace(s)
	if pub, err := crypto.ParsePublicKey(s); err == nil {
		return pub, nil
	}
	if _, err := os.Stat(s); err != nil {
		return crypto.PublicKey{}, fmt.Errorf("%q is neither a hex public key nor a key file", s)
	}
	k, err := crypto.ReadKeyFile(s)
	if err != nil {
		return crypto.PublicKey{}, err
	}
	return k.Public(), nil
}
