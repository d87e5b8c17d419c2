package pbft

import (
	"fmt"
	"testing"
	"time"
)

// The primary is down: the backups time out on a pending request, move to
// view 1 and its primary re-proposes the request there.
func TestViewChangeOnSilentPrimary(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newSim(t, simOptions{n: n, seed: 100})
			s.tick(time.Millisecond)
			for i := range 3 {
				s.submit(s.request([]byte(fmt.Sprintf("before %d", i))))
			}
			s.runUntil(time.Second, "first requests everywhere", s.allApplied(3))
			s.crash(0)
			s.submit(s.request([]byte("after")))
			timeout := s.cfgs[1].ViewChangeTimeout
			s.runUntil(4*timeout, "request applied in view 1", s.allApplied(4))
			for _, node := range s.nodes[1:] {
				st := node.r.Status()
				if st.View != 1 || !st.ViewActive || st.Primary != 1 {
					t.Fatalf("replica %d: %+v", node.id, st)
				}
			}
			if took := s.now.Sub(simEpoch); took < timeout {
				t.Fatalf("view changed after %v, before the timeout", took)
			}
		})
	}
}
