package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

func TestSearchPhonesAndAttribution(t *testing.T) {
	s := openStore(t, "", nil)
	a := testLead(1)
	a.Phone = "+79120000001"
	a.Visit = &lead.Visit{Source: "ads", UTM: map[string]string{"source": "yandex", "campaign": "Весна-2026"}}
	mustAdd(t, s, a)
	b := testLead(2)
	b.Phone, b.Email = "+79130000002", "other@example.com"
	mustAdd(t, s, b)
	for q, want := range map[string]int{
		"8 912 000-00-01":  1, // as a visitor types it
		"+7 912 000 00 01": 1,
		"(912) 000-0001":   1,
		"89120000001":      1,
		"8912":             1, // half typed, trunk 8
		"912 000":          1,
		"000-00":           2,
		"12":               1, // two digits: searched as text only
		"весна":            1,
		"YANDEX":           1,
		"ads":              1,
		"+7 999":           0,
	} {
		got, _, err := s.List(Filter{Query: q})
		if err != nil || len(got) != want {
			t.Errorf("search %q: %d leads (%v), want %d", q, len(got), err, want)
		}
	}
	_, _, err := s.List(Filter{Status: "sent"})
	if !errors.Is(err, ErrBadStatus) || err.Error() != `unknown status "sent": want one of pending, retrying, delivered, failed, skipped, dry_run` {
		t.Errorf("unknown status: %v", err)
	}
}

func TestEachByTime(t *testing.T) {
	s := openStore(t, "", nil)
	before := time.Now()
	var ids []string
	for i := range 5 {
		ids = append(ids, mustAdd(t, s, testLead(i)).ID)
	}
	after := time.Now().Add(time.Millisecond)
	var got []string
	if err := s.Each(before.Add(-time.Millisecond), after, func(l *lead.Lead) bool { got = append(got, l.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0] != ids[0] || got[4] != ids[4] {
		t.Errorf("each: %v, want %v oldest first", got, ids)
	}
	got = nil
	s.Each(after, after.Add(time.Hour), func(l *lead.Lead) bool { got = append(got, l.ID); return true })
	if len(got) != 0 {
		t.Errorf("each after the last: %v", got)
	}
}
