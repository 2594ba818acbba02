package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

// folderUsage is what the store takes on disk: the blocks of the files in
// the folder, plus files already removed by a merge whose descriptors this
// process still holds (nutsdb#488: their space is freed on close only).
func folderUsage(t testing.TB, dir string) (files, removedOpen int64) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files += diskSize(path)
		}
		return nil
	})
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, dir) || !strings.HasSuffix(target, " (deleted)") {
			continue
		}
		if fi, err := os.Stat(filepath.Join("/proc/self/fd", fd.Name())); err == nil {
			removedOpen += fi.Size() // apparent size: an upper bound of the blocks
		}
	}
	return files, removedOpen
}

// 100k leads are added by 64 callers, delivered and purged past retention:
// the folder goes back under a bound of a few segments, while it held
// hundreds of MiB at the peak.
func TestDiskBoundedAfter100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k leads: a minute or more")
	}
	const leads, callers = 100_000, 64
	const segment = 8 << 20
	// The bound: the active segment, the merge's output segment, and the
	// removed segments whose descriptors nutsdb still caches (at most the
	// cache's clean threshold, 4, before it closes unused ones).
	const filesBound, removedBound = 2 * segment, 4 * segment
	dir := t.TempDir()
	s := openStore(t, dir, func(o *Options) {
		o.SegmentSize = segment
		o.Retention = time.Millisecond // purge as soon as delivered
	})
	f := newFake(func(int, *lead.Lead) (string, error) { return "1", nil })
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}, Concurrency: 64})

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			files, removed := folderUsage(t, dir)
			if files+removed > peak.Load() {
				peak.Store(files + removed)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	commits0, _ := s.Commits()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < leads; i += callers {
				if _, _, err := s.Add(context.Background(), testLead(i), []string{"amo"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	added := time.Since(start)
	waitProgress(t, "every lead delivered", func() (bool, int) { n := f.total(); return n >= leads, n })
	waitProgress(t, "every lead delivered and purged", func() (bool, int) {
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stats()
		return err == nil && st.Leads == 0 && st.QueueDepth == 0, -st.Leads - st.QueueDepth
	})
	drained := time.Since(start)
	commits1, ops := s.Commits()
	if err := s.Compact(); err != nil { // a merge now that everything is garbage
		t.Fatal(err)
	}
	close(stopSampling)
	<-sampled
	files, removed := folderUsage(t, dir)
	t.Logf("%d leads: added in %v, delivered and purged in %v; %d commits for %d operations",
		leads, added.Round(time.Millisecond), drained.Round(time.Millisecond), commits1-commits0, ops)
	t.Logf("disk: peak %.1f MiB; after purge and merge %.1f MiB in the folder + %.1f MiB removed but still open (bound %d + %d MiB)",
		mib(peak.Load()), mib(files), mib(removed), filesBound>>20, removedBound>>20)
	if files > filesBound || removed > removedBound {
		t.Fatalf("folder %d bytes (bound %d), removed-but-open %d bytes (bound %d)", files, filesBound, removed, removedBound)
	}
	if f.total() != leads {
		t.Fatalf("%d sends for %d leads", f.total(), leads)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
