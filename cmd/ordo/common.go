package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/node"
)

// Environment variables the client commands read.
const (
	envGenesis = "ORDO_GENESIS"
	envNode    = "ORDO_NODE"
	envKey     = "ORDO_KEY"
)

// genesisBytesMax bounds a genesis document fetched from a node or read
// from a file.
const genesisBytesMax = 1 << 20

// run runs the app and turns its error into one line on stderr and an exit
// code: 0 on success, 1 on any failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if err := newApp(stdout, stderr).RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "ordo: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// oneLine flattens an error message so that a failure is exactly one line.
func oneLine(err error) string {
	msg := strings.TrimSpace(err.Error())
	msg = strings.ReplaceAll(msg, "\r", "")
	return strings.ReplaceAll(msg, "\n", "; ")
}

// usageError keeps urfave/cli from dumping the usage on a bad flag: the error
// says what is wrong and where help is.
func usageError(c *cli.Context, err error, isSubcommand bool) error {
	name := "ordo"
	if isSubcommand && c.Command != nil && c.Command.Name != "" {
		name = "ordo " + c.Command.Name
	}
	return fmt.Errorf("%v (see '%s --help')", err, name)
}

func setUsageErrors(c *cli.Command) {
	c.OnUsageError = usageError
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}

// rootAction runs when no subcommand matched.
func rootAction(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("unknown command %q (see 'ordo --help')", c.Args().First())
	}
	return cli.ShowAppHelp(c)
}

// noArgs refuses stray positional arguments, which are almost always a
// mistyped flag.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("unexpected argument %q (see 'ordo %s --help')", c.Args().First(), c.Command.Name)
	}
	return nil
}

// required returns the value of a string flag that must be given. urfave/cli's
// own Required prints the whole help on a miss; this says one line.
func required(c *cli.Context, name string) (string, error) {
	v := strings.TrimSpace(c.String(name))
	if v == "" {
		return "", fmt.Errorf("--%s is required (see 'ordo %s --help')", name, c.Command.Name)
	}
	return v, nil
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	return printRawJSON(w, b)
}

// printRawJSON writes a JSON document as one compact line.
func printRawJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("output is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// Flags shared by the client commands.
func nodeFlag() *cli.StringSliceFlag {
	return &cli.StringSliceFlag{
		Name:    "node",
		Usage:   "node API base URL; repeat or comma-separate to give several, tried in turn",
		EnvVars: []string{envNode},
	}
}

func keyFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "key", Usage: "client key file (from 'ordo keygen')", EnvVars: []string{envKey}}
}

func genesisFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name: "genesis",
		Usage: "genesis file fixing the chain and validator set (default: $" + envGenesis +
			", else genesis.json beside the key file, else fetched from the node)",
	}
}

func timeoutFlag() *cli.DurationFlag {
	return &cli.DurationFlag{Name: "timeout", Usage: "bound on one attempt against one node", Value: client.DefaultTimeout}
}

// nodeURLs returns the --node URLs.
func nodeURLs(c *cli.Context) ([]string, error) {
	var urls []string
	for _, u := range c.StringSlice("node") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("--node is required (see 'ordo %s --help')", c.Command.Name)
	}
	return urls, nil
}

// warnLogger reports nodes whose answers the client refused.
func warnLogger(c *cli.Context) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// attemptTimeout is the bound on one attempt against one node: --timeout, or
// --request-timeout on the commands where --timeout means something else
// (`ordo transfer --pending --timeout D`).
func attemptTimeout(c *cli.Context) time.Duration {
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), "request-timeout") {
			return c.Duration("request-timeout")
		}
	}
	return c.Duration("timeout")
}

// readClient builds a client for reads: it needs nodes, no key and no genesis.
func readClient(c *cli.Context) (*client.Client, error) {
	urls, err := nodeURLs(c)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{Nodes: urls, Timeout: attemptTimeout(c), Logger: warnLogger(c)})
}

// writeClient builds a client that signs with --key and verifies replies
// against the genesis clientGenesis finds.
func writeClient(c *cli.Context) (*client.Client, error) {
	keyPath, err := required(c, "key")
	if err != nil {
		return nil, err
	}
	key, err := crypto.ReadKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	g, err := clientGenesis(c, keyPath)
	if err != nil {
		return nil, err
	}
	urls, err := nodeURLs(c)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{
		Nodes:           urls,
		Key:             key,
		Chain:           g.Hash(),
		Validators:      g.Keys(),
		Timeout:         attemptTimeout(c),
		RequestBytesMax: g.Params.RequestBytesMax,
		Logger:          warnLogger(c),
	})
}

// clientGenesis finds the genesis a client trusts: --genesis, else
// $ORDO_GENESIS, else genesis.json beside keyPath (if keyPath is set and the
// file exists), else the first node's /v1/genesis, with a warning that the
// validator set then rests on that node's word.
func clientGenesis(c *cli.Context, keyPath string) (*node.Genesis, error) {
	if p := c.String("genesis"); p != "" {
		return node.LoadGenesis(p)
	}
	if p := os.Getenv(envGenesis); p != "" {
		g, err := node.LoadGenesis(p)
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", envGenesis, err)
		}
		return g, nil
	}
	if keyPath != "" {
		p := filepath.Join(filepath.Dir(keyPath), "genesis.json")
		if _, err := os.Stat(p); err == nil {
			return node.LoadGenesis(p)
		}
	}
	rc, err := readClient(c)
	if err != nil {
		return nil, err
	}
	raw, err := rc.Genesis(c.Context)
	if err != nil {
		return nil, fmt.Errorf("no --genesis given and fetching it failed: %w", err)
	}
	g, err := parseGenesis(raw)
	if err != nil {
		return nil, fmt.Errorf("genesis from the node: %w", err)
	}
	fmt.Fprintf(c.App.ErrWriter, "ordo: warning: no --genesis given; trusting %s for the validator set (genesis %v)\n",
		strings.Join(rc.Nodes(), ","), g.Hash())
	return g, nil
}

// parseGenesis decodes and validates a genesis document as node.LoadGenesis
// does for files.
func parseGenesis(raw []byte) (*node.Genesis, error) {
	if len(raw) > genesisBytesMax {
		return nil, fmt.Errorf("genesis larger than %d bytes", genesisBytesMax)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var g node.Genesis
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("malformed genesis: %w", err)
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

// isInterrupted reports whether err only says the command was interrupted
// (Ctrl-C, SIGTERM), which for a long-running command is a clean stop.
func isInterrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, context.Canceled)
}
