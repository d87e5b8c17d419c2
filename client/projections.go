package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// projectionWaitSlack is added to the attempt timeout of a read that asks the
// node to wait for a position: the node waits up to 5 s before answering.
const projectionWaitSlack = 6 * time.Second

// RowPage is one page of a projection's rows.
type RowPage struct {
	Rows     []json.RawMessage `json:"rows"`
	Next     string            `json:"next"`
	Position uint64            `json:"position"`
}

// ProjectionList is GET /v1/projections: the raw body and its entries.
type ProjectionList struct {
	Projections []ProjectionStatus `json:"projections"`
	Raw         json.RawMessage    `json:"-"`
}

// ProjectionStatus is one projection's state as the node reports it.
type ProjectionStatus struct {
	Name           string  `json:"name"`
	Version        int64   `json:"version"`
	Position       uint64  `json:"position"`
	LagPositions   uint64  `json:"lag_positions"`
	LagMs          int64   `json:"lag_ms"`
	Status         string  `json:"status"`
	Rebuilding     bool    `json:"rebuilding"`
	RebuildPercent float64 `json:"rebuild_percent"`
	Error          string  `json:"error"`
}

// ProjectionRow reads one row of a projection, with its "position". With
// minPosition > 0 the node first waits (up to 5 s) until the projection has
// applied that position: read-your-writes from any honest node.
func (c *Client) ProjectionRow(ctx context.Context, name, key string, minPosition uint64) (json.RawMessage, error) {
	path := "/v1/projections/" + url.PathEscape(name) + "/" + url.PathEscape(key)
	if minPosition > 0 {
		path += "?min_position=" + strconv.FormatUint(minPosition, 10)
	}
	var row json.RawMessage
	if err := c.getJSON(ctx, "projection "+name, path, c.timeout+projectionWaitSlack, &row); err != nil {
		return nil, err
	}
	return row, nil
}

// ProjectionRows reads one page of rows whose keys start with prefix, after
// cursor ("" for the first page).
func (c *Client) ProjectionRows(ctx context.Context, name, prefix string, limit int, cursor string, minPosition uint64) (*RowPage, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if minPosition > 0 {
		q.Set("min_position", strconv.FormatUint(minPosition, 10))
	}
	var p RowPage
	if err := c.getJSON(ctx, "projection "+name, "/v1/projections/"+url.PathEscape(name)+"?"+q.Encode(), c.timeout+projectionWaitSlack, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Projections lists the node's projections with versions, positions and lag.
func (c *Client) Projections(ctx context.Context) (*ProjectionList, error) {
	var raw json.RawMessage
	if err := c.getJSON(ctx, "projections", "/v1/projections", c.timeout, &raw); err != nil {
		return nil, err
	}
	l := &ProjectionList{Raw: raw}
	if err := json.Unmarshal(raw, l); err != nil {
		return nil, fmt.Errorf("projections: malformed answer: %w", err)
	}
	return l, nil
}

// RebuildProjection asks the first node that answers to rebuild a projection
// from position 0 in the background.
func (c *Client) RebuildProjection(ctx context.Context, name string) error {
	return c.failover(ctx, "rebuild "+name, func(ctx context.Context, node string) error {
		body, status, err := c.do(ctx, node, http.MethodPost, "/v1/projections/"+url.PathEscape(name)+"/rebuild", []byte{}, readBytesMax)
		if err != nil {
			return err
		}
		if status != http.StatusAccepted && status != http.StatusOK {
			return answerError(node, status, body)
		}
		return nil
	})
}
