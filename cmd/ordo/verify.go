package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/node"
)

// verifyPageEntries is how many entries one request to a node asks for.
const verifyPageEntries = 200

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check every commit certificate, the hash chain, and replay the state from genesis",
		Description: "Reads a node's log (over HTTP with --node, or a stopped node's data with --home) and checks it\n" +
			"against the genesis alone: each entry's 2f+1 signed COMMITs, its batch digest, its link to the\n" +
			"previous entry, and its results and hash by executing every batch again. Prints\n" +
			`{"entries":N,"events":M,"head":"…","ok":true}, or names the first entry that fails and why.`,
		Flags: []cli.Flag{
			nodeFlag(),
			&cli.StringFlag{Name: "home", Usage: "a node's home directory (the node must be stopped: its data is locked while it runs)"},
			genesisFlag(),
			timeoutFlag(),
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	home := c.String("home")
	if (home == "") == (len(c.StringSlice("node")) == 0) {
		return errors.New("give exactly one of --home DIR or --node URL")
	}
	var g *node.Genesis
	var err error
	if home != "" && c.String("genesis") == "" {
		g, err = node.LoadGenesis(filepath.Join(home, "genesis.json"))
	} else {
		g, err = clientGenesis(c, "")
	}
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "ordo-verify-")
	if err != nil {
		return fmt.Errorf("scratch directory for the replay: %w", err)
	}
	defer os.RemoveAll(scratch)
	rp, err := node.NewReplayer(g, scratch)
	if err != nil {
		return err
	}
	defer rp.Close()
	if home != "" {
		err = verifyHome(home, g, rp)
	} else {
		err = verifyNode(c, rp)
	}
	if err != nil {
		return fmt.Errorf("verify failed: %w", err)
	}
	entries, events, head := rp.Summary()
	return printJSON(c.App.Writer, map[string]any{"entries": entries, "events": events, "head": head.String(), "ok": true})
}

func verifyHome(home string, g *node.Genesis, rp *node.Replayer) error {
	// Walk only reads: no executor cache, no id filter to fill.
	log, err := eventlog.Open(eventlog.Options{Dir: filepath.Join(home, "data"), Genesis: g.Hash(), NoExecutorCache: true})
	if err != nil {
		return fmt.Errorf("open %s (is the node still running?): %w", filepath.Join(home, "data"), err)
	}
	defer log.Close()
	return log.Walk(rp.Check)
}

func verifyNode(c *cli.Context, rp *node.Replayer) error {
	rc, err := readClient(c)
	if err != nil {
		return err
	}
	from := uint64(1)
	for {
		page, err := rc.Entries(c.Context, from, verifyPageEntries)
		if err != nil {
			return err
		}
		for i := range page.Entries {
			j := &page.Entries[i]
			e := &eventlog.Entry{
				Seq: j.Seq, View: j.View, Timestamp: j.Timestamp, Digest: j.Digest, Requests: j.Requests,
				Certificate: j.CertificateRaw, Results: j.Results, ResultsRoot: j.ResultsRoot,
				PrevHash: j.PrevHash, Hash: j.Hash, FirstPosition: j.FirstPosition, EventCount: j.EventCount,
			}
			if err := rp.Check(e); err != nil {
				return err
			}
		}
		if len(page.Entries) == 0 || page.Next <= from {
			return nil
		}
		from = page.Next
	}
}
