package caddymodule

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"

	"github.com/leadproxy/leadproxy/lead"
)

// serveRoistatAPI is {prefix}/api/proxy/1.0/leads/add: Roistat's proxy
// lead API, so a site that called Roistat from its backend switches by
// changing the host. GET query or POST form (urlencoded or multipart);
// answers {"status":"success","data":{"id":"..."}} or
// {"status":"error","error":"..."}.
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
		w.Header().Set("Allow", "GET, POST")
		fail(http.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	p, err := roistatParams(w, r, hd.MaxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(http.StatusRequestEntityTooLarge, "request too large")
			return
		}
		fail(http.StatusBadRequest, "malformed parameters")
		return
	}
	client, now := clientNetAddr(r), time.Now()
	if wait := hd.keyGuesses.Wait(client, now); wait > 0 {
		countCollectRejected("api_key_wait")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		fail(http.StatusTooManyRequests, "too many invalid keys from this address, retry later")
		return
	}
	if subtle.ConstantTimeCompare([]byte(p.Get("key")), []byte(hd.apiKey)) != 1 {
		hd.keyGuesses.Failed(client, now)
		fail(http.StatusForbidden, "invalid key")
		return
	}
	hd.keyGuesses.Succeeded(client)
	l := roistatLead(p, hd.PhoneRegion)
	hd.expandAPI(r, l) // the visit its roistat parameter names, and Roistat's placeholders
	var dests []string
	if p.Get("is_skip_sending") != "1" {
		dests = hd.destinationsFor(nil)
	}
	stored, _, err := hd.storeFor(r.Context(), r, l, dests, hd.DryRun)
	var budget *errBudget
	if errors.As(err, &budget) {
		fail(http.StatusTooManyRequests, "too many leads, try again later")
		return
	}
	if err != nil {
		fail(http.StatusServiceUnavailable, "lead not stored, try again")
		return
	}
	answer(http.StatusOK, map[string]any{"status": "success", "data": map[string]string{"id": stored.ID}})
}

// roistatParams reads the call's parameters: the query and, for a POST,
// the form, as PHP's http_build_query and curl send them (a POST without a
// Content-Type is read as urlencoded). Bytes that are not UTF-8 are decoded
// from the charset fields[charset] names, else windows-1251. Valid UTF-8
// stays as it is even when fields[charset] names another charset: Roistat's
// sample sets fields[charset]=Windows-1251 and is mostly pasted into UTF-8
// sites, and Cyrillic windows-1251 text is practically never valid UTF-8
// (its letters are all lead bytes, none a continuation byte).
func roistatParams(w http.ResponseWriter, r *http.Request, max int64) (url.Values, error) {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, max)
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	err := r.ParseForm()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && r.Method == http.MethodPost && mt == "multipart/form-data" {
		err = r.ParseMultipartForm(max)
		if r.MultipartForm != nil {
			defer r.MultipartForm.RemoveAll()
		}
	}
	if err != nil {
		return nil, err
	}
	charset := r.Form.Get("fields[charset]")
	enc, err := htmlindex.Get(charset)
	if err != nil {
		enc, _ = htmlindex.Get("windows-1251")
	}
	dec := func(s string) string {
		if utf8.ValidString(s) {
			return s
		}
		if out, err := enc.NewDecoder().String(s); err == nil {
			return out
		}
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	out := url.Values{}
	for k, vs := range r.Form {
		for _, v := range vs {
			out.Add(dec(k), dec(v))
		}
	}
	return out, nil
}

// roistatOptions are Roistat's processing switches; they are kept in the
// lead's fields for the record.
var roistatOptions = []string{"order_creation_method", "sync", "is_need_check_order_in_processing", "is_need_check_order_in_processing_append"}

// roistatLead maps Roistat's parameters onto a lead: fields[...] are the
// CRM's deal fields (lead.CRM), client_fields[...] the contact's (kept as
// extra fields, which every CRM gets in the note), is_need_callback=1 asks
// for a call back to callback_phone or the lead's phone. The caller is the
// site's backend, so the visit is only Roistat's visit id: the request's
// address and user agent are the backend's, not the visitor's.
func roistatLead(p url.Values, region string) *lead.Lead {
	l := &lead.Lead{
		Title:     strings.TrimSpace(p.Get("title")),
		Form:      "api",
		Mechanism: lead.MechAPI,
		Name:      strings.TrimSpace(p.Get("name")),
		Phone:     lead.NormalizePhone(p.Get("phone"), region),
		Email:     strings.TrimSpace(p.Get("email")),
		Comment:   strings.TrimSpace(p.Get("comment")),
	}
	if l.Title == "" {
		l.Title = "Заявка с сайта"
	}
	if id := strings.TrimSpace(p.Get("roistat")); id != "" && id != "nocookie" {
		l.Visit = &lead.Visit{ID: id}
	}
	for k := range p {
		v := p.Get(k)
		if name, ok := bracketKey(k, "fields"); ok && name != "charset" {
			l.CRM = setKey(l.CRM, name, v)
		} else if name, ok := bracketKey(k, "client_fields"); ok {
			l.Extra = setKey(l.Extra, name, v)
		}
	}
	for _, k := range roistatOptions {
		if v := p.Get(k); v != "" {
			l.Fields = setKey(l.Fields, k, v)
		}
	}
	if p.Get("is_need_callback") == "1" {
		l.Callback = &lead.Callback{Phone: lead.NormalizePhone(p.Get("callback_phone"), region)}
		if l.Callback.Phone == "" {
			l.Callback.Phone = l.Phone
		}
	}
	return l
}

// bracketKey reads "fields[NAME]" as NAME; a nested key, as PHP writes
// arrays ("fields[goods][0][uuid]"), as "goods[0][uuid]".
func bracketKey(k, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(k, prefix+"[")
	if !ok {
		return "", false
	}
	name, more, ok := strings.Cut(rest, "]")
	if !ok || name == "" {
		return "", false
	}
	return name + more, true
}

func setKey(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}
