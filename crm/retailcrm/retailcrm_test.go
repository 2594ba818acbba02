package retailcrm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/retailcrm/retailcrmtest"
	"github.com/leadproxy/leadproxy/lead"
)

// newDest builds the destination the way Caddy does: from a Caddyfile block
// (the fake's lines, then extra lines that override them), then Provision.
func newDest(t *testing.T, f *retailcrmtest.Fake, extra string) *RetailCRM {
	t.Helper()
	r, err := parse(crmtest.Block("retailcrm", f.Caddyfile(), extra))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func parse(block string) (*RetailCRM, error) {
	var r RetailCRM
	err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block))
	return &r, err
}

func sampleLead() *lead.Lead {
	return &lead.Lead{
		ID: lead.NewID(time.Now()), CreatedAt: time.Now(),
		Form: "Обратный звонок", Title: "Обратный звонок",
		Name: "Иван Петров", Phone: "8 (999) 123-45-67", Email: "ivan@example.com",
		Comment: "Перезвоните после 18:00",
		Extra:   map[string]string{"Город": "Москва"},
		Visit: &lead.Visit{ID: "visit-1", Page: "https://example.com/contacts",
			UTM: map[string]string{"source": "yandex", "medium": "cpc", "campaign": "spring", "term": "купить", "content": "banner1"}},
	}
}

func sendOne(t *testing.T, f *retailcrmtest.Fake, r *RetailCRM, l *lead.Lead) retailcrmtest.Order {
	t.Helper()
	id, err := r.Send(context.Background(), l)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	orders := f.Orders()
	if len(orders) != 1 {
		t.Fatalf("fake has %d orders, want 1", len(orders))
	}
	if id != strconv.Itoa(orders[0].ID) {
		t.Fatalf("Send returned id %q, the CRM created %d", id, orders[0].ID)
	}
	return orders[0]
}

func TestSendMapsMainFields(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	l := sampleLead()
	o := sendOne(t, f, newDest(t, f, ""), l)

	checks := []struct{ field, got, want string }{
		{"site", o.Site, retailcrmtest.Site},
		{"externalId", o.ExternalID, "leadproxy-" + l.ID},
		{"firstName", o.FirstName, "Иван"},
		{"lastName", o.LastName, "Петров"},
		{"phone", o.Phone, "+79991234567"},
		{"email", o.Email, "ivan@example.com"},
		{"customerComment", o.CustomerComment, "Перезвоните после 18:00"},
		{"managerComment", o.ManagerComment, l.Summary()},
		{"source.source", o.Source.Source, "yandex"},
		{"source.medium", o.Source.Medium, "cpc"},
		{"source.campaign", o.Source.Campaign, "spring"},
		{"source.keyword", o.Source.Keyword, "купить"},
		{"source.content", o.Source.Content, "banner1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	for _, line := range []string{"Город: Москва", "Форма: Обратный звонок", "utm_source: yandex", "Страница: https://example.com/contacts"} {
		if !strings.Contains(o.ManagerComment, line) {
			t.Errorf("managerComment lacks %q:\n%s", line, o.ManagerComment)
		}
	}
	if _, ok := o.Raw["customFields"]; ok {
		t.Errorf("customFields sent with no crm fields: %v", o.Raw["customFields"])
	}
}

func TestSendNames(t *testing.T) {
	cases := []struct{ name, first, patronymic, last string }{
		{"Иван", "Иван", "", ""},
		{"Иван Петров", "Иван", "", "Петров"},
		{"Петров Иван Сергеевич", "Иван", "Сергеевич", "Петров"},
		{"", "", "", ""},
	}
	for _, c := range cases {
		f := retailcrmtest.New()
		l := sampleLead()
		l.Name = c.name
		o := sendOne(t, f, newDest(t, f, ""), l)
		f.Close()
		if o.FirstName != c.first || o.Patronymic != c.patronymic || o.LastName != c.last {
			t.Errorf("%q → first %q patronymic %q last %q", c.name, o.FirstName, o.Patronymic, o.LastName)
		}
	}
}

// One row per line of the retailCRM block on Roistat's help page.
func TestSendCRMFields(t *testing.T) {
	cases := []struct {
		row   string
		crm   map[string]string
		check func(o retailcrmtest.Order) string
	}{
		{"'managerComment' => 'Комментарий оператора'",
			map[string]string{"managerComment": "Комментарий оператора"},
			func(o retailcrmtest.Order) string {
				if !strings.HasPrefix(o.ManagerComment, "Комментарий оператора\n\n") || !strings.Contains(o.ManagerComment, "Форма: Обратный звонок") {
					return "managerComment = " + strconv.Quote(o.ManagerComment)
				}
				if len(o.CustomFields) != 0 {
					return "landed in customFields too"
				}
				return ""
			}},
		{"'orderMethod' => 'landing-page'",
			map[string]string{"orderMethod": "landing-page"},
			func(o retailcrmtest.Order) string {
				if o.OrderMethod != "landing-page" || len(o.CustomFields) != 0 {
					return "orderMethod = " + o.OrderMethod
				}
				return ""
			}},
		{"'managerId' => 123",
			map[string]string{"managerId": "123"},
			func(o retailcrmtest.Order) string {
				if o.ManagerID != float64(123) || len(o.CustomFields) != 0 {
					return "managerId is not the number 123"
				}
				return ""
			}},
		{"'<Символьный код>' => 'Значение' (string)",
			map[string]string{"delivery_city": "Значение"},
			func(o retailcrmtest.Order) string {
				if o.CustomFields["delivery_city"] != "Значение" {
					return fmt.Sprintf("customFields = %v", o.CustomFields)
				}
				return ""
			}},
		{"'<Символьный код>' => '1' (checkbox)",
			map[string]string{"is_wholesale": "1"},
			func(o retailcrmtest.Order) string {
				if o.CustomFields["is_wholesale"] != "1" {
					return "checkbox not sent as \"1\""
				}
				return ""
			}},
		{"'<Символьный код>' => '<Символьный код значения справочника>' (directory)",
			map[string]string{"client_type": "vip"},
			func(o retailcrmtest.Order) string {
				if o.CustomFields["client_type"] != "vip" {
					return "directory value not sent as its code"
				}
				return ""
			}},
	}
	for _, c := range cases {
		t.Run(c.row, func(t *testing.T) {
			f := retailcrmtest.New()
			defer f.Close()
			l := sampleLead()
			l.CRM = c.crm
			if msg := c.check(sendOne(t, f, newDest(t, f, ""), l)); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func commonURL(u string) crm.Common { return crm.Common{BaseURL: u} }

func TestSendCRMFieldErrors(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	r := newDest(t, f, "")

	l := sampleLead()
	l.CRM = map[string]string{"managerId": "Иванов"}
	_, err := r.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "managerId") {
		t.Errorf("managerId not a number: %v", err)
	}

	l = sampleLead()
	l.CRM = map[string]string{"orderMethod": "no-such-method"}
	_, err = r.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), `"OrderMethod" with "code"="no-such-method" does not exist.`) {
		t.Errorf("unknown orderMethod: %v", err)
	}
	if n := len(f.Orders()); n != 0 {
		t.Errorf("fake has %d orders, want 0", n)
	}
}

func TestSendBadEmailGoesToComment(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	l := sampleLead()
	l.Email = "ivan@mail"
	o := sendOne(t, f, newDest(t, f, ""), l)
	if o.Email != "" || !strings.Contains(o.ManagerComment, "Email: ivan@mail") {
		t.Errorf("email %q, managerComment %q", o.Email, o.ManagerComment)
	}
}

func TestSendNoAttribution(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	l := &lead.Lead{ID: lead.NewID(time.Now()), Phone: "+79991234567"}
	o := sendOne(t, f, newDest(t, f, ""), l)
	for _, k := range []string{"source", "managerComment", "customerComment", "email", "firstName", "managerId", "orderMethod"} {
		if _, ok := o.Raw[k]; ok {
			t.Errorf("%s sent empty: %v", k, o.Raw[k])
		}
	}
}

// A resent lead (its first answer lost) gets the first order's id, not a
// second order and not a permanent "already exists".
func TestSendResendFindsOrder(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	r := newDest(t, f, "")
	l := sampleLead()
	id1, err := r.Send(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := r.Send(context.Background(), l)
	if err != nil || id2 != id1 {
		t.Fatalf("resend: id %q err %v, want %q", id2, err, id1)
	}
	if n := len(f.Orders()); n != 1 {
		t.Fatalf("fake has %d orders, want 1", n)
	}
}

func TestSendFaults(t *testing.T) {
	cases := []struct {
		fault     crmtest.Fault
		extra     string
		permanent bool
		status    int
		msg       string
	}{
		{crmtest.Unauthorized, "", true, 403, `Wrong "apiKey" value.`},
		{crmtest.PaymentHTML, "", true, 402, "Account is blocked"},
		{crmtest.ForbiddenHTML, "", true, 403, "403 Forbidden"},
		{crmtest.RateJSON, "", false, 429, "Rate limit exceeded"},
		{crmtest.RateHTML, "", false, 429, "429 Too Many Requests"},
		{crmtest.QueryLimit, "", false, 503, "Service Temporarily Unavailable"},
		{crmtest.ServerError, "", false, 500, "Internal Server Error"},
		{crmtest.Slow, "timeout 300ms", false, 0, "timeout"},
		{crmtest.Garbage, "", false, 200, "unreadable answer"},
		{crmtest.Validation, "", true, 400, `orderType: "OrderType" with "code"="eshop-individual" does not exist.`},
		{crmtest.Unavailable, "", false, 503, "empty answer"},
		{crmtest.Reset, "", false, 0, "request failed"},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			f := retailcrmtest.New()
			defer f.Close()
			r := newDest(t, f, c.extra)
			f.Faults.Push(c.fault)
			l := sampleLead()
			_, err := r.Send(context.Background(), l)
			var se *lead.SendError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *lead.SendError", err)
			}
			if se.Permanent != c.permanent || se.Status != c.status || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v (permanent %v, status %d); want permanent %v, status %d, containing %q",
					err, se.Permanent, se.Status, c.permanent, c.status, c.msg)
			}
			if lead.RetryAfterOf(err) != 0 {
				t.Errorf("retry-after %v, but retailCRM sends none", lead.RetryAfterOf(err))
			}
			// Once the CRM is well again the same lead goes through, once.
			if _, err := r.Send(context.Background(), l); err != nil {
				t.Fatalf("resend after %s: %v", c.fault, err)
			}
			if n := len(f.Orders()); n != 1 {
				t.Fatalf("fake has %d orders after the resend, want 1", n)
			}
		})
	}
}

func TestSendWrongKey(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	_, err := newDest(t, f, "api_key other-key").Send(context.Background(), sampleLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), `Wrong "apiKey" value.`) {
		t.Fatalf("got %v", err)
	}
}

func TestSendUnknownSite(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	_, err := newDest(t, f, "site nowhere").Send(context.Background(), sampleLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), `Wrong "site" value.`) {
		t.Fatalf("got %v", err)
	}
}

func TestSendPlaceholders(t *testing.T) {
	f := retailcrmtest.New()
	defer f.Close()
	t.Setenv("TEST_RETAILCRM_KEY", retailcrmtest.APIKey)
	t.Setenv("TEST_RETAILCRM_URL", f.URL+"/api/v5/")
	r, err := parse("retailcrm {\nbase_url {env.TEST_RETAILCRM_URL}\napi_key {env.TEST_RETAILCRM_KEY}\nsite " + retailcrmtest.Site + "\n}")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if r.APIKey != "{env.TEST_RETAILCRM_KEY}" {
		t.Errorf("config field rewritten to %q; the placeholder must stay in the config", r.APIKey)
	}
	sendOne(t, f, r, sampleLead())
}

func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		r    RetailCRM
		want string
	}{
		{RetailCRM{APIKey: "k", Site: "s", Common: commonURL("ftp://shop")}, "want an absolute http(s) URL"},
	}
	for _, c := range cases {
		if err := c.r.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.r, err, c.want)
		}
	}
}

func TestMessage(t *testing.T) {
	cases := []struct{ body, want string }{
		{`{"success":false,"errorMsg":"Order is not loaded","errors":{"b":"second","a":"first"}}`, "Order is not loaded: a: first; b: second"},
		{`{"success":false,"errorMsg":"Validation error","errors":["one","two"]}`, "Validation error: one; two"},
		{`{"success":false,"errorMsg":"Access denied."}`, "Access denied."},
		{`<html>Account does not exist.</html>`, ""},
		{``, ""},
	}
	for _, c := range cases {
		if got := Message([]byte(c.body)); got != c.want {
			t.Errorf("Message(%s) = %q, want %q", c.body, got, c.want)
		}
	}
}
