package cluster

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkForward is Forward's cost per lead with 4 forwards at once, as
// the local queue's forwarder runs them (new leads with a contact of their
// own, one destination). See bench/cluster.sh for the fleet's figures.
func BenchmarkForward(b *testing.B) {
	c := node(b, newDB(b), "a")
	ctx := context.Background()
	b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.Forward(ctx, newLead(), "hook", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
