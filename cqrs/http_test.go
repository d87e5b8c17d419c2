package cqrs

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func serve(t *testing.T, e *Engine) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// getJSON fetches a URL and decodes the JSON answer.
func getJSON(t *testing.T, method, u string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, u, ct)
	}
	return resp.StatusCode, row(t, body)
}

func TestHTTPRowsAndErrors(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	e.Start()
	l.append("a/b", ev{"T", `{}`, false})
	l.append("plain", ev{"T", `{}`, false}, ev{"U", `{}`, false})
	waitAll(t, e, l)
	srv := serve(t, e)

	code, got := getJSON(t, "GET", srv.URL+"/v1/projections/streams/plain")
	if code != 200 || got["stream"] != "plain" || got["events"] != jsonNum(2) || got["position"] != jsonNum(3) {
		t.Errorf("GET streams/plain: %d %v", code, got)
	}
	code, got = getJSON(t, "GET", srv.URL+"/v1/projections/streams/"+url.PathEscape("a/b"))
	if code != 200 || got["stream"] != "a/b" {
		t.Errorf("GET a key with a slash: %d %v", code, got)
	}
	code, got = getJSON(t, "GET", srv.URL+"/v1/projections/event-types/T")
	if code != 200 || got["count"] != jsonNum(2) || got["position"] != jsonNum(3) {
		t.Errorf("GET event-types/T: %d %v", code, got)
	}

	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/projections/streams/missing", 404, "not_found"},
		{"GET", "/v1/projections/nope/x", 404, "not_found"},
		{"GET", "/v1/projections/nope", 404, "not_found"},
		{"POST", "/v1/projections/nope/rebuild", 404, "not_found"},
		{"GET", "/v1/projections/streams?limit=0", 400, "malformed"},
		{"GET", "/v1/projections/streams?limit=1001", 400, "malformed"},
		{"GET", "/v1/projections/streams?limit=x", 400, "malformed"},
		{"GET", "/v1/projections/streams?cursor=%21%21", 400, "malformed"},
		{"GET", "/v1/projections/streams?cursor=" + encodeCursor("x")[:1], 400, "malformed"},
		{"GET", "/v1/projections/streams/plain?min_position=-1", 400, "malformed"},
		{"GET", "/v1/subscribe?from=x", 400, "malformed"},
		{"GET", "/v1/nothing", 404, "not_found"},
	} {
		code, got := getJSON(t, c.method, srv.URL+c.path)
		if code != c.status || got["code"] != c.code || got["error"] == "" {
			t.Errorf("%s %s: %d %v, want %d %s", c.method, c.path, code, got, c.status, c.code)
		}
	}
	if code, got := getJSON(t, "GET", srv.URL+"/v1/projections/streams/missing"); got["position"] != jsonNum(3) {
		t.Errorf("404 for a missing key: %d %v, want the position", code, got)
	}

	old := waitState(t, e, StreamsProjection, "running", func(s runnerState) bool { return true }).active.gen
	if code, got := getJSON(t, "POST", srv.URL+"/v1/projections/streams/rebuild"); code != http.StatusAccepted {
		t.Errorf("rebuild: %d %v", code, got)
	}
	waitState(t, e, StreamsProjection, "rebuilt", func(s runnerState) bool { return s.shadow == nil && s.active.gen != old })
}

func TestHTTPStatusLagAndMetrics(t *testing.T) {
	l := newTestLog(t)
	l.append("s", ev{"T", `{}`, false}, ev{"T", `{}`, false})
	e := openEngine(t, l, Options{})
	srv := serve(t, e)

	// Not started: every projection lags by the whole log, and by the time
	// since the (2025) agreed time of its first event.
	code, got := getJSON(t, "GET", srv.URL+"/v1/projections")
	list, _ := got["projections"].([]any)
	if code != 200 || len(list) != 3 {
		t.Fatalf("GET /v1/projections: %d %v", code, got)
	}
	for _, item := range list {
		p := item.(map[string]any)
		for _, f := range []string{"name", "version", "position", "lag_positions", "lag_ms", "status", "rebuild_percent", "error"} {
			if _, ok := p[f]; !ok {
				t.Errorf("projection status lacks %q: %v", f, p)
			}
		}
		lag, _ := p["lag_ms"].(json.Number).Int64()
		if p["lag_positions"] != jsonNum(2) || p["position"] != jsonNum(0) || lag < int64(time.Hour/time.Millisecond) || p["status"] != StatusRunning {
			t.Errorf("before start: %v", p)
		}
	}

	e.Start()
	waitAll(t, e, l)
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "ordo_projection_position" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == StreamsProjection && m.GetGauge().GetValue() == 2 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no ordo_projection_position{projection=streams} 2 in %d families", len(families))
	}
	_, got = getJSON(t, "GET", srv.URL+"/v1/projections")
	for _, item := range got["projections"].([]any) {
		p := item.(map[string]any)
		if p["lag_positions"] != jsonNum(0) || p["lag_ms"] != jsonNum(0) || p["position"] != jsonNum(2) {
			t.Errorf("caught up: %v", p)
		}
	}
}

// TestReadYourWrites: a client that learned a position from its write gets
// a row at least that new, however far behind the projection is.
func TestReadYourWrites(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{BatchEventsMax: 3})
	e.Start()
	srv := serve(t, e)

	written := make(chan uint64)
	go func() {
		defer close(written)
		for i := range 30 {
			// Background noise that the projection must get through first.
			for j := range 5 {
				l.append(fmt.Sprintf("noise-%d", j), ev{"N", `{}`, false})
			}
			written <- l.append("mine", ev{"Mine", fmt.Sprintf(`{"i":%d}`, i), false})[0]
		}
	}()
	n := 0
	for pos := range written {
		n++
		code, got := getJSON(t, "GET", fmt.Sprintf("%s/v1/projections/streams/mine?min_position=%d", srv.URL, pos))
		p, _ := got["position"].(json.Number).Int64()
		events, _ := got["events"].(json.Number).Int64()
		if code != 200 || events < int64(n) || uint64(p) < pos {
			t.Fatalf("read after write %d at %d: %d %v", n, pos, code, got)
		}
	}

	// A read that asks for a position not yet written waits for it.
	next := l.last() + 1
	answer := make(chan map[string]any)
	go func() {
		_, got := getJSON(t, "GET", fmt.Sprintf("%s/v1/projections/streams/later?min_position=%d", srv.URL, next))
		answer <- got
	}()
	l.append("later", ev{"L", `{}`, false})
	if got := <-answer; got["stream"] != "later" {
		t.Errorf("waiting read: %v", got)
	}

	// One that cannot be served in time says so, with the position it has.
	e.minPositionWait = 50 * time.Millisecond
	code, got := getJSON(t, "GET", fmt.Sprintf("%s/v1/projections/streams/mine?min_position=%d", srv.URL, l.last()+100))
	if code != http.StatusServiceUnavailable || got["code"] != "timeout" || got["position"] != jsonNum(int(l.last())) {
		t.Errorf("min_position in the future: %d %v", code, got)
	}
}

// TestPaginationStableWhileAppending pages through a projection with a
// small limit while new rows are created on both sides of the cursor and
// existing rows change: every row that existed before the first page must
// come exactly once.
func TestPaginationStableWhileAppending(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	e.Start()
	before := make(map[string]bool)
	for i := 0; i < 400; i += 2 {
		s := fmt.Sprintf("s-%03d", i)
		l.append(s, ev{"T", `{}`, false})
		before[s] = true
	}
	l.append("zzz", ev{"T", `{}`, false})
	waitAt(t, e, StreamsProjection, l.last())
	srv := serve(t, e)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i += 2 {
			select {
			case <-stop:
				return
			default:
			}
			l.append(fmt.Sprintf("s-%03d", i%400), ev{"T", `{}`, false})
			l.append(fmt.Sprintf("s-%03d", (i*7)%400), ev{"T", `{}`, false})
		}
	}()

	seen := make(map[string]int)
	cursor, pages := "", 0
	minPos := uint64(0)
	for {
		code, got := getJSON(t, "GET", fmt.Sprintf("%s/v1/projections/streams?prefix=s-&limit=7&cursor=%s&min_position=%d", srv.URL, url.QueryEscape(cursor), minPos))
		if code != 200 {
			t.Fatalf("page %d: %d %v", pages, code, got)
		}
		pages++
		for _, r := range got["rows"].([]any) {
			s := r.(map[string]any)["stream"].(string)
			if !strings.HasPrefix(s, "s-") {
				t.Errorf("row %q outside the prefix", s)
			}
			seen[s]++
		}
		cursor = got["next"].(string)
		if cursor == "" {
			break
		}
		// Between pages, new rows appear before and after the cursor, and
		// the next page is read at least that late.
		l.append(fmt.Sprintf("s-%03d-before", pages), ev{"T", `{}`, false})
		minPos = l.append(fmt.Sprintf("s-%03d-after", 400+pages), ev{"T", `{}`, false})[0]
	}
	close(stop)
	wg.Wait()
	for s, n := range seen {
		if n != 1 {
			t.Errorf("row %s listed %d times", s, n)
		}
	}
	for s := range before {
		if seen[s] != 1 {
			t.Errorf("row %s, there before the first page, listed %d times", s, seen[s])
		}
	}
	if pages < 200/7 {
		t.Errorf("%d pages for %d rows", pages, len(seen))
	}
	// Rows created after the cursor had passed their place are not listed;
	// those created ahead of it are.
	if seen["s-001-before"] != 0 || seen["s-401-after"] != 1 {
		t.Errorf("rows created between pages: before the cursor %d, after it %d", seen["s-001-before"], seen["s-401-after"])
	}
}

func TestListPrefixAndCursor(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	e.Start()
	for _, s := range []string{"a", "b", "b-1", "b-2", "b-3", "c"} {
		l.append(s, ev{"T", `{}`, false})
	}
	waitAt(t, e, StreamsProjection, l.last())
	keys := func(rows []Row) string {
		var k []string
		for _, r := range rows {
			k = append(k, r.Key)
		}
		return strings.Join(k, ",")
	}
	rows, next, pos, err := e.List(StreamsProjection, "b", 2, "")
	if err != nil || keys(rows) != "b,b-1" || next == "" || pos != 6 {
		t.Fatalf("first page: %s next %q at %d, %v", keys(rows), next, pos, err)
	}
	// The last page says so even when it is full.
	rows, next, _, err = e.List(StreamsProjection, "b", 2, next)
	if err != nil || keys(rows) != "b-2,b-3" || next != "" {
		t.Fatalf("second page: %s next %q, %v", keys(rows), next, err)
	}
	// A cursor past the last row gives an empty last page.
	rows, next, _, err = e.List(StreamsProjection, "b", 2, encodeCursor("b-3"))
	if err != nil || len(rows) != 0 || next != "" {
		t.Fatalf("after the last row: %s next %q, %v", keys(rows), next, err)
	}
	// A cursor before the prefix starts at the prefix; one after it is empty.
	if rows, _, _, _ := e.List(StreamsProjection, "b", 10, encodeCursor("a")); keys(rows) != "b,b-1,b-2,b-3" {
		t.Errorf("cursor before the prefix: %s", keys(rows))
	}
	if rows, next, _, _ := e.List(StreamsProjection, "b", 10, encodeCursor("c")); len(rows) != 0 || next != "" {
		t.Errorf("cursor after the prefix: %s %q", keys(rows), next)
	}
	if rows, next, _, _ := e.List(StreamsProjection, "", 10, ""); keys(rows) != "a,b,b-1,b-2,b-3,c" || next != "" {
		t.Errorf("all: %s %q", keys(rows), next)
	}
}
