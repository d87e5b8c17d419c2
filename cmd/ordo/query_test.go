package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeProjections serves a tiny projection API and records the queries.
func fakeProjections(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/projections/streams/{key}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI())
		mu.Unlock()
		if r.PathValue("key") != "s1" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"row not found","code":"not_found"}`)
			return
		}
		fmt.Fprint(w, `{"stream":"s1","version":2,"events":3,"position":9}`)
	})
	mux.HandleFunc("GET /v1/projections/streams", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI())
		mu.Unlock()
		if r.URL.Query().Get("cursor") == "" {
			fmt.Fprint(w, `{"rows":[{"stream":"s1"},{"stream":"s2"}],"next":"c1","position":9}`)
			return
		}
		fmt.Fprint(w, `{"rows":[{"stream":"s3"}],"next":"","position":9}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestQuery(t *testing.T) {
	srv, seen := fakeProjections(t)

	// Flags after the arguments, as INTERFACE.md writes them.
	out := mustOrdo(t, "query", "--node", srv.URL, "streams", "s1", "--min-position", "7")
	if !strings.Contains(out, `"version":2`) || !strings.Contains(out, `"position":9`) {
		t.Fatalf("row: %s", out)
	}
	if got := seen(); len(got) != 1 || !strings.Contains(got[0], "min_position=7") {
		t.Fatalf("queries %v, want one with min_position=7", got)
	}

	// Listing follows the cursor across pages, one row per line.
	out = mustOrdo(t, "query", "--node", srv.URL, "streams", "--prefix=s")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "s3") {
		t.Fatalf("list: %q", out)
	}
	out = mustOrdo(t, "query", "--node", srv.URL, "streams", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 {
		t.Fatalf("limit 1: %q", out)
	}

	failOrdo(t, "not_found", "query", "--node", srv.URL, "streams", "nope")
	failOrdo(t, "want PROJECTION [KEY]", "query", "--node", srv.URL)
	failOrdo(t, "not both", "query", "--node", srv.URL, "streams", "s1", "--prefix", "s")
	failOrdo(t, "needs a value", "query", "--node", srv.URL, "streams", "s1", "--min-position")
}
