package bitrix24

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/bitrix24/bitrix24test"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/lead"
)

// newDest parses a destination block pointing at f (plus extra option
// lines) and provisions it, as Caddy would.
func newDest(t *testing.T, f *bitrix24test.Fake, extra string) *Bitrix24 {
	t.Helper()
	b := new(Bitrix24)
	if err := b.UnmarshalCaddyfile(caddyfile.NewTestDispenser("bitrix24 {\n" + f.Caddyfile() + "\n" + extra + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := b.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func testLead() *lead.Lead {
	return &lead.Lead{
		ID:      lead.NewID(time.Now()),
		Form:    "Форма обратного звонка",
		Title:   "Заявка с сайта",
		Name:    "Иван Петров",
		Phone:   "8 (999) 123-45-67",
		Email:   "ivan@example.com",
		Comment: "Перезвоните после 18:00",
		Extra:   map[string]string{"Город": "Москва"},
		Visit: &lead.Visit{
			Page: "https://example.com/",
			UTM:  map[string]string{"source": "yandex", "medium": "cpc", "campaign": "spring"},
		},
	}
}

func send(t *testing.T, b *Bitrix24, l *lead.Lead) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return b.Send(ctx, l)
}

func last(fs []bitrix24test.Fields) bitrix24test.Fields {
	if len(fs) == 0 {
		return nil
	}
	return fs[len(fs)-1]
}

// One row per line of Roistat's Bitrix24 `fields` examples: "Сделки" for
// entity deal, "лиды + сделки / Коробка" for entity lead. Each key lands
// on the lead or deal; ASSIGNED_BY_CONTACT_MANAGER takes the manager of
// the contact found by phone and links to that contact.
func TestCRMFields(t *testing.T) {
	type row struct {
		entity, key, val string
		check            func(f *bitrix24test.Fake, existing string) error
	}
	is := func(field, want string) func(*bitrix24test.Fake, string) error {
		return func(f *bitrix24test.Fake, _ string) error {
			rec := last(f.Leads())
			if f.Entity == EntityDeal {
				rec = last(f.Deals())
			}
			if got := rec.Str(field); got != want {
				return fmt.Errorf("%s = %q, want %q", field, got, want)
			}
			return nil
		}
	}
	rows := []row{
		{EntityDeal, "OPPORTUNITY", "123", is("OPPORTUNITY", "123")},
		{EntityDeal, "ASSIGNED_BY_ID", "3", is("ASSIGNED_BY_ID", "3")},
		{EntityDeal, "UF_CRM_1425989455", "Текст", is("UF_CRM_1425989455", "Текст")},
		{EntityDeal, "ASSIGNED_BY_CONTACT_MANAGER", "Y", func(f *bitrix24test.Fake, existing string) error {
			d := last(f.Deals())
			if d.Str("ASSIGNED_BY_ID") != "42" || fmt.Sprint(d["CONTACT_IDS"]) != "["+existing+"]" {
				return fmt.Errorf("deal not given to the contact's manager and contact: %v", d)
			}
			if _, sent := d[managerKey]; sent || len(f.Contacts()) != 0 {
				return fmt.Errorf("pseudo-field sent or contact duplicated: %v, %d contacts", d, len(f.Contacts()))
			}
			return nil
		}},
		{EntityLead, "OPPORTUNITY", "123", is("OPPORTUNITY", "123")},
		{EntityLead, "ASSIGNED_BY_ID", "3", is("ASSIGNED_BY_ID", "3")},
		{EntityLead, "UF_CRM_1425989455", "Текст", is("UF_CRM_1425989455", "Текст")},
		{EntityLead, "SOURCE_ID", "47", is("SOURCE_ID", "47")},
		{EntityLead, "SOURCE_DESCRIPTION", "25", is("SOURCE_DESCRIPTION", "25")},
		{EntityLead, "ASSIGNED_BY_CONTACT_MANAGER", "Y", func(f *bitrix24test.Fake, existing string) error {
			l := last(f.Leads())
			if l.Str("ASSIGNED_BY_ID") != "42" || l.Str("CONTACT_ID") != existing {
				return fmt.Errorf("lead not given to the contact's manager and contact: %v", l)
			}
			if _, sent := l[managerKey]; sent {
				return fmt.Errorf("pseudo-field sent: %v", l)
			}
			return nil
		}},
		{EntityLead, "uf_crm_7", "lower-case key", is("UF_CRM_7", "lower-case key")},
	}
	for _, r := range rows {
		t.Run(r.entity+"/"+r.key, func(t *testing.T) {
			f := bitrix24test.New()
			defer f.Close()
			f.Entity = r.entity
			existing := f.AddContact(bitrix24test.Fields{
				"NAME": "Иван", "ASSIGNED_BY_ID": "42",
				"PHONE": []any{map[string]any{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}},
			})
			b := newDest(t, f, "")
			l := testLead()
			l.CRM = map[string]string{r.key: r.val}
			id, err := send(t, b, l)
			if err != nil || id == "" {
				t.Fatalf("Send = %q, %v", id, err)
			}
			if err := r.check(f, existing); err != nil {
				t.Error(err)
			}
		})
	}
}

// No contact matches: the deal gets a new contact and the configured manager.
func TestContactManagerNotFound(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	f.Entity = EntityDeal
	b := newDest(t, f, "")
	l := testLead()
	l.CRM = map[string]string{"ASSIGNED_BY_CONTACT_MANAGER": "Y", "ASSIGNED_BY_ID": "3"}
	if _, err := send(t, b, l); err != nil {
		t.Fatal(err)
	}
	want := "crm.duplicate.findbycomm crm.duplicate.findbycomm crm.contact.add crm.deal.add" // phone, then email
	if got := strings.Join(f.Calls(), " "); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if d := last(f.Deals()); d.Str("ASSIGNED_BY_ID") != "3" {
		t.Errorf("deal = %v", d)
	}
}

// A lookup the webhook may not make (scope) is skipped; a rate-limited
// one fails the attempt, to be retried.
func TestContactLookupFailures(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	b := newDest(t, f, "")
	l := testLead()
	l.CRM = map[string]string{"ASSIGNED_BY_CONTACT_MANAGER": "Y"}

	f.FailNext(403, "insufficient_scope", "The request requires higher privileges than provided by the webhook token")
	if _, err := send(t, b, l); err != nil {
		t.Fatalf("permanent lookup failure should be skipped: %v", err)
	}
	if len(f.Leads()) != 1 {
		t.Fatal("lead not created")
	}

	f.Faults.Push(crmtest.QueryLimit)
	_, err := send(t, b, l)
	if err == nil || lead.IsPermanent(err) || !strings.Contains(err.Error(), "QUERY_LIMIT_EXCEEDED") {
		t.Fatalf("err = %v, want retryable QUERY_LIMIT_EXCEEDED", err)
	}
	if len(f.Leads()) != 1 {
		t.Fatal("lead created despite the failed lookup")
	}
}

func TestMainFieldsLead(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	b := newDest(t, f, "field STATUS_ID NEW\nfield assigned_by_id 5")
	l := testLead()
	l.CRM = map[string]string{"ASSIGNED_BY_ID": "7", "Любимый цвет": "синий"}
	id, err := send(t, b, l)
	if err != nil {
		t.Fatal(err)
	}
	got := last(f.Leads())
	if want := fmt.Sprint(3465); id != want {
		t.Errorf("id = %q, want %q", id, want)
	}
	want := map[string]string{
		"TITLE": "Заявка с сайта", "NAME": "Иван", "LAST_NAME": "Петров",
		"SOURCE_ID": "WEB", "SOURCE_DESCRIPTION": "Форма обратного звонка",
		"UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": "spring",
		"ORIGINATOR_ID": "leadproxy", "ORIGIN_ID": l.ID,
		"STATUS_ID": "NEW", "ASSIGNED_BY_ID": "7",
		"COMMENTS": l.Summary() + "\nЛюбимый цвет: синий",
	}
	for k, v := range want {
		if got.Str(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Str(k), v)
		}
	}
	for k, v := range map[string]string{"PHONE": "+79991234567", "EMAIL": "ivan@example.com"} {
		vals, types := got.Multi(k)
		if len(vals) != 1 || vals[0] != v || types[0] != "WORK" {
			t.Errorf("%s = %v %v, want %s WORK", k, vals, types, v)
		}
	}
	if _, ok := got["UTM_TERM"]; ok {
		t.Error("empty UTM sent")
	}
}

func TestDealLinksContact(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	f.Entity = EntityDeal
	b := newDest(t, f, "field CATEGORY_ID 3")
	l := testLead()
	l.CRM = map[string]string{"OPPORTUNITY": "5000"}
	id, err := send(t, b, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Calls(), " "); got != "crm.contact.add crm.deal.add" {
		t.Fatalf("calls = %s", got)
	}
	c, d := last(f.Contacts()), last(f.Deals())
	if c.Str("NAME") != "Иван" || c.Str("LAST_NAME") != "Петров" || c.Str("UTM_SOURCE") != "yandex" || c.Str("ORIGIN_ID") != l.ID {
		t.Errorf("contact = %v", c)
	}
	if phones, _ := c.Multi("PHONE"); len(phones) != 1 || phones[0] != "+79991234567" {
		t.Errorf("contact phone = %v", phones)
	}
	if _, ok := c["OPPORTUNITY"]; ok {
		t.Errorf("deal field on the contact: %v", c)
	}
	if id != "3466" || fmt.Sprint(d["CONTACT_IDS"]) != "[3465]" {
		t.Errorf("deal %q = %v, want 3466 linked to contact 3465", id, d)
	}
	if d.Str("TITLE") != l.Title || d.Str("OPPORTUNITY") != "5000" || d.Str("CATEGORY_ID") != "3" || d.Str("COMMENTS") != l.Summary() {
		t.Errorf("deal = %v", d)
	}
	if _, ok := d["NAME"]; ok {
		t.Errorf("contact field on the deal: %v", d)
	}
}

// The contact exists once crm.contact.add succeeded: a retry after a
// failed deal call links the deal to it instead of adding another.
func TestDealRetryReusesContact(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	f.Entity = EntityDeal
	b := newDest(t, f, "")
	l := testLead()
	f.Faults.Push(crmtest.None, crmtest.QueryLimit)
	if _, err := send(t, b, l); err == nil || lead.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if _, err := send(t, b, l); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Contacts()); n != 1 {
		t.Fatalf("%d contacts, want 1", n)
	}
	if d := last(f.Deals()); fmt.Sprint(d["CONTACT_IDS"]) != "[3465]" {
		t.Errorf("deal = %v", d)
	}
	// Another lead gets its own contact.
	if _, err := send(t, b, testLead()); err != nil || len(f.Contacts()) != 2 {
		t.Fatalf("err %v, %d contacts", err, len(f.Contacts()))
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault     crmtest.Fault
		permanent bool
		msg       string
	}{
		{crmtest.Unauthorized, true, "crm.lead.add: NO_AUTH_FOUND: Wrong authorization data"},
		{crmtest.PaymentHTML, true, "HTTP 402: crm.lead.add: 402 Payment Required"},
		{crmtest.ForbiddenHTML, true, "HTTP 403"},
		{crmtest.RateJSON, false, "OPERATION_TIME_LIMIT: Method is blocked due to operation time limit."},
		{crmtest.RateHTML, false, "HTTP 429"},
		{crmtest.QueryLimit, false, "HTTP 503: crm.lead.add: QUERY_LIMIT_EXCEEDED: Too many requests"},
		{crmtest.Unavailable, false, "HTTP 503"},
		{crmtest.ServerError, false, "INTERNAL_SERVER_ERROR: Internal server error"},
		{crmtest.Slow, false, "timeout"},
		{crmtest.Garbage, false, "unreadable answer"},
		{crmtest.Validation, true, "HTTP 400: crm.lead.add: Parameter 'fields' must be array."},
		{crmtest.Reset, false, "crm.lead.add: request failed"},
	}
	f := bitrix24test.New()
	defer f.Close()
	f.Faults.SlowFor = time.Minute // held until the client gives up
	b := newDest(t, f, "timeout 500ms")
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			f.Faults.Push(c.fault)
			checkErr(t, f, b, c.permanent, c.msg)
		})
	}
}

// Answers of Bitrix24's error table that are no crmtest.Fault.
func TestVendorErrors(t *testing.T) {
	cases := []struct {
		status            int
		code, description string
		permanent         bool
		msg               string
	}{
		{200, "", "Access denied.", true, "HTTP 200: crm.lead.add: Access denied."},
		{401, "expired_token", "The access token provided has expired.", true, "expired_token"},
		{403, "ACCESS_DENIED", "REST is available only on commercial plans.", true, "ACCESS_DENIED"},
		{400, "INVALID_REQUEST", "Https required.", true, "Https required."},
		{503, "OVERLOAD_LIMIT", "REST API is blocked due to overload.", false, "OVERLOAD_LIMIT"},
		{500, "PORTAL_DELETED", "Portal was deleted", true, "PORTAL_DELETED"},
		{500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response.", false, "ERROR_UNEXPECTED_ANSWER"},
		{200, "QUERY_LIMIT_EXCEEDED", "Too many requests", false, "QUERY_LIMIT_EXCEEDED"},
		{404, "ERROR_METHOD_NOT_FOUND", "Method not found!", true, "Method not found!"},
	}
	f := bitrix24test.New()
	defer f.Close()
	b := newDest(t, f, "")
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status, c.code), func(t *testing.T) {
			f.FailNext(c.status, c.code, c.description)
			checkErr(t, f, b, c.permanent, c.msg)
		})
	}
}

func checkErr(t *testing.T, f *bitrix24test.Fake, b *Bitrix24, permanent bool, msg string) {
	t.Helper()
	before := len(f.Leads())
	id, err := send(t, b, testLead())
	var se *lead.SendError
	if err == nil || !errors.As(err, &se) {
		t.Fatalf("id=%q err=%v, want a *lead.SendError", id, err)
	}
	if se.Permanent != permanent {
		t.Errorf("permanent = %v, want %v (%v)", se.Permanent, permanent, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q lacks %q", err, msg)
	}
	if strings.Contains(err.Error(), f.Code) {
		t.Errorf("error %q leaks the webhook code", err)
	}
	if len(f.Leads()) != before {
		t.Error("a lead was created")
	}
}

func TestWrongWebhookCode(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	b := newDest(t, f, "")
	f.Code = "regenerated"
	_, err := send(t, b, testLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401: crm.lead.add: NO_AUTH_FOUND") {
		t.Fatalf("err = %v", err)
	}
}

// base_url replaces the portal address and keeps the webhook's path: a
// box behind another name, or tests.
func TestBaseURLOverridesPortal(t *testing.T) {
	f := bitrix24test.New()
	defer f.Close()
	b := &Bitrix24{WebhookURL: "https://portal.bitrix24.ru/rest/1/" + f.Code + "/", Entity: "LEAD"}
	b.BaseURL = f.URL
	if err := b.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if _, err := send(t, b, testLead()); err != nil || len(f.Leads()) != 1 {
		t.Fatalf("err %v, %d leads", err, len(f.Leads()))
	}
}

func TestProvisionErrors(t *testing.T) {
	const hook = "https://portal.bitrix24.ru/rest/1/s3cr3tc0de/"
	cases := []struct {
		b    Bitrix24
		want string
	}{
		{Bitrix24{WebhookURL: "https://portal.bitrix24.ru/s3cr3tc0de", Entity: "lead"}, "want https://<portal>/rest/<user>/<code>/"},
		{Bitrix24{WebhookURL: "https://portal.bitrix24.ru/rest/admin/s3cr3tc0de/", Entity: "lead"}, "want https://<portal>/rest/<user>/<code>/"},
		{Bitrix24{WebhookURL: "/rest/1/s3cr3tc0de/", Entity: "lead"}, "want an absolute https:// URL (or set base_url)"},
		{Bitrix24{WebhookURL: hook, Entity: "company"}, `bitrix24: entity "company": want lead or deal`},
		{Bitrix24{WebhookURL: hook, Entity: "deal", Fields: map[string]string{"Категория": "3"}}, `bitrix24: field "Категория": not a Bitrix24 field name`},
	}
	for i, c := range cases {
		err := c.b.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: err = %v, want %q", i, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3tc0de") {
			t.Errorf("case %d: error leaks the webhook code: %v", i, err)
		}
	}
	// A path-only webhook is fine with base_url.
	b := &Bitrix24{WebhookURL: "/rest/1/s3cr3tc0de", Entity: "deal"}
	b.BaseURL = "http://crm.example.local"
	if err := b.Provision(caddy.Context{}); err != nil || b.endpoint != "http://crm.example.local/rest/1/s3cr3tc0de/" {
		t.Errorf("endpoint %q, err %v", b.endpoint, err)
	}
}

// The webhook as the type's argument, and the checks only Bitrix24's
// options have; the rest is crmtest's.
func TestCaddyfile(t *testing.T) {
	b := new(Bitrix24)
	err := b.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`bitrix24 {env.B24_HOOK} {
		entity Deal
		field uf_crm_1700000000 "сайт"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.WebhookURL != "{env.B24_HOOK}" || b.Entity != "deal" || b.Fields["UF_CRM_1700000000"] != "сайт" {
		t.Fatalf("parsed %+v", b)
	}
	for _, c := range []struct{ in, want string }{
		{"bitrix24 {\n entity contact\n}", `entity: "contact": want lead or deal`},
		{"bitrix24 {\n field Источник 3\n}", `field: "Источник" is not a Bitrix24 field name`},
		{"bitrix24 {\n field category_id 3\n field CATEGORY_ID 4\n}", "field: CATEGORY_ID given twice"},
	} {
		err := new(Bitrix24).UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestDefaultRate(t *testing.T) {
	for entity, want := range map[string]time.Duration{EntityLead: time.Second, EntityDeal: 2 * time.Second} {
		if n, per := (&Bitrix24{Entity: entity}).DefaultRate(); n != 2 || per != want {
			t.Errorf("%s: DefaultRate = %d/%v, want 2/%v", entity, n, per, want)
		}
	}
}

// OPERATION_TIME_LIMIT is lifted at time.operating_reset_at, when the
// answer carries it: the retry waits until then.
func TestOperationTimeLimitWaitsForReset(t *testing.T) {
	reset := time.Now().Add(5 * time.Minute).Unix()
	body := fmt.Sprintf(`{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit.","time":{"operating_reset_at":%d}}`, reset)
	var a answer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	err := classify("crm.lead.add", &crm.Response{Status: 429, Header: http.Header{}, Body: []byte(body)}, a)
	wait := lead.RetryAfterOf(err)
	if lead.IsPermanent(err) || wait < 4*time.Minute || wait > 5*time.Minute {
		t.Fatalf("err %v, retry after %v; want retryable after about 5m", err, wait)
	}
}
