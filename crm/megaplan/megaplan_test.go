package megaplan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/megaplan/megaplantest"
	"github.com/leadproxy/leadproxy/crm/oauth"
	"github.com/leadproxy/leadproxy/lead"
)

// newDest parses "megaplan { <lines> }" and provisions it.
func newDest(t *testing.T, lines string) *Megaplan {
	t.Helper()
	m := new(Megaplan)
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("megaplan {\n" + lines + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func staticConfig(f *megaplantest.Fake) string {
	return fmt.Sprintf("base_url %s\ntoken %s\nprogram %d", f.URL, megaplantest.StaticToken, megaplantest.Program)
}

func fullLead() *lead.Lead {
	return &lead.Lead{
		ID: lead.NewID(time.Now()), CreatedAt: time.Now(),
		Form: "Заявка с сайта", Title: "Обратный звонок",
		Name: "Иван Петров", Phone: "8 (999) 123-45-67", Email: "ivan@example.com",
		Comment: "Перезвоните после 18:00",
		Extra:   map[string]string{"Город": "Москва"},
		Visit: &lead.Visit{ID: "v1", Page: "https://example.com/contact",
			UTM: map[string]string{"source": "yandex", "campaign": "spring"}},
	}
}

// bareLead has no contact, so Send makes exactly one request: the deal.
func bareLead() *lead.Lead {
	return &lead.Lead{ID: lead.NewID(time.Now()), Form: "Заявка", Comment: "без контакта"}
}

func lastDeal(t *testing.T, f *megaplantest.Fake) map[string]any {
	t.Helper()
	deals := f.Deals()
	if len(deals) == 0 {
		t.Fatal("no deal reached the fake")
	}
	return deals[len(deals)-1]
}

// One row per line of the Roistat page's Megaplan "fields" example.
func TestCRMFieldsFromReference(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile()+"\ncurrency RUB")
	cases := []struct {
		key, value string
		check      func(deal map[string]any) error
	}{
		{"Cost", "123", func(d map[string]any) error {
			money, _ := d["cost"].(map[string]any)
			if money["contentType"] != "Money" || fmt.Sprint(money["value"]) != "123" || money["currency"] != "RUB" {
				return fmt.Errorf("cost = %v", d["cost"])
			}
			if _, leaked := d["Cost"]; leaked {
				return errors.New(`"Cost" sent as is`)
			}
			return nil
		}},
		{"Category1000047CustomFieldSayt", "Текст", func(d map[string]any) error {
			if d["Category1000047CustomFieldSayt"] != "Текст" {
				return fmt.Errorf("custom field = %v", d["Category1000047CustomFieldSayt"])
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			l := fullLead()
			l.CRM = map[string]string{c.key: c.value}
			if _, err := m.Send(context.Background(), l); err != nil {
				t.Fatal(err)
			}
			if err := c.check(lastDeal(t, f)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCostNotANumberKeptInDescription(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	l := bareLead()
	l.CRM = map[string]string{"Cost": "договорная"}
	if _, err := m.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	d := lastDeal(t, f)
	if _, ok := d["cost"]; ok || !strings.Contains(d["description"].(string), "Cost: договорная") {
		t.Errorf("deal = %v", d)
	}
}

func TestMainFields(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile()+fmt.Sprintf("\nmanager %d\nutm_field source Category130CustomFieldUtmSource", megaplantest.Manager))
	l := fullLead()
	l.CRM = map[string]string{"Category130CustomFieldUtmSource": "from-form"}
	l.Visit.UTM["medium"] = "cpc"
	id, err := m.Send(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if ids := f.DealIDs(); len(ids) != 1 || id != ids[0] {
		t.Fatalf("crm id %q, fake gave %v", id, ids)
	}
	if s := f.Searches(); len(s) != 1 || s[0] != "+79991234567" {
		t.Errorf("searches = %q, want the E.164 phone", s)
	}

	cs := f.Contractors()
	if len(cs) != 1 {
		t.Fatalf("contractors = %v", cs)
	}
	c := cs[0]
	if c["contentType"] != "ContractorHuman" || c["firstName"] != "Иван" || c["lastName"] != "Петров" {
		t.Errorf("contractor = %v", c)
	}
	infos, _ := json.Marshal(c["contactInfo"])
	want := `[{"contentType":"ContactInfo","isMain":true,"type":"phone","value":"+79991234567"},{"contentType":"ContactInfo","type":"email","value":"ivan@example.com"}]`
	if string(infos) != want {
		t.Errorf("contactInfo = %s\nwant %s", infos, want)
	}

	d := lastDeal(t, f)
	if d["contentType"] != "Deal" {
		t.Errorf("contentType = %v", d["contentType"])
	}
	for field, wantRef := range map[string]string{
		"program":    `{"contentType":"Program","id":8}`,
		"manager":    `{"contentType":"Employee","id":1000003}`,
		"contractor": `{"contentType":"ContractorHuman","id":"1000101"}`,
	} {
		if got, _ := json.Marshal(d[field]); string(got) != wantRef {
			t.Errorf("%s = %s, want %s", field, got, wantRef)
		}
	}
	// The form's own crm value wins over the utm_field mapping.
	if d["Category130CustomFieldUtmSource"] != "from-form" {
		t.Errorf("utm custom field = %v", d["Category130CustomFieldUtmSource"])
	}
	desc, _ := d["description"].(string)
	for _, s := range []string{"Обратный звонок", "Имя: Иван Петров", "Email: ivan@example.com",
		"Перезвоните после 18:00", "Город: Москва", "Форма: Заявка с сайта", "utm_source: yandex", "utm_medium: cpc"} {
		if !strings.Contains(desc, s) {
			t.Errorf("description lacks %q:\n%s", s, desc)
		}
	}
}

func TestUTMFieldFilledFromVisit(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile()+"\nutm_field source Category130CustomFieldUtmSource\nutm_field term Category130CustomFieldUtmTerm")
	if _, err := m.Send(context.Background(), fullLead()); err != nil {
		t.Fatal(err)
	}
	d := lastDeal(t, f)
	if d["Category130CustomFieldUtmSource"] != "yandex" {
		t.Errorf("utm source field = %v", d["Category130CustomFieldUtmSource"])
	}
	if _, ok := d["Category130CustomFieldUtmTerm"]; ok {
		t.Error("empty utm term sent")
	}
}

func TestContractorReusedAcrossRetryAndRepeat(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	// search ok, contractor created, deal fails: the retry must find the contractor.
	f.Faults.Push(crmtest.None, crmtest.None, crmtest.ServerError)
	l := fullLead()
	if _, err := m.Send(context.Background(), l); err == nil || lead.IsPermanent(err) || !strings.Contains(err.Error(), "create deal") {
		t.Fatalf("want a retryable create deal error, got %v", err)
	}
	if _, err := m.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Send(context.Background(), fullLead()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Contractors()); n != 1 {
		t.Errorf("%d contractors created, want 1", n)
	}
	deals := f.Deals()
	if len(deals) != 2 {
		t.Fatalf("%d deals", len(deals))
	}
	a, _ := json.Marshal(deals[0]["contractor"])
	b, _ := json.Marshal(deals[1]["contractor"])
	if string(a) != string(b) || string(a) == "null" {
		t.Errorf("deals link %s and %s", a, b)
	}
}

func TestContractorWithoutName(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	l := bareLead()
	l.Email = "anon@example.com"
	if _, err := m.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if cs := f.Contractors(); len(cs) != 1 || cs[0]["firstName"] != "anon@example.com" {
		t.Errorf("contractors = %v", cs)
	}
}

func TestNoContactNoContractor(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	if _, err := m.Send(context.Background(), bareLead()); err != nil {
		t.Fatal(err)
	}
	if len(f.Searches()) != 0 || len(f.Contractors()) != 0 {
		t.Errorf("searched %v, created %v", f.Searches(), f.Contractors())
	}
	if _, ok := lastDeal(t, f)["contractor"]; ok {
		t.Error("deal links a contractor")
	}
}

func TestSearchRefusalFallsThrough(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	f.Faults.Push(crmtest.Validation) // the search is [L]: a 422 there must not lose the lead
	if _, err := m.Send(context.Background(), fullLead()); err != nil {
		t.Fatal(err)
	}
	if len(f.Contractors()) != 1 || len(f.Deals()) != 1 {
		t.Errorf("contractors %d, deals %d", len(f.Contractors()), len(f.Deals()))
	}
	// A search that fails retryably stops the Send instead.
	f.Faults.Push(crmtest.ServerError)
	_, err := m.Send(context.Background(), fullLead())
	if err == nil || lead.IsPermanent(err) || !strings.Contains(err.Error(), "find contractor") {
		t.Errorf("want a retryable find contractor error, got %v", err)
	}
}

// Every fault on the create call, with a static token (so 401 is final).
func TestFaultsClassified(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	f.Faults.SlowFor = 10 * time.Second
	m := newDest(t, staticConfig(f)+"\ntimeout 300ms")
	cases := []struct {
		fault      crmtest.Fault
		permanent  bool
		status     int
		msg        string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, true, 401, "Invalid access token", 0},
		{crmtest.PaymentHTML, true, 402, "истёк оплаченный период", 0},
		{crmtest.ForbiddenHTML, true, 403, "403 Forbidden", 0},
		{crmtest.RateJSON, false, 429, "Too many requests", 7 * time.Second},
		{crmtest.RateHTML, false, 429, "429 Too Many Requests", 0},
		{crmtest.QueryLimit, false, 503, "temporarily unavailable", 0},
		{crmtest.ServerError, false, 500, "Internal server error", 0},
		{crmtest.Unavailable, false, 503, "технические работы", 0},
		{crmtest.Garbage, false, 200, "unreadable answer: Bad gateway", 0},
		{crmtest.Validation, true, 422, "program: Поле обязательно", 0},
		{megaplantest.Meta422, true, 422, "contractor: Контрагент не найден", 0},
		{crmtest.Slow, false, 0, "timeout", 0},
		{crmtest.Reset, false, 0, "create deal", 0},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			f.Faults.Push(c.fault)
			id, err := m.Send(context.Background(), bareLead())
			if err == nil {
				t.Fatalf("no error, id %q", id)
			}
			var se *lead.SendError
			if !errors.As(err, &se) {
				t.Fatalf("not a SendError: %v", err)
			}
			if se.Permanent != c.permanent || se.Status != c.status || se.RetryAfter != c.retryAfter {
				t.Errorf("permanent=%v status=%d retryAfter=%v: %v", se.Permanent, se.Status, se.RetryAfter, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
		})
	}
	if n := len(f.Deals()); n != 0 {
		t.Errorf("%d deals accepted under faults", n)
	}
}

func TestTokenEndpointFaults(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	cases := []struct {
		fault     crmtest.Fault
		permanent bool
		msg       string
	}{
		{crmtest.ServerError, false, "auth: HTTP 500"},
		{crmtest.RateJSON, false, "auth: HTTP 429"},
		{crmtest.Garbage, false, "token endpoint: unreadable answer"},
		{crmtest.Reset, false, "auth: request failed"},
		{crmtest.ForbiddenHTML, true, "auth: HTTP 403"},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			m := newDest(t, f.Caddyfile())
			f.TokenFaults.Push(c.fault)
			_, err := m.Send(context.Background(), bareLead())
			var ae *oauth.AuthError
			if err == nil || lead.IsPermanent(err) != c.permanent || !errors.As(err, &ae) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v (permanent=%v), want permanent=%v with %q", err, lead.IsPermanent(err), c.permanent, c.msg)
			}
		})
	}
}

func TestPasswordGrantAndRenewal(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	ctx := context.Background()
	send := func(step string) {
		t.Helper()
		if _, err := m.Send(ctx, fullLead()); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	send("first send")
	if f.Grants("password") != 1 || f.Grants("refresh_token") != 0 {
		t.Fatalf("grants: password %d refresh %d", f.Grants("password"), f.Grants("refresh_token"))
	}
	send("second send")
	if f.Grants("password") != 1 {
		t.Fatal("token not reused")
	}

	f.ExpireAccess() // the server forgets the token early: 401, refresh, retry
	send("after expiry")
	if f.Grants("refresh_token") != 1 || f.Grants("password") != 1 {
		t.Fatalf("grants: password %d refresh %d", f.Grants("password"), f.Grants("refresh_token"))
	}

	f.ExpireAccess()
	f.RevokeRefresh() // refresh refused: log in again with the password
	send("after revocation")
	if f.Grants("password") != 2 {
		t.Fatalf("password grants %d, want 2", f.Grants("password"))
	}

	f.Faults.Push(crmtest.Unauthorized) // one 401 from the API itself
	send("after a 401 fault")
	if f.Grants("refresh_token") != 2 {
		t.Fatalf("refresh grants %d, want 2", f.Grants("refresh_token"))
	}
}

func TestRenewedBeforeExpiry(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	f.ExpiresIn = 30 // inside oauth.Skew: every token is due for renewal at once
	m := newDest(t, f.Caddyfile())
	for i := 0; i < 3; i++ {
		if _, err := m.Send(context.Background(), bareLead()); err != nil {
			t.Fatal(err)
		}
	}
	if f.Rejected() != 0 {
		t.Errorf("%d requests went out with a stale token", f.Rejected())
	}
	if f.Grants("password") != 1 || f.Grants("refresh_token") != 2 {
		t.Errorf("grants: password %d refresh %d", f.Grants("password"), f.Grants("refresh_token"))
	}
}

func TestConcurrentSendsRenewOnce(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, f.Caddyfile())
	if _, err := m.Send(context.Background(), bareLead()); err != nil {
		t.Fatal(err)
	}
	f.ExpireAccess()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Send(context.Background(), bareLead())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if f.Grants("refresh_token") != 1 || f.Grants("password") != 1 {
		t.Errorf("grants: password %d refresh %d, want 1 and 1", f.Grants("password"), f.Grants("refresh_token"))
	}
}

func TestStaticToken(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, staticConfig(f))
	if _, err := m.Send(context.Background(), fullLead()); err != nil {
		t.Fatal(err)
	}
	f.RevokeStatic()
	_, err := m.Send(context.Background(), bareLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401: Invalid access token") {
		t.Errorf("revoked static token: %v", err)
	}
	if f.Grants("password")+f.Grants("refresh_token") != 0 {
		t.Error("a static token was exchanged")
	}
}

func TestWrongPassword(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	m := newDest(t, fmt.Sprintf("base_url %s\nlogin %s\npassword wrong\nprogram 8", f.URL, megaplantest.Login))
	_, err := m.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "credentials were incorrect") {
		t.Errorf("got %v", err)
	}
	if len(f.Contractors())+len(f.Deals()) != 0 {
		t.Error("something was created without a token")
	}
}

func TestTokenStore(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	store := &oauth.MemoryStore{}

	// SetTokenStore may come before or after Provision.
	m1 := new(Megaplan)
	m1.SetTokenStore("mp", store)
	if err := m1.UnmarshalCaddyfile(caddyfile.NewTestDispenser("megaplan {\n" + f.Caddyfile() + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := m1.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Send(context.Background(), bareLead()); err != nil {
		t.Fatal(err)
	}
	tok, err := store.Stored("megaplan/mp")
	if err != nil || tok.Access == "" || tok.Refresh == "" || tok.Expiry.IsZero() {
		t.Fatalf("stored %+v, %v", tok, err)
	}

	// A restarted destination picks the stored token up: no new login.
	m2 := newDest(t, f.Caddyfile())
	m2.SetTokenStore("mp", store)
	if _, err := m2.Send(context.Background(), bareLead()); err != nil {
		t.Fatal(err)
	}
	if f.Grants("password") != 1 {
		t.Errorf("password grants %d, want 1", f.Grants("password"))
	}

	// A failing store costs durability, not delivery.
	m3 := newDest(t, f.Caddyfile())
	m3.SetTokenStore("other", &oauth.MemoryStore{Fail: errors.New("disk full")})
	if _, err := m3.Send(context.Background(), bareLead()); err != nil {
		t.Fatal(err)
	}
}

// The checks only Megaplan's options have; the rest is crmtest's.
func TestCaddyfile(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"megaplan {\n utm_field src X\n}", `utm_field: "src" is not a utm key`},
	} {
		err := new(Megaplan).UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		m    Megaplan
		want string
	}{
		{Megaplan{Token: "t", Program: 8}, "megaplan: base_url is required"},
		{Megaplan{Program: 8}, "megaplan: token or login + password is required"},
		{Megaplan{Login: "u", Program: 8}, "megaplan: login needs password"},
		{Megaplan{Password: "p", Program: 8}, "megaplan: password needs login"},
		{Megaplan{Token: "t"}, "megaplan: program is required"},
		{Megaplan{Token: "t", Program: 8, UTMFields: map[string]string{"gclid": "X"}}, `megaplan: utm_field: "gclid" is not a utm key`},
		{Megaplan{Token: "t", Program: 8, Manager: -1}, "megaplan: manager -1"},
	}
	for _, c := range cases {
		if c.m.BaseURL == "" && !strings.Contains(c.want, "base_url") {
			c.m.BaseURL = "https://acc.megaplan.ru"
		}
		err := c.m.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.m, err, c.want)
		}
	}
	bad := Megaplan{Token: "t", Program: 8}
	bad.BaseURL = "ftp://acc"
	if err := bad.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "megaplan: base_url") {
		t.Errorf("ftp base_url: %v", err)
	}
}

func TestPlaceholdersFromEnv(t *testing.T) {
	f := megaplantest.New()
	defer f.Close()
	t.Setenv("MP_URL", f.URL+"/api/v3/") // the API root is accepted as base_url too
	t.Setenv("MP_LOGIN", megaplantest.Login)
	t.Setenv("MP_PASSWORD", megaplantest.Password)
	m := newDest(t, "base_url {env.MP_URL}\nlogin {env.MP_LOGIN}\npassword {env.MP_PASSWORD}\nprogram 8")
	if _, err := m.Send(context.Background(), fullLead()); err != nil {
		t.Fatal(err)
	}
	if f.Grants("password") != 1 {
		t.Error("the password grant did not use the resolved credentials")
	}
	if m.Password != "{env.MP_PASSWORD}" {
		t.Error("the config struct lost its placeholder (it would leak the secret into autosave)")
	}
}
