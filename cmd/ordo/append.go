package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/ledger"
)

func appendCommand() *cli.Command {
	return &cli.Command{
		Name:  "append",
		Usage: "append one JSON event to a stream and wait for f+1 validators to vouch for the result",
		Description: "Prints {\"positions\":[…],\"stream_version\":V,\"entry_seq\":S,\"replies\":K}. A result other than\n" +
			"ok (wrong_expected_version, id_reused, …) exits 1 with the code on stderr. Appending again with\n" +
			"the same --id and content is an idempotent retry: it returns the original positions.",
		Flags: []cli.Flag{
			nodeFlag(), keyFlag(), genesisFlag(), timeoutFlag(),
			&cli.StringFlag{Name: "stream", Usage: "stream name (1-128 bytes of [A-Za-z0-9._:@-])"},
			&cli.StringFlag{Name: "type", Usage: "event type"},
			&cli.StringFlag{Name: "data", Usage: "event data, a JSON value"},
			&cli.StringFlag{Name: "metadata", Usage: "event metadata, a JSON value"},
			&cli.StringFlag{Name: "id", Usage: "event id, a UUID (default: a random UUID v4)"},
			&cli.StringFlag{Name: "expected-version", Usage: "any, no_stream, exists or the stream's current version N", Value: "any"},
		},
		Action: appendEvent,
	}
}

func appendEvent(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cmd, id, err := appendFromFlags(c)
	if err != nil {
		return err
	}
	cl, err := writeClient(c)
	if err != nil {
		return err
	}
	reply, err := cl.Submit(c.Context, ledger.Command{Append: cmd})
	if err != nil {
		return err
	}
	// The result's EntrySeq is the entry holding the events, also when this
	// was a retry answered in a later entry.
	r := reply.Result
	if r.Code != ledger.CodeOK {
		msg := r.Code
		if r.Message != "" {
			msg += ": " + r.Message
		}
		return errors.New(msg)
	}
	positions := r.Positions
	if positions == nil {
		positions = []uint64{}
	}
	return printJSON(c.App.Writer, struct {
		Positions     []uint64 `json:"positions"`
		StreamVersion int64    `json:"stream_version"`
		EntrySeq      uint64   `json:"entry_seq"`
		Replies       int      `json:"replies"`
		ID            string   `json:"id"`
		Node          string   `json:"node"`
	}{positions, r.StreamVersion, r.EntrySeq, reply.Replies, id, reply.Node})
}

// appendFromFlags builds the append command and returns the event id it uses.
func appendFromFlags(c *cli.Context) (*ledger.AppendCommand, string, error) {
	stream, err := required(c, "stream")
	if err != nil {
		return nil, "", err
	}
	typ, err := required(c, "type")
	if err != nil {
		return nil, "", err
	}
	data, err := required(c, "data")
	if err != nil {
		return nil, "", err
	}
	if !json.Valid([]byte(data)) {
		return nil, "", fmt.Errorf("--data is not valid JSON: %s", quoteShort(data))
	}
	ev := ledger.EventData{Type: typ, ContentType: ledger.ContentJSON, Data: []byte(data)}
	if c.IsSet("metadata") {
		md := c.String("metadata")
		if !json.Valid([]byte(md)) {
			return nil, "", fmt.Errorf("--metadata is not valid JSON: %s", quoteShort(md))
		}
		ev.Metadata = []byte(md)
	}
	var id uuid.UUID
	if s := strings.TrimSpace(c.String("id")); s != "" {
		id, err = uuid.Parse(s)
		if err != nil {
			return nil, "", fmt.Errorf("--id %q is not a UUID", s)
		}
	} else if id, err = uuid.NewRandom(); err != nil {
		return nil, "", fmt.Errorf("making an event id: %w", err)
	}
	ev.ID = id
	expected, err := parseExpectedVersion(c.String("expected-version"))
	if err != nil {
		return nil, "", err
	}
	return &ledger.AppendCommand{Stream: stream, ExpectedVersion: expected, Events: []ledger.EventData{ev}}, id.String(), nil
}

// parseExpectedVersion maps any|no_stream|exists|N onto the ledger's sentinels.
func parseExpectedVersion(s string) (int64, error) {
	switch s = strings.TrimSpace(s); s {
	case "any", "":
		return ledger.ExpectedAny, nil
	case "no_stream":
		return ledger.ExpectedNoStream, nil
	case "exists":
		return ledger.ExpectedExists, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--expected-version %q: want any, no_stream, exists or a version ≥ 0", s)
	}
	return n, nil
}

// quotedMax bounds how much of a bad flag value an error quotes.
const quotedMax = 60

func quoteShort(s string) string {
	if len(s) > quotedMax {
		s = s[:quotedMax] + "…"
	}
	return strconv.Quote(s)
}
