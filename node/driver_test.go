package node

import (
	"testing"
	"time"
)

func TestTickPacerSlowsWhenIdleAndWakesOnInput(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	p := tickPacer{lastInput: t0}
	if p.input(at(time.Millisecond)) {
		t.Fatal("an input while ticking fast asked for a tick")
	}
	for d := 2 * time.Millisecond; d < tickIdleAfter+time.Millisecond; d += time.Millisecond {
		if p.ticked(at(d)) {
			t.Fatalf("turned idle %v after the last input, before tickIdleAfter %v", d-time.Millisecond, tickIdleAfter)
		}
	}
	if !p.ticked(at(tickIdleAfter + 2*time.Millisecond)) {
		t.Fatal("no input for longer than tickIdleAfter and still ticking fast")
	}
	if p.ticked(at(tickIdleAfter + 12*time.Millisecond)) {
		t.Fatal("asked to slow the ticker twice")
	}
	if !p.input(at(tickIdleAfter + 15*time.Millisecond)) {
		t.Fatal("an input after an idle spell did not ask for a tick and the fast ticker")
	}
	if p.input(at(tickIdleAfter + 16*time.Millisecond)) {
		t.Fatal("a second input asked for another tick")
	}
	if p.ticked(at(2*tickIdleAfter + 14*time.Millisecond)) {
		t.Fatal("turned idle less than tickIdleAfter after the last input")
	}
}
