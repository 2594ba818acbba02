package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/amocrm/amocrmtest"
	"github.com/leadproxy/leadproxy/crm/bitrix24/bitrix24test"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/email/emailtest"
	"github.com/leadproxy/leadproxy/crm/freshoffice/freshofficetest"
	"github.com/leadproxy/leadproxy/crm/megaplan/megaplantest"
	"github.com/leadproxy/leadproxy/crm/moysklad"
	"github.com/leadproxy/leadproxy/crm/moysklad/moyskladtest"
	"github.com/leadproxy/leadproxy/crm/retailcrm"
	"github.com/leadproxy/leadproxy/crm/retailcrm/retailcrmtest"
	"github.com/leadproxy/leadproxy/crm/roistat/roistattest"
	"github.com/leadproxy/leadproxy/crm/salesforce/salesforcetest"
	"github.com/leadproxy/leadproxy/crm/telegram/telegramtest"
	"github.com/leadproxy/leadproxy/crm/uon/uontest"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// What every TestCRMEndToEnd visitor types, and what the CRMs must get.
const (
	crmE2EName    = "Иван Петров"
	crmE2EFirst   = "Иван"
	crmE2ELast    = "Петров"
	crmE2EPhoneIn = "8 (999) 123-45-67"
	crmE2EPhone   = "+79991234567"
	crmE2EEmail   = "ivan@example.com"
	crmE2EMessage = "Перезвоните после 18:00, пожалуйста"
	crmE2ECity    = "Москва"
	crmE2EVisit   = "v-crm-e2e-0001"
	crmE2EUTM     = "yandex"
)

// crmE2ESite is one Caddy in front of every fake CRM: one destination per
// case in the global block, and one form per case, posted to its own path
// and sent only to its own destination.
const crmE2ESite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		retry_for 1h
{{DESTS}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
{{FORMS}}
	}
	reverse_proxy {{UPSTREAM}}
}
`

// crmCase is one destination of TestCRMEndToEnd.
type crmCase struct {
	name     string // subtest, destination name, form path
	typ      string // destination type
	key, val string // the form's `crm <key> static "<val>"`
	opts     string // the destination's option lines (the fake's Caddyfile())
	faults   *crmtest.Faults
	fault    crmtest.Fault // the fake's first answer (retryable); None for a clean delivery
	creates  func() int    // create requests the fake accepted
	// check asserts the one record the fake created for l and returns the
	// id the fake issued for it.
	check func(t *testing.T, l *lead.Lead) string
}

func (c *crmCase) title() string { return "Заявка " + c.name }

// TestCRMEndToEnd posts a form through a real Caddy for every destination
// type and checks what each fake CRM received and what the admin API shows.
func TestCRMEndToEnd(t *testing.T) {
	cases := []*crmCase{
		amoCase(t, "amocrm"),
		bitrixCase(t, "bitrix24_lead", "lead"),
		bitrixCase(t, "bitrix24_deal", "deal"),
		retailCase(t, "retailcrm"),
		moyskladCase(t, "moysklad"),
		megaplanCase(t, "megaplan"),
		salesforceCase(t, "salesforce"),
		freshofficeCase(t, "freshoffice"),
		uonCase(t, "uon"),
		roistatCase(t, "roistat"),
		telegramCase(t, "telegram"),
		emailCase(t, "email"),
	}
	// Two more leads meet a documented retryable answer first and must
	// still arrive exactly once.
	b24Retry := bitrixCase(t, "bitrix24_after_QUERY_LIMIT_EXCEEDED", "lead")
	b24Retry.fault = crmtest.QueryLimit // 503 {"error":"QUERY_LIMIT_EXCEEDED"}
	skladRetry := moyskladCase(t, "moysklad_after_429")
	skladRetry.fault = crmtest.RateJSON // 429 code 1049, X-Lognex-Retry-After 1500 ms
	mailRetry := emailCase(t, "email_after_451")
	mailRetry.fault = crmtest.ServerError // 451 4.3.0 Local error in processing
	cases = append(cases, b24Retry, skladRetry, mailRetry)

	var dests, forms strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&dests, "\t\tdestination %s %s {\n\t\t\t%s\n\t\t}\n", c.name, c.typ, strings.ReplaceAll(c.opts, "\n", "\n\t\t\t"))
		fmt.Fprintf(&forms, "\t\tform %q {\n\t\t\tpost /contact/%s\n\t\t\trequire phone\n\t\t\textra \"Город\" field city\n\t\t\tcrm %s static %q\n\t\t\tsend_to %s\n\t\t}\n",
			c.title(), c.name, c.key, c.val, c.name)
	}
	up := newUpstream(t)
	srv := startCaddy(t, crmE2ESite, map[string]string{"UPSTREAM": up.URL, "DESTS": dests.String(), "FORMS": forms.String()})

	visit, err := intercept.EncodeCookieJSON(intercept.VisitInfo{ID: crmE2EVisit, UTM: map[string]string{"source": crmE2EUTM, "medium": "cpc"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.fault != crmtest.None {
				c.faults.Push(c.fault)
			}
			form := url.Values{"name": {crmE2EName}, "phone": {crmE2EPhoneIn}, "email": {crmE2EEmail},
				"message": {crmE2EMessage}, "city": {crmE2ECity}}
			body := form.Encode()
			req, _ := http.NewRequest("POST", srv.URL("PORT_SITE")+"/contact/"+c.name, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: intercept.VisitCookie, Value: visit})
			resp, err := noCompress.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("form post: status %d", resp.StatusCode)
			}
			if _, got := up.last(); string(got) != body {
				t.Fatalf("upstream got %q, want the form as posted", got)
			}

			var l lead.Lead
			waitFor(t, "delivery to "+c.name, 30*time.Second, func() bool {
				var list leadList
				srv.AdminJSON("/leadproxy/leads?form="+url.QueryEscape(c.title()), &list)
				if len(list.Leads) == 0 {
					return false
				}
				if len(list.Leads) != 1 {
					t.Fatalf("%d leads for one post", len(list.Leads))
				}
				l = lead.Lead{} // fresh: decoding over the last poll would keep fields now omitted
				if code := srv.AdminJSON("/leadproxy/leads/"+list.Leads[0].ID, &l); code != 200 {
					t.Fatalf("GET lead: %d", code)
				}
				if d := l.Delivery(c.name); d != nil && d.Status == lead.StatusFailed {
					t.Fatalf("delivery failed: %s", d.LastError)
				}
				return l.Status() == lead.StatusDelivered
			})

			if l.Phone != crmE2EPhone || l.Name != crmE2EName || l.Email != crmE2EEmail || l.Comment != crmE2EMessage ||
				l.CRM[c.key] != c.val || l.Extra["Город"] != crmE2ECity || l.Visit == nil || l.Visit.UTM["source"] != crmE2EUTM {
				t.Errorf("captured lead: %+v", l)
			}
			if len(l.Deliveries) != 1 {
				t.Fatalf("deliveries: %+v, want only %s", l.Deliveries, c.name)
			}
			d := l.Deliveries[0]
			wantAttempts := 1
			if c.fault != crmtest.None {
				wantAttempts = 2
			}
			if d.Destination != c.name || d.Attempts != wantAttempts || d.DeliveredAt == nil || d.LastError != "" {
				t.Errorf("delivery: %+v, want %d attempt(s)", d, wantAttempts)
			}
			if n := c.creates(); n != 1 {
				t.Fatalf("the fake accepted %d create requests, want exactly 1", n)
			}
			if id := c.check(t, &l); d.CRMID != id {
				t.Errorf("crm_id %q, the fake issued %q", d.CRMID, id)
			}
		})
	}
	// Each lead went only to its own destination, once: nothing arrived
	// late (a second attempt) or elsewhere (send_to).
	for _, c := range cases {
		if n := c.creates(); n != 1 {
			t.Errorf("%s: %d create requests by the end, want 1", c.name, n)
		}
	}
}

// checkSummary asserts that text carries the lead's summary: the visitor's
// message, the extra field and the attribution.
func checkSummary(t *testing.T, what, text string) {
	t.Helper()
	for _, want := range []string{crmE2EMessage, "Город: " + crmE2ECity, "utm_source: " + crmE2EUTM} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

func amoCase(t *testing.T, name string) *crmCase {
	f := amocrmtest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "amocrm", key: "status_id", val: "142", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Leads()) },
		check: func(t *testing.T, l *lead.Lead) string {
			got := f.Leads()[0]
			if got.Name != l.Title || got.StatusID != 142 || got.RequestID != l.ID {
				t.Errorf("lead: name %q status_id %d request_id %q", got.Name, got.StatusID, got.RequestID)
			}
			if v, _ := amocrmtest.Field(got.CustomFieldsValues, "UTM_SOURCE"); v != crmE2EUTM {
				t.Errorf("UTM_SOURCE %q", v)
			}
			if len(got.Embedded.Contacts) != 1 {
				t.Fatalf("contacts: %+v", got.Embedded.Contacts)
			}
			ct := got.Embedded.Contacts[0]
			phone, _ := amocrmtest.Field(ct.CustomFieldsValues, "PHONE")
			email, _ := amocrmtest.Field(ct.CustomFieldsValues, "EMAIL")
			if ct.FirstName != crmE2EFirst || ct.LastName != crmE2ELast || phone != crmE2EPhone || email != crmE2EEmail {
				t.Errorf("contact: %+v", ct)
			}
			notes := f.Notes()
			if len(notes) != 1 || notes[0].LeadID != got.ID || notes[0].NoteType != "common" {
				t.Fatalf("notes: %+v", notes)
			}
			checkSummary(t, "note", notes[0].Text)
			return strconv.FormatInt(got.ID, 10)
		}}
}

// bitrixCase: the fake numbers every record it stores in sequence, so a
// contact added first reveals the ids the delivery will get.
func bitrixCase(t *testing.T, name, entity string) *crmCase {
	f := bitrix24test.New()
	t.Cleanup(f.Close)
	f.Entity = entity
	probe, _ := strconv.Atoi(f.AddContact(bitrix24test.Fields{"NAME": "probe"}))
	nextID := func(n int) string { return strconv.Itoa(probe + n) }
	checkPerson := func(t *testing.T, what string, p bitrix24test.Fields) {
		phones, ptypes := p.Multi("PHONE")
		emails, _ := p.Multi("EMAIL")
		if p.Str("NAME") != crmE2EFirst || p.Str("LAST_NAME") != crmE2ELast || fmt.Sprint(phones) != "["+crmE2EPhone+"]" ||
			fmt.Sprint(ptypes) != "[WORK]" || fmt.Sprint(emails) != "["+crmE2EEmail+"]" {
			t.Errorf("%s person fields: %v", what, p)
		}
	}
	c := &crmCase{name: name, typ: "bitrix24", opts: f.Caddyfile(), faults: f.Faults}
	if entity == "lead" {
		c.key, c.val = "UF_CRM_1425989455", "Текст"
		c.creates = func() int { return len(f.Leads()) }
		c.check = func(t *testing.T, l *lead.Lead) string {
			got := f.Leads()[0]
			if calls := f.Calls(); fmt.Sprint(calls) != "[crm.lead.add]" {
				t.Errorf("calls: %v", calls)
			}
			checkPerson(t, "lead", got)
			if got.Str("TITLE") != l.Title || got.Str("UF_CRM_1425989455") != "Текст" || got.Str("ORIGIN_ID") != l.ID ||
				got.Str("SOURCE_ID") != "WEB" || got.Str("UTM_SOURCE") != crmE2EUTM {
				t.Errorf("lead fields: %v", got)
			}
			checkSummary(t, "COMMENTS", got.Str("COMMENTS"))
			return nextID(1)
		}
		return c
	}
	c.key, c.val = "OPPORTUNITY", "123"
	c.creates = func() int { return len(f.Deals()) }
	c.check = func(t *testing.T, l *lead.Lead) string {
		if calls := f.Calls(); fmt.Sprint(calls) != "[crm.contact.add crm.deal.add]" {
			t.Errorf("calls: %v", calls)
		}
		contacts := f.Contacts()
		if len(contacts) != 1 {
			t.Fatalf("%d contacts", len(contacts))
		}
		checkPerson(t, "contact", contacts[0])
		got := f.Deals()[0]
		if got.Str("TITLE") != l.Title || got.Str("OPPORTUNITY") != "123" || got.Str("ORIGIN_ID") != l.ID ||
			fmt.Sprint(got["CONTACT_IDS"]) != "["+nextID(1)+"]" {
			t.Errorf("deal fields: %v", got)
		}
		checkSummary(t, "COMMENTS", got.Str("COMMENTS"))
		return nextID(2)
	}
	return c
}

func retailCase(t *testing.T, name string) *crmCase {
	f := retailcrmtest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "retailcrm", key: "orderMethod", val: "landing-page", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Orders()) },
		check: func(t *testing.T, l *lead.Lead) string {
			o := f.Orders()[0]
			if o.Site != retailcrmtest.Site || o.ExternalID != retailcrm.ExternalIDPrefix+l.ID || o.FirstName != crmE2EFirst ||
				o.LastName != crmE2ELast || o.Phone != crmE2EPhone || o.Email != crmE2EEmail || o.CustomerComment != crmE2EMessage ||
				o.OrderMethod != "landing-page" {
				t.Errorf("order: %+v", o)
			}
			if o.Source == nil || o.Source.Source != crmE2EUTM || o.Source.Medium != "cpc" {
				t.Errorf("order source: %+v", o.Source)
			}
			checkSummary(t, "managerComment", o.ManagerComment)
			return strconv.Itoa(o.ID)
		}}
}

func moyskladCase(t *testing.T, name string) *crmCase {
	f := moyskladtest.New()
	t.Cleanup(f.Close)
	const state = "fb56c504-2e58-11e6-8a84-bae500000069"
	return &crmCase{name: name, typ: "moysklad", key: "state_uuid", val: state, opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Orders()) },
		check: func(t *testing.T, l *lead.Lead) string {
			cps := f.Counterparties()
			if len(cps) != 1 {
				t.Fatalf("%d counterparties", len(cps))
			}
			cp := cps[0]
			if cp.Name != crmE2EName || cp.Phone != crmE2EPhone || cp.Email != crmE2EEmail || cp.CompanyType != "individual" {
				t.Errorf("counterparty: %+v", cp)
			}
			o := f.Orders()[0]
			if o.State == nil || o.State.Meta.Href != moysklad.HrefBase+"/entity/customerorder/metadata/states/"+state {
				t.Errorf("order state: %+v", o.State)
			}
			if o.Agent == nil || o.Agent.Meta.Href != moysklad.HrefBase+"/entity/counterparty/"+cp.ID {
				t.Errorf("order agent: %+v, counterparty %s", o.Agent, cp.ID)
			}
			if o.Organization == nil || !strings.HasSuffix(o.Organization.Meta.Href, "/"+moyskladtest.Organization) {
				t.Errorf("order organization: %+v", o.Organization)
			}
			if o.SyncID != moysklad.SyncID("customerorder", l.ID) {
				t.Errorf("order syncId %q", o.SyncID)
			}
			for _, want := range []string{"Имя: " + crmE2EName, "Телефон: " + crmE2EPhone, "Email: " + crmE2EEmail} {
				if !strings.Contains(o.Description, want) {
					t.Errorf("description lacks %q:\n%s", want, o.Description)
				}
			}
			checkSummary(t, "description", o.Description)
			return o.ID
		}}
}

func megaplanCase(t *testing.T, name string) *crmCase {
	f := megaplantest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "megaplan", key: "Cost", val: "123", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Deals()) },
		check: func(t *testing.T, l *lead.Lead) string {
			cs := f.Contractors()
			if len(cs) != 1 {
				t.Fatalf("%d contractors", len(cs))
			}
			infos := fmt.Sprint(cs[0]["contactInfo"])
			if cs[0]["firstName"] != crmE2EFirst || cs[0]["lastName"] != crmE2ELast ||
				!strings.Contains(infos, crmE2EPhone) || !strings.Contains(infos, crmE2EEmail) {
				t.Errorf("contractor: %v", cs[0])
			}
			d := f.Deals()[0]
			cost, _ := d["cost"].(map[string]any)
			if cost["contentType"] != "Money" || fmt.Sprint(cost["value"]) != "123" {
				t.Errorf("deal cost: %v", d["cost"])
			}
			program, _ := d["program"].(map[string]any)
			contractor, _ := d["contractor"].(map[string]any)
			if fmt.Sprint(program["id"]) != strconv.Itoa(megaplantest.Program) || contractor["contentType"] != "ContractorHuman" {
				t.Errorf("deal links: program %v contractor %v", d["program"], d["contractor"])
			}
			desc, _ := d["description"].(string)
			if !strings.Contains(desc, "Имя: "+crmE2EName) {
				t.Errorf("description lacks the name:\n%s", desc)
			}
			checkSummary(t, "description", desc)
			ids := f.DealIDs()
			if len(ids) != 1 {
				t.Fatalf("deal ids: %v", ids)
			}
			return ids[0]
		}}
}

func salesforceCase(t *testing.T, name string) *crmCase {
	f := salesforcetest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "salesforce", key: "Company", val: "ООО Ромашка", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Leads()) },
		check: func(t *testing.T, l *lead.Lead) string {
			got := f.Leads()[0]
			if got["FirstName"] != crmE2EFirst || got["LastName"] != crmE2ELast || got["Phone"] != crmE2EPhone ||
				got["Email"] != crmE2EEmail || got["Company"] != "ООО Ромашка" || got["LeadSource"] != "Web" {
				t.Errorf("lead: %v", got)
			}
			desc, _ := got["Description"].(string)
			checkSummary(t, "Description", desc)
			return f.LeadIDs()[0]
		}}
}

func freshofficeCase(t *testing.T, name string) *crmCase {
	f := freshofficetest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "freshoffice", key: "summa", val: "1500", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Deals()) },
		check: func(t *testing.T, l *lead.Lead) string {
			cs := f.Companies()
			if len(cs) != 1 {
				t.Fatalf("%d contractors", len(cs))
			}
			if cs[0].Name != crmE2EName || fmt.Sprint(cs[0].Phones) != "["+crmE2EPhone+"]" || fmt.Sprint(cs[0].Emails) != "["+crmE2EEmail+"]" {
				t.Errorf("contractor: %+v", cs[0])
			}
			d := f.Deals()[0]
			if d.Name != l.Title || strconv.FormatInt(d.CompanyID, 10) != cs[0].ID || d.UserID != freshofficetest.Manager ||
				fmt.Sprint(d.Raw["sum"]) != "1500" {
				t.Errorf("deal: %+v", d)
			}
			if _, isNum := d.Raw["sum"].(json.Number); !isNum {
				t.Errorf("deal sum %#v: want a number", d.Raw["sum"])
			}
			checkSummary(t, "note", d.Note)
			return d.ID
		}}
}

func uonCase(t *testing.T, name string) *crmCase {
	f := uontest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "uon", key: "price", val: "3000", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Leads()) },
		check: func(t *testing.T, l *lead.Lead) string {
			got := f.Leads()[0]
			p := got.Form
			if p.Get("u_name") != crmE2EFirst || p.Get("u_surname") != crmE2ELast || p.Get("u_phone") != crmE2EPhone ||
				p.Get("u_email") != crmE2EEmail || p.Get("price") != "3000" {
				t.Errorf("lead/create form: %v", p)
			}
			checkSummary(t, "note", p.Get("note"))
			return got.ID
		}}
}

func roistatCase(t *testing.T, name string) *crmCase {
	f := roistattest.New()
	t.Cleanup(f.Close)
	return &crmCase{name: name, typ: "roistat", key: "status_id", val: "123123", opts: f.Caddyfile(), faults: f.Faults,
		creates: func() int { return len(f.Leads()) },
		check: func(t *testing.T, l *lead.Lead) string {
			got := f.Leads()[0]
			if got.Method != http.MethodGet || got.Roistat != crmE2EVisit || got.Title != l.Title || got.Name != crmE2EName ||
				got.Phone != crmE2EPhone || got.Email != crmE2EEmail || got.Fields["status_id"] != "123123" || len(got.Fields) != 1 {
				t.Errorf("proxy lead: %+v", got)
			}
			checkSummary(t, "comment", got.Comment)
			return got.ID
		}}
}

func telegramCase(t *testing.T, name string) *crmCase {
	f := telegramtest.New()
	t.Cleanup(f.Close)
	opts := "base_url " + f.URL + "\ntoken " + telegramtest.Token + "\nchat " + telegramtest.User
	return &crmCase{name: name, typ: "telegram", key: "tag", val: "alert", opts: opts, faults: f.Faults,
		creates: func() int { return f.Sent.Len() },
		check: func(t *testing.T, l *lead.Lead) string {
			got := f.Sent.All()[0]
			for _, want := range []string{"Новая заявка: " + l.Form, "name: " + crmE2EName, "phone: " + crmE2EPhone,
				"comment: " + crmE2EMessage, "Город: " + crmE2ECity, "Источник: " + crmE2EUTM} {
				if !strings.Contains(got.Plain, want) {
					t.Errorf("the chat shows %q, without %q", got.Plain, want)
				}
			}
			return telegramtest.User + ":" + strconv.FormatInt(got.MessageID, 10)
		}}
}

func emailCase(t *testing.T, name string) *crmCase {
	s, err := emailtest.Start(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &crmCase{name: name, typ: "email", key: "tag", val: "alert", opts: s.Caddyfile(), faults: s.Faults,
		creates: func() int { return s.Received.Len() },
		check: func(t *testing.T, l *lead.Lead) string {
			got := string(s.Received.All()[0].Data)
			for _, want := range []string{"Message-ID: <" + l.ID + "@leadproxy>", "Reply-To: <" + crmE2EEmail + ">",
				"phone: " + crmE2EPhone} {
				if !strings.Contains(got, want) {
					t.Errorf("the message lacks %q:\n%s", want, got)
				}
			}
			return "<" + l.ID + "@leadproxy>"
		}}
}
