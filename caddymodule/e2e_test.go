package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/webhook"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// upstream records a fingerprint of every request it gets: method, URI,
// headers (but Host and X-Forwarded-Host, which differ by site) and body.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	prints []string
	bodies [][]byte
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		u.mu.Lock()
		u.prints = append(u.prints, fingerprint(r, body))
		u.bodies = append(u.bodies, body)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html><html><head><title>ok</title></head><body>thanks</body></html>")
	}))
	t.Cleanup(u.Close)
	return u
}

func fingerprint(r *http.Request, body []byte) string {
	var keys []string
	for k := range r.Header {
		if k == "X-Forwarded-Host" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.RequestURI())
	for _, k := range keys {
		fmt.Fprintf(h, "%s: %s\n", k, strings.Join(r.Header[k], "\x00"))
	}
	fmt.Fprintf(h, "content-length: %d\n", r.ContentLength)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func (u *upstream) last() (string, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.prints) == 0 {
		return "", nil
	}
	return u.prints[len(u.prints)-1], u.bodies[len(u.bodies)-1]
}

type leadList struct {
	Leads      []lead.Lead `json:"leads"`
	NextCursor string      `json:"next_cursor"`
}

const e2eSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		{{DESTS}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		form "Заявка с сайта" {
			submit  "#contact-form"
			name    field name
			phone   field phone
			email   field email
			comment field message
			extra   "Город" field city
			crm     status_id static "123123"
		}
		form "Обратный звонок" {
			post    /callback
			require phone
		}
	}
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_PLAIN}} {
	reverse_proxy {{UPSTREAM}}
}
`

// markerCookie is the marker the script sets for form title's submit to
// /contact, with the token c.js at site carries.
func markerCookie(t *testing.T, site, title, sid string, values map[string]string) *http.Cookie {
	v, err := intercept.EncodeCookieJSON(intercept.Marker{V: 1, Rule: intercept.RuleID(title), SID: sid, Action: "/contact", Values: values,
		Token: siteToken(t, site, intercept.RuleID(title))})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: intercept.MarkerCookie, Value: v}
}

// TestUpstreamSeesRequestUnchanged sends the same requests through a site
// with leadproxy and a plain reverse_proxy site, and compares what the
// upstream received: method, URI, headers and body bytes.
func TestUpstreamSeesRequestUnchanged(t *testing.T) {
	up := newUpstream(t)
	c := startCaddy(t, e2eSite, map[string]string{"UPSTREAM": up.URL, "DESTS": ""})

	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("name", "Анна")
	mw.WriteField("phone", "8 (999) 765-43-21")
	fw, _ := mw.CreateFormFile("resume", "cv.pdf")
	fw.Write(bytes.Repeat([]byte("%PDF-binary\x00\xff"), 400_000)) // ~5 MB: spooled to disk
	mw.Close()

	cases := []struct {
		name, path, ctype string
		body              []byte
		cookie            bool
		wantLead          bool
	}{
		{"urlencoded marked", "/contact", "application/x-www-form-urlencoded",
			[]byte("name=%D0%98%D0%B2%D0%B0%D0%BD&phone=%2B7+999+123-45-67&email=ivan%40example.com&message=hi&city=Moscow&password=secret"), true, true},
		{"json post rule", "/callback", "application/json", []byte(`{"phone":"+7 999 000 11 22","name":"Олег","nested":{"x":[1,2]}}`), false, true},
		{"multipart with file", "/callback", mw.FormDataContentType(), mp.Bytes(), false, true},
		{"post rule without required field", "/callback", "application/x-www-form-urlencoded", []byte("name=x"), false, false},
		{"not a form path", "/other", "application/x-www-form-urlencoded", []byte("phone=89991112233"), false, false},
		{"malformed json", "/callback", "application/json", []byte(`{"phone": "89991112233"`), false, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before leadList
			c.AdminJSON("/leadproxy/leads?limit=500", &before)
			send := func(base string) string {
				req, _ := http.NewRequest("POST", base+tc.path+"?utm=1&x=%20y", bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", tc.ctype)
				req.Header.Set("X-Custom", fmt.Sprintf("v%d", i))
				req.Header.Set("Accept", "*/*")
				if tc.cookie {
					req.AddCookie(markerCookie(t, c.URL("PORT_SITE"), "Заявка с сайта", fmt.Sprintf("sid-unchanged-%d", i), nil))
				}
				resp, err := noCompress.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				fp, body := up.last()
				if !bytes.Equal(body, tc.body) {
					t.Fatalf("upstream body differs: %d bytes, sent %d", len(body), len(tc.body))
				}
				return fp
			}
			plain := send(c.URL("PORT_PLAIN"))
			via := send(c.URL("PORT_SITE"))
			if plain != via {
				t.Fatalf("upstream saw a different request through leadproxy")
			}
			var after leadList
			c.AdminJSON("/leadproxy/leads?limit=500", &after)
			if got := len(after.Leads) - len(before.Leads); (got == 1) != tc.wantLead || got > 1 {
				t.Fatalf("leads added: %d, want lead: %v", got, tc.wantLead)
			}
		})
	}

	var all leadList
	c.AdminJSON("/leadproxy/leads", &all)
	byForm := map[string]lead.Lead{}
	for _, l := range all.Leads {
		if _, seen := byForm[l.Mechanism]; !seen {
			byForm[l.Mechanism] = l
		}
	}
	sub := byForm["submit"]
	if sub.Name != "Иван" || sub.Phone != "+79991234567" || sub.Email != "ivan@example.com" || sub.Comment != "hi" ||
		sub.Extra["Город"] != "Moscow" || sub.CRM["status_id"] != "123123" || sub.Title != "Заявка с сайта" {
		t.Errorf("submit lead: %+v", sub)
	}
	if _, leaked := sub.Fields["password"]; leaked {
		t.Errorf("password captured: %v", sub.Fields)
	}
	if sub.Status() != lead.StatusSkipped || len(sub.Deliveries) != 0 {
		t.Errorf("no destination: want skipped, got %v", sub.Deliveries)
	}
	if post := byForm["post"]; post.Phone == "" || post.Form != "Обратный звонок" {
		t.Errorf("post lead: %+v", post)
	}
}

// TestWebhookReceivesSignedLead: the demo path with a webhook destination;
// the receiver verifies the Standard Webhooks signature and answers an id,
// which the lead shows as its crm_id.
func TestWebhookReceivesSignedLead(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := webhook.DecodeSecret(secret)
	var mu sync.Mutex
	var got []webhook.Envelope
	fail := 2 // the receiver is down for the first two attempts
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(key, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), 401)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			http.Error(w, "down", 503)
			return
		}
		var env webhook.Envelope
		json.Unmarshal(body, &env)
		got = append(got, env)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"deal-%d"}`, len(got))
	}))
	defer recv.Close()
	up := newUpstream(t)
	t.Setenv("TEST_WEBHOOK_SECRET", secret)
	c := startCaddy(t, e2eSite, map[string]string{"UPSTREAM": up.URL,
		"DESTS": "destination hook webhook {\n url " + recv.URL + "\n secret {env.TEST_WEBHOOK_SECRET}\n}\nretry_for 1h"})
	// fast retries for the test: the engine's backoff starts at seconds
	form := url.Values{"name": {"Пётр"}, "phone": {"+7 912 345 67 89"}}
	req, _ := http.NewRequest("POST", c.URL("PORT_SITE")+"/callback", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var l lead.Lead
	var seen string // what the last poll saw, for the failure message
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last poll: %s", seen)
		}
	})
	waitFor(t, "delivery to the webhook", 90*time.Second, func() bool {
		var list leadList
		code := c.AdminJSON("/leadproxy/leads", &list)
		seen = fmt.Sprintf("list: HTTP %d, %d leads", code, len(list.Leads))
		if len(list.Leads) != 1 {
			return false
		}
		seen += fmt.Sprintf("; lead %s: %+v", list.Leads[0].ID, list.Leads[0].Deliveries)
		l = lead.Lead{} // decoding into a used struct would keep stale fields
		c.AdminJSON("/leadproxy/leads/"+list.Leads[0].ID, &l)
		return l.Status() == lead.StatusDelivered
	})
	d := l.Delivery("hook")
	if d == nil || d.CRMID != "deal-1" || d.Attempts != 3 || d.DeliveredAt == nil || d.LastError != "" {
		t.Fatalf("delivery: %+v", d)
	}
	// The one-lead view lists the attempts, oldest first.
	var detail struct {
		Deliveries []struct {
			History []struct {
				Outcome    string `json:"outcome"`
				HTTPStatus int    `json:"http_status"`
				CRMID      string `json:"crm_id"`
			} `json:"history"`
		} `json:"deliveries"`
	}
	c.AdminJSON("/leadproxy/leads/"+l.ID, &detail)
	if h := fmt.Sprint(detail.Deliveries); h != "[{[{retry 503 } {retry 503 } {delivered 0 deal-1}]}]" {
		t.Errorf("attempt history %s", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Data.Phone != "+79123456789" || got[0].Data.ID != l.ID || got[0].Type != "lead.created" {
		t.Fatalf("webhook got %+v", got)
	}
}
