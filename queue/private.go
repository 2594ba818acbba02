package queue

import (
	"os"
	"path/filepath"
	"sync"
)

// private makes every file of the store's folder the owner's alone (0600):
// nutsdb creates its data, hint and bucket files 0644 or wider, and leads
// are personal data. Files already seen are skipped, so a call costs one
// directory read; it runs at open, after every commit and after a merge.
type private struct {
	dir  string
	mu   sync.Mutex
	seen map[string]bool
}

func (p *private) apply() {
	p.mu.Lock()
	defer p.mu.Unlock()
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for _, e := range entries {
		if p.seen[e.Name()] || !e.Type().IsRegular() {
			continue
		}
		if err := os.Chmod(filepath.Join(p.dir, e.Name()), 0o600); err == nil {
			p.seen[e.Name()] = true
		}
	}
}
