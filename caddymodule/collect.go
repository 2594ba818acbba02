package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// Limits of {prefix}/collect.
const (
	maxReport     = 64 << 10 // a report with 200 fields of a form fits easily
	collectBurst  = 20       // reports a client address may send at once
	collectPerMin = 30       // and per minute after that
	collectNetMin = 120      // reports per minute (and at once) from one IPv4 /24 or IPv6 /64
)

func newCollectLimiter() *intercept.Limiter {
	return intercept.NewLimiter(intercept.Rate{Burst: collectBurst, PerMinute: collectPerMin},
		intercept.Rate{Burst: collectNetMin, PerMinute: collectNetMin}, 0)
}

// serveCollect takes the capture script's report of a submission.
func (hd *Handler) serveCollect(w http.ResponseWriter, r *http.Request) {
	reject := func(status int, reason string) {
		countCollectRejected(reason)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reject(http.StatusMethodNotAllowed, "method")
		return
	}
	if !sameOrigin(r) {
		reject(http.StatusForbidden, "origin")
		return
	}
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if ct != "" && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/json") {
		reject(http.StatusUnsupportedMediaType, "content_type")
		return
	}
	if !hd.collect.Allow(clientNetAddr(r), time.Now()) {
		reject(http.StatusTooManyRequests, "rate")
		return
	}
	if r.ContentLength > maxReport {
		reject(http.StatusRequestEntityTooLarge, "too_large")
		return
	}
	body, ok := readLimited(r, maxReport)
	if !ok {
		reject(http.StatusRequestEntityTooLarge, "too_large")
		return
	}
	rep, err := intercept.ParseReport(body)
	if err != nil {
		if errors.Is(err, intercept.ErrReportHoneypot) {
			// Answer as if stored: a bot learns nothing.
			countCollectRejected("honeypot")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		reject(http.StatusBadRequest, "malformed")
		return
	}
	var rule *intercept.Rule
	mech := lead.MechAuto
	if rep.Rule != "auto" || !hd.Auto {
		rule = hd.rules[rep.Rule]
		if rule == nil {
			reject(http.StatusBadRequest, "unknown_rule")
			return
		}
		mech = rule.Mechanism()
	}
	in := intercept.Input{Values: rep.Values}
	for _, k := range lead.SortedKeys(rep.Fields) {
		in.Fields.Add(k, rep.Fields[k])
	}
	l := intercept.Extract(rule, in, hd.PhoneRegion)
	l.Mechanism, l.SubmissionID = mech, rep.SID
	if rule == nil {
		l.Form, l.Title = "auto", "Заявка с сайта"
	}
	vis := rep.Visit
	if vis == nil {
		vis = intercept.ReadVisit(r)
	}
	page := rep.Page
	if page == "" {
		page = r.Referer()
	}
	l.Visit = intercept.Visit(r, clientAddr(r), vis, page)
	if !intercept.HasContact(l) && (rule == nil || !rule.AllowNoContact) {
		// A step of a multi-step form, say, sent before the contact step:
		// not a lead, but not the page's error either, so a 2xx that the
		// browser's console does not show as a failed request.
		reject(http.StatusAccepted, "no_contact")
		return
	}
	if len(rep.Errors) > 0 {
		// "js source extra:Город threw: <message>": the message can quote
		// page data, so only the sources are named, at any level.
		sources := make([]string, 0, len(rep.Errors))
		for _, e := range rep.Errors {
			src, _, _ := strings.Cut(e, " threw")
			if len(src) > 120 {
				src = src[:120]
			}
			sources = append(sources, strings.ToValidUTF8(src, ""))
		}
		hd.logger.Warn("capture script sources failed in the browser", zap.String("form", l.Form), zap.Strings("sources", sources))
	}
	if _, _, err := hd.store(r.Context(), r, l, rule); err != nil {
		var budget *errBudget
		if errors.As(err, &budget) {
			reject(http.StatusTooManyRequests, "budget")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin accepts a report whose Origin (or, lacking it, Referer) is
// this site. Browsers always send Origin with sendBeacon and fetch POSTs.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Referer()
	}
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
