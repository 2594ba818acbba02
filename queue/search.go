package queue

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

// Statuses are the values Filter.Status takes.
var Statuses = []string{lead.StatusPending, lead.StatusRetrying, lead.StatusDelivered, lead.StatusFailed, lead.StatusSkipped, lead.StatusDryRun}

// ErrBadStatus is returned by List for a status that is not one of Statuses.
var ErrBadStatus = errors.New("unknown status")

// CheckStatus refuses a Filter.Status that is not one of Statuses
// (ErrBadStatus); "" is every status.
func CheckStatus(s string) error {
	if s == "" {
		return nil
	}
	for _, v := range Statuses {
		if s == v {
			return nil
		}
	}
	return fmt.Errorf("%w %q: want one of %s", ErrBadStatus, s, strings.Join(Statuses, ", "))
}

// query is a search as typed, prepared once for every lead it is matched
// against: lower-cased text, and the phone digits it may stand for.
type query struct {
	text   string
	phones []string // digit strings; any one inside the lead's phone digits matches
}

// minPhoneDigits: fewer typed digits are not searched as a phone (they
// would match nearly every number).
const minPhoneDigits = 3

func newQuery(q, region string) query {
	out := query{text: strings.ToLower(strings.TrimSpace(q))}
	digits := digitsOf(q)
	if len(digits) < minPhoneDigits || strings.Trim(q, "0123456789 +-().\u00a0") != "" {
		return out
	}
	out.phones = append(out.phones, digits)
	if e164 := lead.NormalizePhone(q, region); strings.HasPrefix(e164, "+") {
		out.phones = append(out.phones, digitsOf(e164)) // "8 912 000-00-01" is +79120000001
	}
	if region == "" || region == "RU" || region == "KZ" || region == "BY" {
		if strings.HasPrefix(digits, "8") && !strings.HasPrefix(strings.TrimSpace(q), "+") {
			out.phones = append(out.phones, "7"+digits[1:]) // a trunk 8, half typed
		}
	}
	return out
}

func digitsOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// match: a substring of name, phone, email, title, comment, the visit's
// source and UTM tags, or the phone however its digits were written.
func (q query) match(l *lead.Lead) bool {
	if q.text == "" {
		return true
	}
	if len(q.phones) > 0 && l.Phone != "" {
		pd := digitsOf(l.Phone)
		for _, p := range q.phones {
			if strings.Contains(pd, p) {
				return true
			}
		}
	}
	texts := []string{l.Name, l.Phone, l.Email, l.Title, l.Comment}
	if v := l.Visit; v != nil {
		texts = append(texts, v.Source)
		for _, u := range v.UTM {
			texts = append(texts, u)
		}
	}
	for _, v := range texts {
		if strings.Contains(strings.ToLower(v), q.text) {
			return true
		}
	}
	return false
}

// Each calls fn for the leads stored in [from, to), oldest first, with
// their deliveries, until fn returns false (the report, the export).
func (s *Store) Each(from, to time.Time, fn func(*lead.Lead) bool) error {
	lo, hi := be64(max(from.UnixMilli(), 0)), be64(to.UnixMilli())
	var ids []string
	// Keys first (RAM), then each lead in its own read: a long walk does
	// not hold one transaction open.
	err := s.view(func(tx *nutsdb.Tx) error {
		eachKey(tx, bTime, lo, false, func(k []byte) bool {
			if string(k[:min(8, len(k))]) >= string(hi) {
				return false
			}
			if _, id, ok := parseTimeKey(k); ok {
				ids = append(ids, id)
			}
			return true
		})
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		l, err := s.Get(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !fn(l) {
			return nil
		}
	}
	return nil
}
