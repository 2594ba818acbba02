package queue

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkAdd measures durable Add throughput with 64 concurrent callers
// (as many as a busy site's capture requests) and how many leads share an
// fsync. Run: go test -run '^$' -bench Add -benchtime 20000x ./queue/
func BenchmarkAdd(b *testing.B) {
	s := openStore(b, "", nil)
	const callers = 64
	b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var n atomic.Int64
	c0, _ := s.Commits()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Add(context.Background(), testLead(int(n.Add(1))), []string{"amo"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	c1, _ := s.Commits()
	b.ReportMetric(float64(b.N)/float64(c1-c0), "leads/fsync")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leads/s")
}

// BenchmarkAddSerial is the single-caller baseline: one fsync per lead.
func BenchmarkAddSerial(b *testing.B) {
	s := openStore(b, "", nil)
	c0, _ := s.Commits()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.Add(context.Background(), testLead(i), []string{"amo"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c1, _ := s.Commits()
	b.ReportMetric(float64(b.N)/float64(c1-c0), "leads/fsync")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leads/s")
}
