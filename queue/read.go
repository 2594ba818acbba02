package queue

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"sort"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

// Get returns a lead with its deliveries filled in, or ErrNotFound.
func (s *Store) Get(id string) (*lead.Lead, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	var l *lead.Lead
	err := s.view(func(tx *nutsdb.Tx) error {
		var err error
		l, err = loadLead(tx, id)
		return err
	})
	return l, err
}

// Filter selects leads for List. Status is the lead's summary status
// (lead.Lead.Status), Form an exact form name, Query a case-insensitive
// substring of name, phone, email, title, comment, source or UTM tag, or
// a phone however written (search.go). Cursor is the next_cursor of the
// previous page.
type Filter struct {
	Status, Form, Query string
	Limit               int
	Cursor              string
	// Region is the country of phones typed without a code; default RU.
	Region string
}

// List limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// List returns leads newest first, with their deliveries. nextCursor is
// opaque, and empty on the last page (with a filter, the page after a full
// one may come back empty).
func (s *Store) List(f Filter) (leads []*lead.Lead, nextCursor string, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	if err := CheckStatus(f.Status); err != nil {
		return nil, "", err
	}
	var from []byte
	if f.Cursor != "" {
		from, err = hex.DecodeString(f.Cursor)
		if _, _, ok := parseTimeKey(from); err != nil || !ok {
			return nil, "", ErrBadCursor
		}
	}
	q := newQuery(f.Query, f.Region)
	err = s.view(func(tx *nutsdb.Tx) error {
		leads, nextCursor = nil, ""
		var last []byte
		var walkErr error
		candidates(tx, f.Status, from)(func(tk []byte) bool {
			if len(leads) == limit {
				nextCursor = hex.EncodeToString(last)
				return false
			}
			_, id, ok := parseTimeKey(tk)
			if !ok {
				return true
			}
			l, err := loadLead(tx, id)
			if errors.Is(err, ErrNotFound) {
				return true
			}
			if err != nil {
				walkErr = err
				return false
			}
			if matches(l, f, q) {
				leads = append(leads, l)
				last = bytes.Clone(tk)
			}
			return true
		})
		return walkErr
	})
	return leads, nextCursor, err
}

// candidates yields time keys below from, newest first: every lead, or for
// a delivery status only the leads with a delivery in it (from the state
// keys, which carry the time key).
func candidates(tx *nutsdb.Tx, status string, from []byte) func(func([]byte) bool) {
	switch status {
	case lead.StatusPending, lead.StatusRetrying, lead.StatusDelivered, lead.StatusFailed, lead.StatusDryRun:
	default:
		return func(yield func([]byte) bool) { eachKey(tx, bTime, from, true, yield) }
	}
	set := map[string]bool{}
	eachKey(tx, bState, []byte(status+"\x00"), false, func(k []byte) bool {
		st, _, tk, ok := parseStateKey(k)
		if !ok || st != status {
			return false
		}
		if from == nil || bytes.Compare(tk, from) < 0 {
			set[string(tk)] = true
		}
		return true
	})
	tks := make([]string, 0, len(set))
	for tk := range set {
		tks = append(tks, tk)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(tks)))
	return func(yield func([]byte) bool) {
		for _, tk := range tks {
			if !yield([]byte(tk)) {
				return
			}
		}
	}
}

// Matcher returns what List keeps of the leads it walks: f's Status, Form
// and Query (Limit and Cursor aside). Exported so the cluster's list
// filters exactly as this one.
func (f Filter) Matcher() func(*lead.Lead) bool {
	q := newQuery(f.Query, f.Region)
	return func(l *lead.Lead) bool { return matches(l, f, q) }
}

func matches(l *lead.Lead, f Filter, q query) bool {
	if f.Status != "" && l.Status() != f.Status {
		return false
	}
	if f.Form != "" && l.Form != f.Form {
		return false
	}
	return q.match(l)
}

// Stats is the /leadproxy/stats answer.
type Stats struct {
	Leads                int                       `json:"leads"`
	ByStatus             map[string]int            `json:"by_status"`
	ByDestination        map[string]map[string]int `json:"by_destination"`
	QueueDepth           int                       `json:"queue_depth"`
	OldestPendingSeconds float64                   `json:"oldest_pending_seconds"`
}

// Stats counts leads by status and destination and measures the queue. It
// reads keys only (they live in RAM), never lead records.
func (s *Store) Stats() (Stats, error) {
	st := Stats{ByStatus: map[string]int{}, ByDestination: map[string]map[string]int{}}
	err := s.view(func(tx *nutsdb.Tx) error {
		st.Leads = countKeys(tx, bLead)
		worst := map[string]string{}
		oldest := int64(0)
		eachKey(tx, bState, nil, false, func(k []byte) bool {
			status, dest, tk, ok := parseStateKey(k)
			if !ok {
				return true
			}
			if st.ByDestination[dest] == nil {
				st.ByDestination[dest] = map[string]int{}
			}
			st.ByDestination[dest][status]++
			at, id, _ := parseTimeKey(tk)
			if w, seen := worst[id]; !seen || lead.StatusRank(status) < lead.StatusRank(w) {
				worst[id] = status
			}
			if status == lead.StatusPending || status == lead.StatusRetrying {
				st.QueueDepth++
				if oldest == 0 || at < oldest {
					oldest = at
				}
			}
			return true
		})
		for _, status := range worst {
			st.ByStatus[status]++
		}
		if skipped := st.Leads - len(worst); skipped > 0 {
			st.ByStatus[lead.StatusSkipped] = skipped
		}
		if oldest != 0 {
			st.OldestPendingSeconds = max(0, time.Since(time.UnixMilli(oldest)).Seconds())
		}
		return nil
	})
	return st, err
}

// LoadToken returns a token a destination saved, "" when there is none
// (crm.TokenStore).
func (s *Store) LoadToken(key string) (string, error) {
	var v string
	err := s.view(func(tx *nutsdb.Tx) error {
		raw, err := tx.Get(bToken, []byte(key))
		if isNotFound(err) {
			return nil
		}
		v = string(raw)
		return err
	})
	return v, err
}

// SaveToken stores a token durably (crm.TokenStore).
func (s *Store) SaveToken(key, value string) error {
	if key == "" {
		return errors.New("queue: empty token key")
	}
	return s.write(context.Background(), func(tx *nutsdb.Tx) error {
		if value == "" {
			return del(tx, bToken, []byte(key))
		}
		return tx.Put(bToken, []byte(key), []byte(value), nutsdb.Persistent)
	})
}
