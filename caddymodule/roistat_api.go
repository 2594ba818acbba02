package caddymodule

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// serveRoistatAPI is {prefix}/api/proxy/1.0/leads/add: Roistat's proxy
// lead API, so a site that called Roistat from its backend switches by
// changing the host. GET query or POST form; answers Roistat's JSON.
func (hd *Handler) serveRoistatAPI(w http.ResponseWriter, r *http.Request) {
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, msg string) {
		answer(status, map[string]string{"status": "error", "error": msg})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	params, err := roistatParams(r, hd.MaxBody)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	if subtle.ConstantTimeCompare([]byte(params.Get("key")), []byte(hd.apiKey)) != 1 {
		fail(http.StatusForbidden, "invalid key")
		return
	}
	l, skip := roistatLead(params, hd.PhoneRegion)
	l.Visit = intercept.Visit(r, &intercept.VisitInfo{ID: params.Get("roistat")}, r.Referer())
	if l.Visit.ID == "nocookie" {
		l.Visit.ID = ""
	}
	var dests []string
	if !skip {
		dests = hd.destinationsFor(nil)
	}
	l.Site = siteOf(r)
	ctx, end := startCaptureSpan(r.Context(), r, l)
	stored, _, err := hd.app.Capture(ctx, l, dests)
	end(err)
	if err != nil {
		countCaptureFailure("store")
		fail(http.StatusServiceUnavailable, "lead not stored, try again")
		return
	}
	countCaptured(l.Form, l.Mechanism)
	answer(http.StatusOK, map[string]any{"status": "success", "data": map[string]string{"id": stored.ID}})
}

// roistatParams merges the query and, for POST, the urlencoded or
// multipart form. fields[charset]=Windows-1251 decodes values from cp1251.
func roistatParams(r *http.Request, max int64) (url.Values, error) {
	raw := r.URL.RawQuery
	vals := url.Values{}
	if r.Method == http.MethodPost {
		ct := r.Header.Get("Content-Type")
		body, ok := readLimited(r, max)
		if !ok {
			return nil, errTooLarge
		}
		if strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") || ct == "" {
			raw += "&" + string(body)
		} else {
			f, err := intercept.ParseBody(ct, strings.NewReader(string(body)), "", "")
			if err != nil {
				return nil, err
			}
			for _, x := range f {
				vals.Set(x.Name, x.Value)
			}
		}
	}
	q, err := url.ParseQuery(strings.TrimPrefix(raw, "&"))
	if err != nil && len(q) == 0 {
		return nil, err
	}
	charset := q.Get("fields[charset]")
	ct := "application/x-www-form-urlencoded"
	if charset != "" {
		ct += "; charset=" + charset
	}
	f, err := intercept.ParseBody(ct, strings.NewReader(strings.TrimPrefix(raw, "&")), charset, "")
	if err != nil {
		return nil, err
	}
	for _, x := range f {
		vals.Set(x.Name, x.Value)
	}
	// Roistat's key is a secret that never belongs in the fields, but the
	// exclusion rules don't know it: take it from the raw query.
	if k := q.Get("key"); k != "" {
		vals.Set("key", k)
	}
	return vals, nil
}

type apiError string

func (e apiError) Error() string { return string(e) }

const errTooLarge = apiError("request too large")

// roistatLead maps Roistat's parameters onto a lead.
func roistatLead(p url.Values, region string) (*lead.Lead, bool) {
	l := &lead.Lead{
		Title:     p.Get("title"),
		Form:      "api",
		Mechanism: lead.MechAPI,
		Name:      p.Get("name"),
		Phone:     lead.NormalizePhone(p.Get("phone"), region),
		Email:     strings.TrimSpace(p.Get("email")),
		Comment:   p.Get("comment"),
	}
	if l.Title == "" {
		l.Title = "Заявка с сайта"
	}
	for k, v := range p {
		if len(v) == 0 {
			continue
		}
		if name, ok := bracketKey(k, "fields"); ok && name != "charset" {
			if l.CRM == nil {
				l.CRM = map[string]string{}
			}
			l.CRM[name] = v[0]
		} else if name, ok := bracketKey(k, "client_fields"); ok {
			if l.Extra == nil {
				l.Extra = map[string]string{}
			}
			l.Extra[name] = v[0]
		}
	}
	for _, k := range []string{"order_creation_method", "sync", "is_need_check_order_in_processing", "is_need_check_order_in_processing_append"} {
		if v := p.Get(k); v != "" {
			if l.Fields == nil {
				l.Fields = map[string]string{}
			}
			l.Fields[k] = v
		}
	}
	if p.Get("is_need_callback") == "1" {
		l.Callback = &lead.Callback{Phone: lead.NormalizePhone(p.Get("callback_phone"), region)}
		if l.Callback.Phone == "" {
			l.Callback.Phone = l.Phone
		}
	}
	return l, p.Get("is_skip_sending") == "1"
}

// bracketKey reads "fields[NAME]" as NAME.
func bracketKey(k, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(k, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	return strings.TrimSuffix(rest, "]"), true
}
