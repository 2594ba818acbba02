package report

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParseQuery: any query is a valid range (at most MaxDays, From before
// To, midnights) or an error.
func FuzzParseQuery(f *testing.F) {
	f.Add("by=day&from=2026-12-01&to=2026-12-31")
	f.Add("from=2026-02-30")
	f.Add("by=form&to=0001-01-01")
	msk, _ := time.LoadLocation("Europe/Moscow")
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, msk, now)
		if err != nil {
			return
		}
		if !q.From.Before(q.To) || days(q.From, q.To) > MaxDays {
			t.Fatalf("%q: range %v .. %v", raw, q.From, q.To)
		}
		if h, m, s := q.From.In(msk).Clock(); h != 0 || m != 0 || s != 0 {
			t.Fatalf("%q: from %v is not a midnight", raw, q.From)
		}
	})
}
