package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/report"
)

// reportView is the dashboard's report (?view=report&by=&from=&to=): the
// table of report.Build and a chart of visits and leads by day, drawn
// here as SVG (the strict CSP allows no chart script from elsewhere, and
// needs none).
type reportView struct {
	page
	By, From, To string
	Bys          []string
	Report       *report.Report
	Chart        chartView
	Error        string
}

// chartView is two bar panels over the days of the range, visits above
// and leads below, each on its own scale (leads are a few per cent of
// visits: on one scale their bars would not show).
type chartView struct {
	W, H   int
	Panels []chartPanel
	Labels []chartLabel
	Empty  bool
}

type chartPanel struct {
	Name, Class string
	Top, Height float64
	Max         int
	Bars        []chartBar
}

type chartBar struct {
	X, Y, W, H float64
	Title      string
}

type chartLabel struct {
	X            float64
	Text, Anchor string
}

const (
	chartW, chartPanelH, chartGap, chartLeft = 760, 90, 28, 44
)

func buildChart(days *report.Report, lang string) chartView {
	c := chartView{W: chartW, H: 2*chartPanelH + 2*chartGap}
	n := len(days.Rows)
	if n == 0 {
		c.Empty = true
		return c
	}
	step := float64(chartW-chartLeft) / float64(n)
	bw := max(step*0.7, 1)
	visits := chartPanel{Name: tr(lang, "Visits"), Class: "visits", Top: 14, Height: chartPanelH}
	leads := chartPanel{Name: tr(lang, "Leads"), Class: "leads", Top: 14 + chartPanelH + chartGap, Height: chartPanelH}
	for _, r := range days.Rows {
		if r.Visits != nil {
			visits.Max = max(visits.Max, *r.Visits)
		}
		leads.Max = max(leads.Max, r.Leads)
	}
	if visits.Max == 0 && leads.Max == 0 {
		c.Empty = true
	}
	bar := func(p *chartPanel, i int, v int, day string) {
		h := 0.0
		if p.Max > 0 {
			h = float64(v) / float64(p.Max) * p.Height
		}
		x := chartLeft + float64(i)*step + (step-bw)/2
		p.Bars = append(p.Bars, chartBar{X: x, Y: p.Top + p.Height - h, W: bw, H: h, Title: fmt.Sprintf("%s: %s %d", day, p.Name, v)})
	}
	for i, r := range days.Rows {
		v := 0
		if r.Visits != nil {
			v = *r.Visits
		}
		bar(&visits, i, v, r.Key)
		bar(&leads, i, r.Leads, r.Key)
	}
	c.Panels = []chartPanel{visits, leads}
	for j, i := range []int{0, n / 2, n - 1} {
		if j == 1 && (i == 0 || i == n-1) || j == 2 && i == 0 {
			continue
		}
		c.Labels = append(c.Labels, chartLabel{X: chartLeft + float64(i)*step + step/2, Text: days.Rows[i].Key,
			Anchor: []string{"start", "middle", "end"}[j]})
	}
	return c
}

func (d *Dashboard) serveReport(w http.ResponseWriter, r *http.Request) {
	p := d.app.pooledOrCurrent()
	if p == nil {
		d.serveError(w, r, http.StatusServiceUnavailable, "Starting", "The lead store is not open yet; reload in a moment.")
		return
	}
	q := r.URL.Query()
	v := reportView{page: d.newPage("Where leads come from", q), Bys: report.Bys}
	query, err := report.ParseQuery(q, d.app.location(), time.Now())
	if err != nil {
		v.Error = err.Error()
		v.By, v.From, v.To = q.Get("by"), q.Get("from"), q.Get("to")
		d.render(w, r, http.StatusBadRequest, "report", v)
		return
	}
	rep, err := buildReport(p, query)
	if err == nil && query.By != report.ByDay {
		days := query
		days.By = report.ByDay
		var byDay *report.Report
		if byDay, err = report.Build(days, p.visitDB(), p.book); err == nil {
			v.Chart = buildChart(byDay, requestLang(r))
		}
	} else if err == nil {
		v.Chart = buildChart(rep, requestLang(r))
	}
	if err != nil {
		d.logger.Error("dashboard: report", zap.Error(err))
		d.serveError(w, r, http.StatusInternalServerError, "Error", "That did not work; see Caddy's log.")
		return
	}
	v.Report, v.By, v.From, v.To = rep, rep.By, rep.From, rep.To
	d.render(w, r, http.StatusOK, "report", v)
}

// percent shows a conversion as a percentage.
func percent(f *float64) string {
	if f == nil {
		return "—"
	}
	return strconv.FormatFloat(*f*100, 'f', 1, 64) + "%"
}

// dict builds a map for a sub-template's argument: dict "k" v "k2" v2.
func dict(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok {
			m[k] = kv[i+1]
		}
	}
	return m
}
