package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/client"
)

// Read bounds.
const (
	// readLimitDefault is how many events read prints without --limit.
	readLimitDefault = 100
	// readPageMax is the largest page the node serves; longer reads page.
	readPageMax = 1000
	// followWaitMs is the long poll of --follow: long enough to be cheap,
	// below the node's 30 s bound.
	followWaitMs = 25000
)

func readCommand() *cli.Command {
	return &cli.Command{
		Name:  "read",
		Usage: "print events of one stream or of the whole log ($all), one JSON object per line",
		Description: "--stream S reads stream S from version --from (default 0, or its last event with --backwards);\n" +
			"--all reads the whole log from position --from. --follow keeps printing new events as they\n" +
			"commit, until interrupted.",
		Flags: []cli.Flag{
			nodeFlag(), timeoutFlag(),
			&cli.StringFlag{Name: "stream", Usage: "the stream to read"},
			&cli.BoolFlag{Name: "all", Usage: "read the whole log ($all)"},
			&cli.Uint64Flag{Name: "from", Usage: "first stream version (--stream) or log position (--all) to read"},
			&cli.BoolFlag{Name: "backwards", Usage: "read the stream from newest to oldest"},
			&cli.IntFlag{Name: "limit", Usage: "at most this many events (with --follow: per page)", Value: readLimitDefault},
			&cli.BoolFlag{Name: "follow", Usage: "keep printing new events until interrupted"},
		},
		Action: readEvents,
	}
}

func readEvents(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	stream := c.String("stream")
	all := c.Bool("all")
	switch {
	case all == (stream != ""):
		return errors.New("give exactly one of --stream S and --all (see 'ordo read --help')")
	case all && c.Bool("backwards"):
		return errors.New("--backwards reads one stream; it does not apply to --all")
	case c.Bool("follow") && c.Bool("backwards"):
		return errors.New("--follow reads forwards; it does not go with --backwards")
	case c.Int("limit") < 1:
		return fmt.Errorf("--limit %d: want at least 1", c.Int("limit"))
	}
	cl, err := readClient(c)
	if err != nil {
		return err
	}
	r := &reader{cl: cl, out: c.App.Writer, limit: c.Int("limit")}
	ctx := c.Context
	switch {
	case all && c.Bool("follow"):
		err = r.followAll(ctx, c.Uint64("from"))
	case all:
		_, err = r.all(ctx, c.Uint64("from"))
	case c.Bool("follow"):
		err = r.followStream(ctx, stream, c.Uint64("from"))
	case c.Bool("backwards"):
		from := uint64(client.FromEnd)
		if c.IsSet("from") {
			from = c.Uint64("from")
		}
		err = r.backwards(ctx, stream, from)
	default:
		_, err = r.stream(ctx, stream, c.Uint64("from"))
	}
	if err != nil && isInterrupted(ctx, err) {
		return nil
	}
	return err
}

// reader prints events as the node renders them, one per line.
type reader struct {
	cl    *client.Client
	out   io.Writer
	limit int
}

func (r *reader) print(e client.Event) error {
	b, err := e.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding event %d: %w", e.Position, err)
	}
	return printRawJSON(r.out, b)
}

// all prints up to r.limit events of $all from position from and returns the
// position after the last one printed.
func (r *reader) all(ctx context.Context, from uint64) (uint64, error) {
	return r.forwards(from, func(from uint64, n int) (*client.EventPage, error) {
		return r.cl.ReadAll(ctx, from, n, 0)
	}, func(e client.Event) uint64 { return e.Position + 1 })
}

// stream prints up to r.limit events of stream from version from and returns
// the version after the last one printed.
func (r *reader) stream(ctx context.Context, stream string, from uint64) (uint64, error) {
	return r.forwards(from, func(from uint64, n int) (*client.EventPage, error) {
		return r.cl.ReadStream(ctx, stream, from, n, false)
	}, func(e client.Event) uint64 { return e.Version + 1 })
}

// forwards prints up to r.limit events, a page at a time, and returns the
// cursor after the last one printed (next says what that is for an event).
func (r *reader) forwards(from uint64, page func(from uint64, n int) (*client.EventPage, error), next func(client.Event) uint64) (uint64, error) {
	for left := r.limit; left > 0; {
		p, err := page(from, min(left, readPageMax))
		if err != nil {
			return from, err
		}
		if len(p.Events) == 0 {
			break
		}
		for _, e := range p.Events {
			if err := r.print(e); err != nil {
				return from, err
			}
			from = next(e)
		}
		left -= len(p.Events)
	}
	return from, nil
}

// backwards prints up to r.limit events of stream, newest first, from
// version from (client.FromEnd: its last event).
func (r *reader) backwards(ctx context.Context, stream string, from uint64) error {
	for left := r.limit; left > 0; {
		p, err := r.cl.ReadStream(ctx, stream, from, min(left, readPageMax), true)
		if err != nil {
			return err
		}
		if len(p.Events) == 0 {
			return nil
		}
		for _, e := range p.Events {
			if err := r.print(e); err != nil {
				return err
			}
			if e.Version == 0 {
				return nil
			}
			from = e.Version - 1
		}
		left -= len(p.Events)
	}
	return nil
}

// followAll prints $all from position from and then every new event, using
// the node's long poll, until ctx ends.
func (r *reader) followAll(ctx context.Context, from uint64) error {
	for {
		p, err := r.cl.ReadAll(ctx, from, min(r.limit, readPageMax), followWaitMs)
		if err != nil {
			return err
		}
		for _, e := range p.Events {
			if e.Position < from {
				continue
			}
			if err := r.print(e); err != nil {
				return err
			}
			from = e.Position + 1
		}
	}
}

// followStream prints stream from version from and then its new events until
// ctx ends. It notes the log's last position first, catches up on the stream,
// then long-polls $all after that position and prints the stream's events
// from it: an event committed after the note is seen by the poll, one
// committed before it by the catch-up, and versions already printed are
// skipped, so nothing is missed or printed twice.
func (r *reader) followStream(ctx context.Context, stream string, from uint64) error {
	st, err := r.cl.Status(ctx)
	if err != nil {
		return err
	}
	pos := st.LastPosition + 1
	for {
		next, err := r.stream(ctx, stream, from)
		if isStreamNotFound(err) {
			// Not created yet: its first event will come through the poll.
			next, err = from, nil
		}
		if err != nil {
			return err
		}
		caughtUp := next == from
		from = next
		if caughtUp {
			break
		}
	}
	for {
		p, err := r.cl.ReadAll(ctx, pos, readPageMax, followWaitMs)
		if err != nil {
			return err
		}
		for _, e := range p.Events {
			if e.Position < pos {
				continue
			}
			pos = e.Position + 1
			if e.Stream != stream || e.Version < from {
				continue
			}
			if e.Version > from {
				return fmt.Errorf("stream %q: the log skipped from version %d to %d", stream, from, e.Version)
			}
			if err := r.print(e); err != nil {
				return err
			}
			from = e.Version + 1
		}
	}
}

// isStreamNotFound reports the node's answer for a stream with no events.
func isStreamNotFound(err error) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
}
