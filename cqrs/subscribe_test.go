package cqrs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sseEvent is one parsed server-sent event, or a comment.
type sseEvent struct {
	id      string
	data    string
	comment string
}

// subscribe opens a subscription and delivers what it parses on a channel,
// closed when the stream ends or the test ends.
func subscribe(t *testing.T, url string, header http.Header) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("subscribe: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 64)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur != (sseEvent{}) {
					select {
					case out <- cur:
					case <-ctx.Done():
						return
					}
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				cur.comment = strings.TrimSpace(line[1:])
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	ev, ok := <-ch
	if !ok {
		t.Fatal("subscription ended early")
	}
	return ev
}

// TestSubscribeCatchUpThenLive: a subscriber that starts while the log is
// being appended to gets every event exactly once, in order, across the
// switch from reading history to following the head.
func TestSubscribeCatchUpThenLive(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	for i := range 200 {
		evs := make([]ev, 1+i%4)
		for j := range evs {
			evs[j] = ev{"Old", fmt.Sprintf(`{"i":%d}`, i), false}
		}
		l.append(fmt.Sprintf("s-%d", i%7), evs...)
	}
	history := l.last()
	srv := serve(t, e)

	// The writer keeps appending until the subscriber has read well past
	// the history it started with, so the switch to live happens under load.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			l.append(fmt.Sprintf("live-%d", i%5), ev{"Live", fmt.Sprintf(`{"i":%d}`, i), false})
		}
	}()
	events := subscribe(t, srv.URL+"/v1/subscribe?from=1", nil)
	check := func(want uint64) {
		t.Helper()
		got := next(t, events)
		for got.comment != "" {
			got = next(t, events)
		}
		var ej EventJSON
		if err := json.Unmarshal([]byte(got.data), &ej); err != nil {
			t.Fatalf("event %d: %v in %q", want, err, got.data)
		}
		if got.id != strconv.FormatUint(want, 10) || ej.Position != want {
			t.Fatalf("event id %s position %d, want %d (gap or duplicate)", got.id, ej.Position, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, ej.Timestamp); err != nil || len(ej.ID) != 36 || ej.Stream == "" || len(ej.Data) == 0 {
			t.Fatalf("event %d: %+v", want, ej)
		}
	}
	want := uint64(1)
	for ; want <= history+300; want++ {
		check(want)
	}
	close(stop)
	wg.Wait()
	for ; want <= l.last(); want++ {
		check(want)
	}
}

func TestSubscribeFiltersAndResume(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	l.append("order-1", ev{"Placed", `{"n":1}`, false}, ev{"Paid", `{}`, false})
	l.append("user-1", ev{"Placed", `{}`, false})
	l.append("order-2", ev{"Placed", "not json", true})
	l.append("order-3", ev{"Shipped", `{}`, false})
	srv := serve(t, e)

	events := subscribe(t, srv.URL+"/v1/subscribe?stream_prefix=order-&type=Placed&type=Shipped", nil)
	var got []string
	for range 3 {
		ev := next(t, events)
		var ej EventJSON
		if err := json.Unmarshal([]byte(ev.data), &ej); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s%s", ev.id, ej.Stream, ej.Type, ej.Data, ej.DataB64))
	}
	want := []string{`1 order-1 Placed {"n":1}`, "4 order-2 Placed bm90IGpzb24=", "5 order-3 Shipped {}"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("filtered events\n got %q\nwant %q", got, want)
	}

	// An EventSource reconnecting with Last-Event-ID resumes after it.
	events = subscribe(t, srv.URL+"/v1/subscribe", http.Header{"Last-Event-Id": {"3"}})
	if ev := next(t, events); ev.id != "4" {
		t.Errorf("resumed at %s, want 4", ev.id)
	}
}

func TestSubscribeHeartbeat(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{HeartbeatInterval: 20 * time.Millisecond})
	l.append("s", ev{"T", `{}`, false})
	srv := serve(t, e)
	events := subscribe(t, srv.URL+"/v1/subscribe?from=2", nil)
	if ev := next(t, events); ev.comment != "heartbeat" {
		t.Errorf("idle subscription got %+v, want a heartbeat", ev)
	}
	l.append("s", ev{"T", `{}`, false})
	for {
		ev := next(t, events)
		if ev.comment == "" {
			if ev.id != "2" {
				t.Errorf("got event %s, want 2", ev.id)
			}
			break
		}
	}
}

func TestSubscribeEndsOnClose(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	srv := serve(t, e)
	events := subscribe(t, srv.URL+"/v1/subscribe", nil)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for range events {
	}
	if n := e.subscribers.open(); n != 0 {
		t.Errorf("%d subscriptions open after Close", n)
	}
}
