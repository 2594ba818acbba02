package intercept

import (
	"strings"
	"sync"
)

// nameMemo remembers a function's answer per field name. A site's forms
// use a handful of names, so a regexp over each one runs once instead of
// on every post. The names come from visitors, so the memory is bounded:
// at most memoMaxNames names of up to memoMaxKey bytes; past that, answers
// are computed every time.
type nameMemo[V any] struct {
	mu   sync.RWMutex
	seen map[string]V
	f    func(string) V
}

const (
	memoMaxNames = 4096
	memoMaxKey   = 64
)

func newNameMemo[V any](f func(string) V) *nameMemo[V] {
	return &nameMemo[V]{seen: map[string]V{}, f: f}
}

func (m *nameMemo[V]) get(name string) V {
	m.mu.RLock()
	v, ok := m.seen[name]
	m.mu.RUnlock()
	if ok {
		return v
	}
	v = m.f(name)
	if len(name) <= memoMaxKey {
		m.mu.Lock()
		if len(m.seen) < memoMaxNames {
			m.seen[strings.Clone(name)] = v // not a slice of a request body
		}
		m.mu.Unlock()
	}
	return v
}

func (m *nameMemo[V]) len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.seen)
}
