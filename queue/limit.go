package queue

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Rate is an outgoing limit: at most N sends per Per. Zero means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Limited tells whether r limits anything (N and Per set).
func (r Rate) Limited() bool { return r.N > 0 && r.Per > 0 }

// Stricter reports whether r lets fewer sends through over time than b:
// an unlimited rate is the least strict, and of two equal ones the one
// with the smaller burst. (Where several destinations share one CRM
// account, the strictest of their rates applies: the cluster engine and
// a node's fallback pick it so.)
func (r Rate) Stricter(b Rate) bool {
	switch {
	case !r.Limited():
		return false
	case !b.Limited():
		return true
	}
	x, y := int64(r.N)*int64(b.Per), int64(b.N)*int64(r.Per) // r.N/r.Per vs b.N/b.Per
	return x < y || (x == y && r.N < b.N)
}

// window is a token bucket of N tokens where each token comes back Per
// after the send that used it started. Unlike a refilling bucket with a
// burst of N (which lets 2N through in some windows), no window of length
// Per ever sees more than N sends started.
type window struct {
	rate  Rate
	mu    sync.Mutex
	slots []slot
}

type slot struct {
	started  time.Time // when the last send on this token started
	reserved bool      // taken by an attempt whose send has not started yet
}

func newWindow(r Rate) *window {
	w := &window{rate: r}
	if r.Limited() {
		w.slots = make([]slot, r.N)
	}
	return w
}

func (w *window) free(s slot, now time.Time) bool {
	return !s.reserved && !s.started.Add(w.rate.Per).After(now)
}

// available returns how many sends may start now and, when none may, the
// time the next token comes back (zero if every token is reserved).
func (w *window) available(now time.Time) (int, time.Time) {
	if !w.rate.Limited() {
		return int(^uint(0) >> 1), time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	var next time.Time
	for _, s := range w.slots {
		back := s.started.Add(w.rate.Per)
		switch {
		case s.reserved:
		case w.free(s, now):
			n++
		case next.IsZero() || back.Before(next):
			next = back
		}
	}
	return n, next
}

// reserve takes a token for an attempt: -1 means no limit, ok=false none free.
func (w *window) reserve(now time.Time) (token int, ok bool) {
	if !w.rate.Limited() {
		return -1, true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.slots {
		if w.free(s, now) {
			w.slots[i].reserved = true
			return i, true
		}
	}
	return 0, false
}

// start records that the send holding token starts now, right before the
// request goes out: the token comes back Per from this moment.
func (w *window) start(token int) {
	if token >= 0 {
		w.mu.Lock()
		w.slots[token] = slot{started: time.Now()}
		w.mu.Unlock()
	}
}

// Backoff bounds the wait between attempts: exponential from Min, doubled
// per attempt up to Max, with full jitter (a uniform pick below the bound).
type Backoff struct{ Min, Max time.Duration }

// Default backoff bounds.
const (
	DefaultBackoffMin = 5 * time.Second
	DefaultBackoffMax = time.Hour
)

// Normalized fills the defaults (DefaultBackoffMin, DefaultBackoffMax).
func (b Backoff) Normalized() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultBackoffMin
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	return b
}

// Delay is the wait after the given number of failed attempts (>= 1).
func (b Backoff) Delay(attempts int) time.Duration {
	ceil := b.Min
	for i := 1; i < attempts && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.Max)
	return rand.N(ceil + 1)
}
