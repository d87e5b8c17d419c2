package cqrs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// HTTP bounds.
const (
	// MinPositionWaitMax bounds how long a query waits for ?min_position=.
	MinPositionWaitMax = 5 * time.Second
)

// Handler serves the projection and subscription routes under their full
// paths (/v1/projections…, /v1/subscribe); the node mounts it on those
// prefixes without stripping them.
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/projections", e.handleStatus)
	mux.HandleFunc("GET /v1/projections/{name}", e.handleList)
	mux.HandleFunc("GET /v1/projections/{name}/{key...}", e.handleGet)
	mux.HandleFunc("POST /v1/projections/{name}/rebuild", e.handleRebuild)
	mux.HandleFunc("GET /v1/subscribe", e.handleSubscribe)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// Position is the projection's position, where there is one to report.
	Position *uint64 `json:"position,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent; a client that went away is all an error can mean.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// writeQueryError maps the engine's errors to statuses.
func writeQueryError(w http.ResponseWriter, err error, position *uint64) {
	switch {
	case errors.Is(err, ErrUnknownProjection):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Code: "not_found", Position: position})
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
	case errors.Is(err, errWaitTimeout):
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Code: "timeout", Position: position})
	case errors.Is(err, ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func queryUint(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: query parameter %s=%q is not a non-negative integer", ErrInvalid, name, s)
	}
	return v, nil
}

type statusPage struct {
	Projections []ProjectionStatus `json:"projections"`
}

func (e *Engine) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusPage{Projections: e.Status()})
}

// waitMin applies ?min_position=; false means it answered already.
func (e *Engine) waitMin(w http.ResponseWriter, r *http.Request, name string) bool {
	minPos, err := queryUint(r, "min_position", 0)
	if err != nil {
		writeQueryError(w, err, nil)
		return false
	}
	if minPos == 0 {
		return true
	}
	cur, err := e.WaitPosition(r.Context(), name, minPos, e.minPositionWait)
	if err != nil {
		writeQueryError(w, err, &cur)
		return false
	}
	return true
}

func (e *Engine) handleGet(w http.ResponseWriter, r *http.Request) {
	name, key := r.PathValue("name"), r.PathValue("key")
	if !e.waitMin(w, r, name) {
		return
	}
	row, pos, err := e.Get(name, key)
	if err != nil {
		writeQueryError(w, err, &pos)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	// A client that went away is all a write error can mean here.
	_, _ = w.Write(append(withPosition(row, pos), '\n'))
}

// withPosition adds "position" to a row object (rows are checked to be JSON
// objects when they are stored).
func withPosition(row []byte, pos uint64) []byte {
	end := len(row) - 1
	for end > 0 && row[end] != '}' {
		end--
	}
	body := row[:end]
	out := make([]byte, 0, len(row)+32)
	out = append(out, body...)
	if !emptyObject(body) {
		out = append(out, ',')
	}
	out = append(out, `"position":`...)
	out = strconv.AppendUint(out, pos, 10)
	return append(out, '}')
}

// emptyObject: body is "{" followed only by whitespace.
func emptyObject(body []byte) bool {
	for _, c := range body[1:] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

type listPage struct {
	Rows     []json.RawMessage `json:"rows"`
	Next     string            `json:"next"`
	Position uint64            `json:"position"`
}

func (e *Engine) handleList(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !e.waitMin(w, r, name) {
		return
	}
	limit, err := queryUint(r, "limit", ListLimitDefault)
	if err != nil {
		writeQueryError(w, err, nil)
		return
	}
	if limit == 0 || limit > ListLimitMax {
		writeQueryError(w, fmt.Errorf("%w: limit=%d outside 1..%d", ErrInvalid, limit, ListLimitMax), nil)
		return
	}
	q := r.URL.Query()
	rows, next, pos, err := e.List(name, q.Get("prefix"), int(limit), q.Get("cursor"))
	if err != nil {
		writeQueryError(w, err, nil)
		return
	}
	page := listPage{Rows: make([]json.RawMessage, len(rows)), Next: next, Position: pos}
	for i := range rows {
		page.Rows[i] = rows[i].Data
	}
	writeJSON(w, http.StatusOK, page)
}

func (e *Engine) handleRebuild(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := e.Rebuild(name); err != nil {
		writeQueryError(w, err, nil)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"projection": name, "status": StatusRebuilding})
}
