package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Bounds of the projection commands.
const (
	queryPageRows       = 100
	rebuildPollInterval = 200 * time.Millisecond
	rebuildWaitMax      = 30 * time.Minute
)

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "read a projection: one row by key, or the rows under a prefix (one JSON object per line)",
		ArgsUsage: "PROJECTION [KEY]",
		Description: "Built-in projections: balances (key: account id), streams (key: stream name),\n" +
			"event-types (key: event type), plus any declared in the node's projections file.\n" +
			"--min-position P waits (up to 5 s) until the node's projection has applied P: read your own writes.",
		Flags: []cli.Flag{
			nodeFlag(),
			&cli.StringFlag{Name: "prefix", Usage: "list the rows whose keys start with this (without KEY)"},
			&cli.Uint64Flag{Name: "min-position", Usage: "wait until the projection has applied this log position"},
			&cli.IntFlag{Name: "limit", Usage: "list at most this many rows (0 = all)"},
			timeoutFlag(),
		},
		Action: runQuery,
	}
}

// queryTrailingFlags are the flags `ordo query` also accepts after its
// arguments, as in `ordo query balances A --min-position 7`.
var queryTrailingFlags = []string{"prefix", "min-position", "limit", "node"}

// trailingFlags sets flags that follow positional arguments (urfave/cli stops
// parsing at the first argument) and returns the positional arguments.
func trailingFlags(c *cli.Context, names []string) ([]string, error) {
	var args []string
	in := c.Args().Slice()
	for i := 0; i < len(in); i++ {
		a := in[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !slices.Contains(names, name) {
			args = append(args, a)
			continue
		}
		if !hasValue {
			if i+1 == len(in) {
				return nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			value = in[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, fmt.Errorf("--%s %q: %w", name, value, err)
		}
	}
	return args, nil
}

func runQuery(c *cli.Context) error {
	args, err := trailingFlags(c, queryTrailingFlags)
	if err != nil {
		return err
	}
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("want PROJECTION [KEY], got %d arguments (see 'ordo query --help')", len(args))
	}
	cl, err := readClient(c)
	if err != nil {
		return err
	}
	name := args[0]
	if len(args) == 2 {
		if c.String("prefix") != "" {
			return errors.New("give KEY or --prefix, not both")
		}
		row, err := cl.ProjectionRow(c.Context, name, args[1], c.Uint64("min-position"))
		if err != nil {
			return err
		}
		return printRawJSON(c.App.Writer, row)
	}
	limit := c.Int("limit")
	if limit < 0 {
		return fmt.Errorf("--limit %d is negative", limit)
	}
	cursor, printed := "", 0
	for {
		page, err := cl.ProjectionRows(c.Context, name, c.String("prefix"), queryPageRows, cursor, c.Uint64("min-position"))
		if err != nil {
			return err
		}
		for _, row := range page.Rows {
			if limit > 0 && printed == limit {
				return nil
			}
			if err := printRawJSON(c.App.Writer, row); err != nil {
				return err
			}
			printed++
		}
		if page.Next == "" || len(page.Rows) == 0 {
			return nil
		}
		cursor = page.Next
	}
}

func projectionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "projections",
		Usage: "list the node's projections: names, versions, positions, lag, status",
		Flags: []cli.Flag{nodeFlag(), timeoutFlag()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := readClient(c)
			if err != nil {
				return err
			}
			l, err := cl.Projections(c.Context)
			if err != nil {
				return err
			}
			return printRawJSON(c.App.Writer, l.Raw)
		},
		Subcommands: []*cli.Command{{
			Name:      "rebuild",
			Usage:     "rebuild a projection from position 0; the old rows serve until the new ones catch up",
			ArgsUsage: "NAME",
			Flags: []cli.Flag{
				nodeFlag(),
				&cli.BoolFlag{Name: "no-wait", Usage: "return once the rebuild has started"},
				timeoutFlag(),
			},
			Action: runRebuild,
		}},
	}
}

func runRebuild(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("want the projection NAME (see 'ordo projections rebuild --help')")
	}
	name := c.Args().First()
	cl, err := readClient(c)
	if err != nil {
		return err
	}
	if err := cl.RebuildProjection(c.Context, name); err != nil {
		return err
	}
	if c.Bool("no-wait") {
		return printJSON(c.App.Writer, map[string]string{"projection": name, "status": "rebuilding"})
	}
	bar := rebuildBar(c.App.ErrWriter, name)
	deadline := time.Now().Add(rebuildWaitMax)
	for {
		l, err := cl.Projections(c.Context)
		if err != nil {
			return err
		}
		var found bool
		for _, p := range l.Projections {
			if p.Name != name {
				continue
			}
			found = true
			if p.Error != "" {
				return fmt.Errorf("projection %s stopped: %s", name, p.Error)
			}
			if !p.Rebuilding {
				if bar != nil {
					bar.Finish()
				}
				return printJSON(c.App.Writer, map[string]any{"projection": name, "status": p.Status, "position": p.Position})
			}
			if bar != nil {
				bar.Set(int(p.RebuildPercent))
			}
		}
		if !found {
			return fmt.Errorf("the node has no projection %q", name)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("projection %s still rebuilding after %v; it goes on in the background", name, rebuildWaitMax)
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(rebuildPollInterval):
		}
	}
}

// rebuildBar is a progress bar on stderr when stderr is a terminal, else nil:
// scripts get clean output.
func rebuildBar(w io.Writer, name string) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions(100, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("rebuilding "+name),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
}
