package pbft

import (
	"fmt"
	"testing"
	"time"
)

func TestCommitInOrderOnAllReplicas(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newSim(t, simOptions{n: n, seed: 1})
			s.runFor(5*time.Millisecond, func() bool { return false })
			const total = 40
			for i := range total {
				if err := s.submit(s.request([]byte(fmt.Sprintf("cmd-%d", i)))); err != nil {
					t.Fatal(err)
				}
				s.step()
			}
			s.runUntil(time.Second, "all requests applied everywhere", s.allApplied(total))
			for _, node := range s.nodes {
				st := node.r.Status()
				if st.Delivered != uint64(len(s.log)) || st.Pending != 0 || st.InFlight != 0 {
					t.Fatalf("replica %d: status %+v after everything committed (log %d)", node.id, st, len(s.log))
				}
			}
		})
	}
}
