package report

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/visit"
)

type visits []*visit.Visit

func (vs visits) Put([]*visit.Visit) error         { return nil }
func (vs visits) Get(string) (*visit.Visit, error) { return nil, visit.ErrNotFound }
func (vs visits) Each(from, to time.Time, fn func(*visit.Visit) bool) error {
	for _, v := range vs {
		if !v.At.Before(from) && v.At.Before(to) && !fn(v) {
			break
		}
	}
	return nil
}

type leads []*lead.Lead

func (ls leads) Each(from, to time.Time, fn func(*lead.Lead) bool) error {
	for _, l := range ls {
		if !l.CreatedAt.Before(from) && l.CreatedAt.Before(to) && !fn(l) {
			break
		}
	}
	return nil
}

func TestBuild(t *testing.T) {
	msk, _ := time.LoadLocation("Europe/Moscow")
	day1 := time.Date(2026, 12, 1, 12, 0, 0, 0, msk)
	late := time.Date(2026, 12, 1, 23, 30, 0, 0, msk) // 20:30 UTC: still Dec 1 in Moscow
	vs := visits{
		{ID: "1", At: day1, Source: "ads", UTM: map[string]string{"source": "yandex", "campaign": "весна"}, Landing: "https://s.example/a?utm_source=yandex"},
		{ID: "2", At: day1, Source: "ads", UTM: map[string]string{"source": "google"}, Landing: "https://s.example/a?gclid=1"},
		{ID: "3", At: late, Source: "organic", Landing: "https://s.example/b"},
		{ID: "4", At: day1.AddDate(0, 0, 1), Source: "direct", Landing: "https://s.example/"},
		{ID: "5", At: day1.AddDate(0, 0, -5), Source: "ads"}, // before the range
	}
	delivered := []lead.Delivery{{Destination: "crm", Status: lead.StatusDelivered}}
	ls := leads{
		{ID: "a", CreatedAt: day1, Form: "Заявка", Visit: &lead.Visit{Source: "ads", UTM: map[string]string{"source": "yandex", "campaign": "весна"}, Landing: "https://s.example/a?utm_source=yandex"}, Deliveries: delivered},
		{ID: "b", CreatedAt: late, Form: "api", Visit: &lead.Visit{Source: "organic", Landing: "https://s.example/b"}},
		{ID: "c", CreatedAt: late, Form: "api", DuplicateOf: "b", Visit: &lead.Visit{Source: "organic"}},
		{ID: "d", CreatedAt: day1, Form: "Заявка", Site: "s.example", Visit: &lead.Visit{Referrer: "https://vk.com/x"}}, // script data only: classified
		// a lead still held by dry_run: not counted
		{ID: "t", CreatedAt: day1, Form: "Заявка", Visit: &lead.Visit{Source: "ads"}, Deliveries: []lead.Delivery{{Destination: "crm", Status: lead.StatusDryRun}}},
	}
	build := func(by string) *Report {
		q, err := ParseQuery(url.Values{"by": {by}, "from": {"2026-12-01"}, "to": {"2026-12-02"}}, msk, day1)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Build(q, vs, ls)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	got := func(rep *Report) string {
		b, _ := json.Marshal(rep.Rows)
		return string(b)
	}
	cases := map[string]string{
		BySource:      `[{"key":"ads","visits":2,"leads":1,"conversion":0.5,"delivered":1},{"key":"organic","visits":1,"leads":1,"conversion":1,"delivered":0},{"key":"social","visits":0,"leads":1,"delivered":0},{"key":"direct","visits":1,"leads":0,"conversion":0,"delivered":0}]`,
		ByUTMCampaign: `[{"key":"","visits":3,"leads":2,"conversion":0.6667,"delivered":0},{"key":"весна","visits":1,"leads":1,"conversion":1,"delivered":1}]`,
		ByLanding:     `[{"key":"s.example/a","visits":2,"leads":1,"conversion":0.5,"delivered":1},{"key":"s.example/b","visits":1,"leads":1,"conversion":1,"delivered":0},{"key":"","visits":0,"leads":1,"delivered":0},{"key":"s.example/","visits":1,"leads":0,"conversion":0,"delivered":0}]`,
		ByForm:        `[{"key":"Заявка","leads":2,"delivered":1},{"key":"api","leads":1,"delivered":0}]`,
		ByDay:         `[{"key":"2026-12-01","visits":3,"leads":3,"conversion":1,"delivered":1},{"key":"2026-12-02","visits":1,"leads":0,"conversion":0,"delivered":0}]`,
	}
	for by, want := range cases {
		if g := got(build(by)); g != want {
			t.Errorf("by=%s:\n got %s\nwant %s", by, g, want)
		}
	}
	rep := build(BySource)
	if rep.From != "2026-12-01" || rep.To != "2026-12-02" || rep.Timezone != "Europe/Moscow" || *rep.Total.Visits != 4 || rep.Total.Leads != 3 {
		t.Errorf("report %+v total %+v", rep, rep.Total)
	}
}

func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)
	q, err := ParseQuery(url.Values{}, time.UTC, now)
	if err != nil || q.By != BySource || q.From.Format(DateLayout) != "2026-11-04" || q.To.Format(DateLayout) != "2026-12-04" {
		t.Errorf("defaults: %+v %v", q, err)
	}
	for _, bad := range []url.Values{{"by": {"city"}}, {"from": {"01.12.2026"}}, {"to": {"x"}},
		{"from": {"2026-12-02"}, "to": {"2026-12-01"}}, {"from": {"2020-01-01"}, "to": {"2026-01-01"}}} {
		if _, err := ParseQuery(bad, time.UTC, now); err == nil {
			t.Errorf("ParseQuery(%v) accepted", bad)
		}
	}
	if _, err := ParseQuery(url.Values{"by": {"city"}}, time.UTC, now); err == nil || err.Error() != `by="city": want one of source, utm_source, utm_campaign, landing, form, day` {
		t.Errorf("by error: %v", err)
	}
}
