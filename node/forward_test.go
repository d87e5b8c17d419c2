package node

import (
	"context"
	"testing"

	"github.com/ordoledger/ordo/ledger"
)

// forwarded reads ordo_requests_forwarded_total{to} of one node.
func forwarded(t *testing.T, nd *Node, to string) float64 {
	t.Helper()
	families, err := nd.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "ordo_requests_forwarded_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "to" && l.GetValue() == to {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A request submitted to a backup goes to the primary alone. With the primary
// down it goes to every replica once forwardAllAfter has passed: their request
// timers run, they change view, and it commits. Without that second send the
// other backups would never hear of it and the view would never change.
func TestSubmitForwardsToThePrimaryThenToAll(t *testing.T) {
	c := newTestCluster(t, 4, func(p *Params) { p.ViewChangeTimeoutMs = 500 })
	ctx := context.Background()
	cl := c.newClient(1)
	if r, err := cl.Submit(ctx, appendCmd("fwd", 0)); err != nil || r.Result.Code != ledger.CodeOK {
		t.Fatalf("append through a backup: %v %+v", err, r)
	}
	if got := forwarded(t, c.nodes[1], "primary"); got != 1 {
		t.Fatalf("forwarded to the primary %v times, want 1", got)
	}
	if got := forwarded(t, c.nodes[0], "primary") + forwarded(t, c.nodes[0], "all"); got != 0 {
		t.Fatalf("the primary, which was sent nothing to submit, forwarded %v times", got)
	}

	c.stop(0)
	r, err := cl.Submit(ctx, appendCmd("fwd", 1))
	if err != nil || r.Result.Code != ledger.CodeOK {
		t.Fatalf("append through a backup with the primary down: %v %+v", err, r)
	}
	if got := forwarded(t, c.nodes[1], "all"); got < 1 {
		t.Fatalf("forwarded to all %v times with the primary down, want at least 1", got)
	}
	if v := c.nodes[1].status.Load().View; v == 0 {
		t.Fatalf("committed with the primary down, still in view %d", v)
	}
}
