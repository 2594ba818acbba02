package uon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/uon/uontest"
	"github.com/leadproxy/leadproxy/lead"
)

// destination parses a Caddyfile block made of the fake's lines and extra,
// and provisions it.
func destination(t *testing.T, fake *uontest.Fake, extra string) *UON {
	t.Helper()
	var u UON
	if err := u.UnmarshalCaddyfile(caddyfile.NewTestDispenser("uon {\n" + fake.Caddyfile() + "\n" + extra + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := u.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return &u
}

// sample is captured at 22:30 UTC, 01:30 the next day in Moscow.
func sample() *lead.Lead {
	return &lead.Lead{
		ID:        lead.NewID(time.Now()),
		CreatedAt: time.Date(2026, 11, 26, 22, 30, 0, 0, time.UTC),
		Form:      "Подбор тура",
		Title:     "Подбор тура",
		Name:      "Иван Петров",
		Phone:     "8 (999) 123-45-67",
		Email:     "ivan@example.com",
		Comment:   "Перезвоните после 18:00",
		Extra:     map[string]string{"Страна": "Турция"},
		Visit:     &lead.Visit{ID: "v-1", UTM: map[string]string{"source": "yandex"}},
	}
}

func TestSendMainFields(t *testing.T) {
	fake := uontest.New()
	defer fake.Close()
	u := destination(t, fake, "source Сайт")

	id, err := u.Send(context.Background(), sample())
	if err != nil {
		t.Fatal(err)
	}
	leads := fake.Leads()
	if len(leads) != 1 || id != leads[0].ID {
		t.Fatalf("returned id %q, fake holds %+v", id, leads)
	}
	f := leads[0].Form
	want := map[string]string{
		"u_name": "Иван", "u_surname": "Петров", "u_phone": "+79991234567", "u_email": "ivan@example.com",
		"source": "Сайт", "r_dat": "2026-11-27 01:30:00",
	}
	for k, v := range want {
		if f.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, f.Get(k), v)
		}
	}
	for _, s := range []string{"Перезвоните после 18:00", "Страна: Турция", "utm_source: yandex", "Форма: Подбор тура"} {
		if !strings.Contains(f.Get("note"), s) {
			t.Errorf("note lacks %q:\n%s", s, f.Get("note"))
		}
	}
}

// One row per line of the U-ON.Travel example on Roistat's help page, plus
// the additional-field form the reference shows.
func TestCRMFields(t *testing.T) {
	cases := []struct{ key, value, param string }{
		{"bedroom_count", "4", "bedroom_count"},
		{"price", "3000", "price"},
		{"111046", "yandex", "extended_fields[111046]"},
		{"source", "Яндекс.Директ", "source"}, // a form's own value beats the destination's
	}
	fake := uontest.New()
	defer fake.Close()
	u := destination(t, fake, "source Сайт")
	for _, c := range cases {
		l := sample()
		l.CRM = map[string]string{c.key: c.value}
		if _, err := u.Send(context.Background(), l); err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		all := fake.Leads()
		if got := all[len(all)-1].Form[c.param]; len(got) != 1 || got[0] != c.value {
			t.Errorf("crm %s=%q: form %s = %q", c.key, c.value, c.param, got)
		}
	}
}

func TestNoContactFailsWithoutRequest(t *testing.T) {
	fake := uontest.New()
	defer fake.Close()
	u := destination(t, fake, "")
	l := sample()
	l.Phone, l.Email = "", ""
	_, err := u.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "phone or an e-mail") {
		t.Fatalf("want a permanent error, got %v", err)
	}
	if fake.Hits() != 0 {
		t.Errorf("%d requests sent", fake.Hits())
	}
	// A phone from the crm map is enough.
	l.CRM = map[string]string{"u_phone": "+79991234567"}
	if _, err := u.Send(context.Background(), l); err != nil {
		t.Fatal(err)
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault      crmtest.Fault
		permanent  bool
		want       string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, true, "HTTP 401: Invalid key ***", 0},
		{crmtest.PaymentHTML, true, "Аккаунт U-ON заблокирован", 0},
		{crmtest.ForbiddenHTML, true, "403 Forbidden", 0},
		{crmtest.RateJSON, false, "Too many requests", RateLimitWait},
		{crmtest.RateHTML, false, "429 Too Many Requests", RateLimitWait},
		{crmtest.QueryLimit, false, "Service temporarily overloaded", 0},
		{crmtest.ServerError, false, "Internal server error", 0},
		{crmtest.Slow, false, "timeout", 0},
		{crmtest.Garbage, false, "unreadable answer: Array ( [result] => 200 )", 0},
		{crmtest.Validation, true, "Не указан телефон или e-mail клиента", 0},
		{uontest.ResultInvalid, true, "HTTP 200: result 400: Неверный status_id", 0},
		{uontest.ResultBusy, false, "HTTP 200: result 500: Database is busy", 0},
		{crmtest.Unavailable, false, "503 Service Temporarily Unavailable", 0},
		{crmtest.Reset, false, "", 0},
	}
	fake := uontest.New()
	defer fake.Close()
	fake.Faults.SlowFor = time.Minute // longer than any client waits
	u := destination(t, fake, "timeout 500ms")
	for _, c := range cases {
		fake.Faults.Push(c.fault)
		_, err := u.Send(context.Background(), sample())
		if err == nil {
			t.Errorf("%s: no error", c.fault)
			continue
		}
		if lead.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.want) || lead.RetryAfterOf(err) != c.retryAfter {
			t.Errorf("%s: %q permanent=%v retry after %v; want %q permanent=%v retry after %v",
				c.fault, err, lead.IsPermanent(err), lead.RetryAfterOf(err), c.want, c.permanent, c.retryAfter)
		}
		if strings.Contains(err.Error(), uontest.Key) {
			t.Errorf("%s: the key leaks: %v", c.fault, err)
		}
	}
	if n := len(fake.Leads()); n != 0 {
		t.Errorf("%d leads recorded under faults", n)
	}
}

func TestWrongKeyHidden(t *testing.T) {
	fake := uontest.New()
	defer fake.Close()
	u := &UON{Common: crm.Common{BaseURL: fake.URL}, Key: "wrong-key-77"}
	if err := u.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	_, err := u.Send(context.Background(), sample())
	if !lead.IsPermanent(err) || strings.Contains(err.Error(), "wrong-key-77") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("want a permanent 401 without the key, got %v", err)
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
		{200, `{"result":200,"id":34144}`, "34144", "", false},
		{200, `{"result":"200","id":"34144","comment":"ok"}`, "34144", "", false},
		{200, `{"result":200}`, "", "", false},
		{200, `{"id":7}`, "7", "", false},
		{200, `{"result":201}`, "", "result 201", true},
		{200, `{"result":404,"message":"Not found"}`, "", "HTTP 200: result 404: Not found", true},
		{200, `{"result":429}`, "", "result 429", false},
		{200, `{}`, "", "unreadable answer", false},
		{200, ``, "", "unreadable answer", false},
		{400, `{"result":400,"error":{"u_phone":"bad"}}`, "", `HTTP 400: {"u_phone":"bad"}`, true},
		{500, `oops`, "", "HTTP 500: oops", false},
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
		u    UON
		want string
	}{
		{UON{Key: "k", Timezone: "Mars/Olympus"}, "uon: timezone"},
		{UON{Common: crm.Common{BaseURL: "api.u-on.ru"}, Key: "k"}, "uon: base_url"},
	}
	for _, c := range cases {
		err := c.u.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.u, err, c.want)
		}
	}
	ok := UON{Key: "k"}
	if err := ok.Provision(caddy.Context{}); err != nil || ok.BaseURL != DefaultBaseURL {
		t.Errorf("defaults: err %v, base_url %q", err, ok.BaseURL)
	}
}
