package freshoffice

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/freshoffice/freshofficetest"
	"github.com/leadproxy/leadproxy/lead"
)

// destination parses a Caddyfile block made of the fake's lines and extra,
// and provisions it.
func destination(t *testing.T, fake *freshofficetest.Fake, extra string) *FreshOffice {
	t.Helper()
	var f FreshOffice
	if err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser("freshoffice {\n" + fake.Caddyfile() + "\n" + extra + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return &f
}

// sample is captured at 22:30 UTC, already the next day in Moscow.
func sample() *lead.Lead {
	return &lead.Lead{
		ID:        lead.NewID(time.Now()),
		CreatedAt: time.Date(2026, 11, 26, 22, 30, 0, 0, time.UTC),
		Form:      "Заявка с сайта",
		Title:     "Заявка с сайта",
		Name:      "Иван Петров",
		Phone:     "8 (999) 123-45-67",
		Email:     "ivan@example.com",
		Comment:   "Перезвоните после 18:00",
		Extra:     map[string]string{"Город": "Москва"},
		Visit: &lead.Visit{ID: "v-1", Page: "https://example.com/contacts",
			UTM: map[string]string{"source": "yandex", "campaign": "winter"}},
	}
}

func TestSendMainFields(t *testing.T) {
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "")

	id, err := f.Send(context.Background(), sample())
	if err != nil {
		t.Fatal(err)
	}
	cs, ds := fake.Companies(), fake.Deals()
	if len(cs) != 1 || len(ds) != 1 {
		t.Fatalf("want one contractor and one deal, got %d and %d", len(cs), len(ds))
	}
	c, d := cs[0], ds[0]
	if id != d.ID {
		t.Errorf("returned id %q, the fake created deal %q", id, d.ID)
	}
	if c.Name != "Иван Петров" || strings.Join(c.Phones, ",") != "+79991234567" || strings.Join(c.Emails, ",") != "ivan@example.com" {
		t.Errorf("contractor = %+v", c)
	}
	if d.CompanyID == 0 || itoa(d.CompanyID) != c.ID {
		t.Errorf("deal company_id %d, contractor id %s", d.CompanyID, c.ID)
	}
	if d.Name != "Заявка с сайта" || d.TypeID != 1 || d.StatusID != 1 || d.UserID != freshofficetest.Manager {
		t.Errorf("deal = %+v", d)
	}
	if d.DateStart != "2026-11-27" || d.DateFinish != "2026-11-28" {
		t.Errorf("dates %s..%s, want the Moscow day 2026-11-27..28", d.DateStart, d.DateFinish)
	}
	for _, want := range []string{"Перезвоните после 18:00", "Город: Москва", "utm_source: yandex", "utm_campaign: winter", "Страница: https://example.com/contacts"} {
		if !strings.Contains(d.Note, want) {
			t.Errorf("note lacks %q:\n%s", want, d.Note)
		}
	}
	if strings.Contains(d.Note, "Телефон:") {
		t.Errorf("contact repeated in the note although a contractor holds it:\n%s", d.Note)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// One row per line of the FreshOffice example on Roistat's help page: each
// key lands where the adapter's doc comment says.
func TestRoistatFields(t *testing.T) {
	cases := []struct {
		key, value string
		contractor bool // lands on the contractor, not the deal
		field      string
		want       string // JSON of the value sent
	}{
		{"person", "1", true, "type_id", `1`},
		{"id_status_deal", "5", false, "status_id", `5`},
		{"summa", "1 500,50", false, "sum", `1500.50`},
		{"chance", "100", false, "chance", `100`},
		{"id_manager", "12", false, "user_id", `12`},
		{"UF_SITE", "example.com", false, "UF_SITE", `"example.com"`},
	}
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "")
	for _, c := range cases {
		l := sample()
		l.CRM = map[string]string{c.key: c.value}
		if _, err := f.Send(context.Background(), l); err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		raw := fake.Deals()[len(fake.Deals())-1].Raw
		if c.contractor {
			raw = fake.Companies()[len(fake.Companies())-1].Raw
		}
		got, _ := json.Marshal(raw[c.field])
		if string(got) != c.want {
			t.Errorf("crm %s=%q: %s = %s, want %s", c.key, c.value, c.field, got, c.want)
		}
	}
}

func TestRoistatFieldNotANumberGoesToNote(t *testing.T) {
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "")
	l := sample()
	l.CRM = map[string]string{"summa": "договорная", "id_manager": "Петров"}
	if _, err := f.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	d := fake.Deals()[0]
	if _, ok := d.Raw["sum"]; ok {
		t.Errorf("sum sent: %v", d.Raw["sum"])
	}
	if d.UserID != freshofficetest.Manager {
		t.Errorf("user_id = %d, want the configured manager", d.UserID)
	}
	if !strings.Contains(d.Note, "summa: договорная") || !strings.Contains(d.Note, "id_manager: Петров") {
		t.Errorf("note lacks the unsent values:\n%s", d.Note)
	}
}

func TestFixedCompany(t *testing.T) {
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "company 900\ndeal_type 3\nstatus 8\ntimezone UTC")
	if _, err := f.Send(context.Background(), sample()); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Companies()); n != 0 {
		t.Fatalf("%d contractors created with company set", n)
	}
	d := fake.Deals()[0]
	if d.CompanyID != 900 || d.TypeID != 3 || d.StatusID != 8 || d.DateStart != "2026-11-26" {
		t.Errorf("deal = %+v", d)
	}
	for _, want := range []string{"Имя: Иван Петров", "Телефон: +79991234567", "Email: ivan@example.com", "Перезвоните"} {
		if !strings.Contains(d.Note, want) {
			t.Errorf("note lacks %q:\n%s", want, d.Note)
		}
	}
}

// A deal that fails after its contractor was created reuses that contractor
// on the next attempt.
func TestRetryReusesContractor(t *testing.T) {
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "")
	l := sample()
	fake.Faults.Push(crmtest.None, crmtest.ServerError)
	if _, err := f.Send(context.Background(), l); err == nil || lead.IsPermanent(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
	if _, err := f.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	cs, ds := fake.Companies(), fake.Deals()
	if len(cs) != 1 || len(ds) != 1 || itoa(ds[0].CompanyID) != cs[0].ID {
		t.Fatalf("contractors %+v, deals %+v", cs, ds)
	}
	// The lead is forgotten once delivered: a re-send creates a new contractor.
	if _, err := f.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Companies()); n != 2 {
		t.Fatalf("contractors = %d after a re-send", n)
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault      crmtest.Fault
		permanent  bool
		want       string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, true, "Токен недействителен", 0},
		{crmtest.PaymentHTML, true, "Оплатите подписку FreshOffice", 0},
		{crmtest.ForbiddenHTML, true, "Доступ к API запрещён", 0},
		{crmtest.RateJSON, false, "Превышен лимит запросов", 7 * time.Second},
		{crmtest.RateHTML, false, "429 Too Many Requests", 0},
		{crmtest.QueryLimit, false, "Сервер перегружен", 0},
		{crmtest.ServerError, false, "Внутренняя ошибка сервера", 0},
		{crmtest.Slow, false, "timeout", 0},
		{crmtest.Garbage, false, "Object reference not set", 0},
		{crmtest.Validation, true, "Не заполнено обязательное поле date_finish", 0},
		{freshofficetest.ErrorIn200, true, "Статус сделки не относится к типу сделки", 0},
		{crmtest.Unavailable, false, "503 Service Unavailable", 0},
		{crmtest.Reset, false, "", 0},
	}
	fake := freshofficetest.New()
	defer fake.Close()
	fake.Faults.SlowFor = time.Minute // longer than any client waits
	f := destination(t, fake, "timeout 500ms")
	for _, c := range cases {
		for step, prefix := range []string{"create contractor: ", "create deal: "} {
			for range step {
				fake.Faults.Push(crmtest.None)
			}
			fake.Faults.Push(c.fault)
			deals := len(fake.Deals())
			_, err := f.Send(context.Background(), sample())
			if err == nil {
				t.Errorf("%s at step %d: no error", c.fault, step)
				continue
			}
			if lead.IsPermanent(err) != c.permanent {
				t.Errorf("%s at step %d: permanent=%v, want %v: %v", c.fault, step, lead.IsPermanent(err), c.permanent, err)
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s at step %d: error %q, want %q and %q", c.fault, step, err, prefix, c.want)
			}
			if got := lead.RetryAfterOf(err); got != c.retryAfter {
				t.Errorf("%s at step %d: retry after %v, want %v", c.fault, step, got, c.retryAfter)
			}
			if len(fake.Deals()) != deals {
				t.Errorf("%s at step %d: a deal was recorded", c.fault, step)
			}
		}
	}
}

// The adapter is strict about what it sends: the fake rejects a deal that
// misses a required field, and that answer is a permanent error.
func TestFakeRejectsBadDeal(t *testing.T) {
	fake := freshofficetest.New()
	defer fake.Close()
	f := destination(t, fake, "company 900")
	l := sample()
	l.CRM = map[string]string{"date_finish": "завтра"}
	_, err := f.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "date_finish") {
		t.Fatalf("want a permanent error naming date_finish, got %v", err)
	}
}

// The answer shapes the [U] reference leaves open.
func TestReadAnswer(t *testing.T) {
	cases := []struct {
		status    int
		body      string
		id        string
		wantErr   string
		permanent bool
	}{
		{200, `{"status":"success","error":null,"code":"0","rows":1,"pages":1,"page":1,"value":"17"}`, "17", "", false},
		{200, `{"status":"success","value":17}`, "17", "", false},
		{200, `{"status":"success","value":"[{\"ID\":17,\"NAME\":\"x\"}]"}`, "17", "", false},
		{200, `{"status":"success","value":{"id":"17"}}`, "17", "", false},
		{200, `{"status":"success","value":null}`, "", "", false},
		{200, `{"status":"error","error":{"message":{"value":"Нет доступа"}}}`, "", "Нет доступа", true},
		{200, `{"status":"error","error":null,"code":"12"}`, "", "status error", true},
		{200, `{"status":"success","error":"Сделка не сохранена","code":"3"}`, "", "Сделка не сохранена (code 3)", true},
		{200, `{}`, "", "unreadable answer", false},
		{200, `[1,2]`, "", "unreadable answer", false},
		{400, `{"error":{"code":"x","message":"Неверный формат"}}`, "", "Неверный формат", true},
		{401, ``, "", "empty answer", true},
		{502, `<html><body>Bad Gateway</body></html>`, "", "Bad Gateway", false},
	}
	for _, c := range cases {
		id, err := readAnswer(&crm.Response{Status: c.status, Body: []byte(c.body)})
		if id != c.id {
			t.Errorf("%s: id %q, want %q", c.body, id, c.id)
		}
		if (err != nil) != (c.wantErr != "") || (err != nil && (!strings.Contains(err.Error(), c.wantErr) || lead.IsPermanent(err) != c.permanent)) {
			t.Errorf("%d %s: err %v (permanent=%v), want %q permanent=%v", c.status, c.body, err, lead.IsPermanent(err), c.wantErr, c.permanent)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		f    FreshOffice
		want string
	}{
		{FreshOffice{Token: "t", Manager: 1, Timezone: "Mars/Olympus"}, "freshoffice: timezone"},
		{FreshOffice{Common: crm.Common{BaseURL: "ftp://fo.example.com"}, Token: "t", Manager: 1}, "freshoffice: base_url"},
	}
	for _, c := range cases {
		err := c.f.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.f, err, c.want)
		}
	}
	ok := FreshOffice{Token: "t", Manager: 1}
	if err := ok.Provision(caddy.Context{}); err != nil || ok.BaseURL != DefaultBaseURL {
		t.Errorf("defaults: err %v, base_url %q", err, ok.BaseURL)
	}
}

func TestTokenFromEnv(t *testing.T) {
	t.Setenv("LEADPROXY_TEST_FO_TOKEN", freshofficetest.Token)
	fake := freshofficetest.New()
	defer fake.Close()
	var f FreshOffice
	in := "freshoffice {\n base_url " + fake.URL + "\n token {env.LEADPROXY_TEST_FO_TOKEN}\n manager 37\n}"
	if err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Send(context.Background(), sample()); err != nil {
		t.Fatalf("token from env not used: %v", err)
	}
}
