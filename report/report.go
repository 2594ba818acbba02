// Package report counts visits, leads, conversion and deliveries per
// source, UTM tag, landing page, form or day, over a date range: the admin
// API's /leadproxy/report and the dashboard's table and chart.
//
// Build reads the single node's stores through two small interfaces
// (visit.Store and Leads); the PostgreSQL cluster mode is to compute the
// same Report in SQL over every node's rows.
package report

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/visit"
)

// Groupings (the by= parameter).
const (
	BySource      = "source"
	ByUTMSource   = "utm_source"
	ByUTMCampaign = "utm_campaign"
	ByLanding     = "landing"
	ByForm        = "form"
	ByDay         = "day"
)

// Bys lists the groupings.
var Bys = []string{BySource, ByUTMSource, ByUTMCampaign, ByLanding, ByForm, ByDay}

// Bounds.
const (
	DefaultDays = 30      // the range when from= and to= are absent
	MaxDays     = 3 * 366 // the longest range
	MaxRows     = 500     // groups listed; the rest are counted in Other
	DateLayout  = "2006-01-02"
)

// Leads is where the leads come from: queue.Store on one node.
type Leads interface {
	Each(from, to time.Time, fn func(*lead.Lead) bool) error
}

// Query is one report's question.
type Query struct {
	By       string
	From, To time.Time // [From, To): midnights in Loc
	Loc      *time.Location
}

// Row is one group. Visits and Conversion are absent for by=form: a
// visit has no form.
type Row struct {
	Key        string   `json:"key"`
	Visits     *int     `json:"visits,omitempty"`
	Leads      int      `json:"leads"`
	Conversion *float64 `json:"conversion,omitempty"` // leads / visits, when there were visits
	Delivered  int      `json:"delivered"`
}

// Report is the answer.
type Report struct {
	By       string `json:"by"`
	From     string `json:"from"` // first day, inclusive
	To       string `json:"to"`   // last day, inclusive
	Timezone string `json:"timezone"`
	Rows     []Row  `json:"rows"`
	// Other sums the groups past MaxRows (absent when none).
	Other *Row `json:"other,omitempty"`
	Total Row  `json:"total"`
}

// ParseQuery reads by=, from= and to= (dates, YYYY-MM-DD, in loc; to is
// inclusive). Defaults: by=source, the last DefaultDays days to today.
func ParseQuery(q url.Values, loc *time.Location, now time.Time) (Query, error) {
	out := Query{By: q.Get("by"), Loc: loc}
	if out.By == "" {
		out.By = BySource
	}
	if !slices.Contains(Bys, out.By) {
		return out, fmt.Errorf("by=%q: want one of %s", out.By, strings.Join(Bys, ", "))
	}
	today := midnight(now.In(loc))
	to := today
	if s := q.Get("to"); s != "" {
		t, err := time.ParseInLocation(DateLayout, s, loc)
		if err != nil {
			return out, fmt.Errorf("to=%q: want a date like 2026-12-31", s)
		}
		to = t
	}
	from := to.AddDate(0, 0, -(DefaultDays - 1))
	if s := q.Get("from"); s != "" {
		t, err := time.ParseInLocation(DateLayout, s, loc)
		if err != nil {
			return out, fmt.Errorf("from=%q: want a date like 2026-12-01", s)
		}
		from = t
	}
	if to.Before(from) {
		return out, errors.New("to is before from")
	}
	if days(from, to) >= MaxDays {
		return out, fmt.Errorf("the range is longer than %d days", MaxDays)
	}
	out.From, out.To = from, to.AddDate(0, 0, 1)
	return out, nil
}

func midnight(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

func days(from, to time.Time) int { return int(math.Round(to.Sub(from).Hours() / 24)) }

// Build computes the report from the stores.
func Build(q Query, visits visit.Store, leads Leads) (*Report, error) {
	type counts struct{ visits, leads, delivered int }
	groups := map[string]*counts{}
	get := func(k string) *counts {
		c := groups[k]
		if c == nil {
			c = &counts{}
			groups[k] = c
		}
		return c
	}
	if q.By == ByDay {
		for d := q.From; d.Before(q.To); d = d.AddDate(0, 0, 1) {
			get(d.Format(DateLayout))
		}
	}
	if q.By != ByForm && visits != nil {
		err := visits.Each(q.From, q.To, func(v *visit.Visit) bool {
			get(visitKey(q, v)).visits++
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("report: visits: %w", err)
		}
	}
	err := leads.Each(q.From, q.To, func(l *lead.Lead) bool {
		if l.DuplicateOf != "" {
			return true // counted once, as its first lead
		}
		if l.Status() == lead.StatusDryRun {
			return true // a trial of a rule (dry_run), not a lead until it is sent
		}
		c := get(leadKey(q, l))
		c.leads++
		if l.Status() == lead.StatusDelivered {
			c.delivered++
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("report: leads: %w", err)
	}
	rep := &Report{By: q.By, From: q.From.Format(DateLayout), To: q.To.AddDate(0, 0, -1).Format(DateLayout),
		Timezone: q.Loc.String(), Rows: []Row{}}
	row := func(k string, c counts) Row {
		r := Row{Key: k, Leads: c.leads, Delivered: c.delivered}
		if q.By != ByForm {
			n := c.visits
			r.Visits = &n
			if n > 0 {
				conv := math.Round(float64(c.leads)/float64(n)*10000) / 10000
				r.Conversion = &conv
			}
		}
		return r
	}
	var total, other counts
	keys := make([]string, 0, len(groups))
	for k, c := range groups {
		keys = append(keys, k)
		total.visits, total.leads, total.delivered = total.visits+c.visits, total.leads+c.leads, total.delivered+c.delivered
	}
	if q.By == ByDay {
		slices.Sort(keys)
	} else {
		slices.SortFunc(keys, func(a, b string) int {
			ga, gb := groups[a], groups[b]
			return cmp.Or(cmp.Compare(gb.leads, ga.leads), cmp.Compare(gb.visits, ga.visits), cmp.Compare(a, b))
		})
	}
	for i, k := range keys {
		c := *groups[k]
		if i >= MaxRows && q.By != ByDay {
			other.visits, other.leads, other.delivered = other.visits+c.visits, other.leads+c.leads, other.delivered+c.delivered
			continue
		}
		rep.Rows = append(rep.Rows, row(k, c))
	}
	if len(keys) > MaxRows && q.By != ByDay {
		o := row("", other)
		rep.Other = &o
	}
	rep.Total = row("", total)
	return rep, nil
}

func visitKey(q Query, v *visit.Visit) string {
	switch q.By {
	case BySource:
		return v.Source
	case ByUTMSource:
		return v.UTM["source"]
	case ByUTMCampaign:
		return v.UTM["campaign"]
	case ByLanding:
		return LandingKey(v.Landing)
	case ByDay:
		return v.At.In(q.Loc).Format(DateLayout)
	}
	return ""
}

func leadKey(q Query, l *lead.Lead) string {
	switch q.By {
	case ByForm:
		return l.Form
	case ByDay:
		return l.CreatedAt.In(q.Loc).Format(DateLayout)
	}
	v := l.Visit
	if v == nil {
		v = &lead.Visit{}
	}
	source := v.Source
	if source == "" && (v.Landing != "" || v.Referrer != "" || len(v.UTM) > 0) {
		source = visit.Classify(l.Site, v.Referrer, v.UTM, v.Clicks) // a lead from before visits were recorded
	}
	return visitKey(q, &visit.Visit{Source: source, UTM: v.UTM, Landing: v.Landing})
}

// LandingKey is a landing URL as the report groups it: host and path,
// without the query (the tags) or the fragment.
func LandingKey(landing string) string {
	if landing == "" {
		return ""
	}
	u, err := url.Parse(landing)
	if err != nil || u.Host == "" {
		return visit.Clamp(landing, 200)
	}
	return strings.ToLower(u.Host) + u.EscapedPath()
}
