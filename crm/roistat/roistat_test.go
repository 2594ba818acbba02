package roistat

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/roistat/roistattest"
	"github.com/leadproxy/leadproxy/lead"
)

// destination parses a Caddyfile block made of the fake's lines and extra,
// and provisions it.
func destination(t *testing.T, fake *roistattest.Fake, extra string) *Roistat {
	t.Helper()
	var r Roistat
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser("roistat {\n" + fake.Caddyfile() + "\n" + extra + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := r.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return &r
}

func sample() *lead.Lead {
	return &lead.Lead{
		ID:        lead.NewID(time.Now()),
		CreatedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Form:      "Заявка с сайта",
		Title:     "Заявка с сайта",
		Name:      "Иван Петров",
		Phone:     "8 (999) 123-45-67",
		Email:     "ivan@example.com",
		Comment:   "Перезвоните",
		Extra:     map[string]string{"Город": "Москва"},
		Visit:     &lead.Visit{ID: "123456", UTM: map[string]string{"source": "yandex"}},
	}
}

// send delivers l to a fresh fake and returns what it received.
func send(t *testing.T, extra string, l *lead.Lead) (string, roistattest.Lead) {
	t.Helper()
	fake := roistattest.New()
	defer fake.Close()
	id, err := destination(t, fake, extra).Send(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	got := fake.Leads()
	if len(got) != 1 {
		t.Fatalf("fake holds %d leads", len(got))
	}
	return id, got[0]
}

func TestSendMainFields(t *testing.T) {
	id, got := send(t, "", sample())
	if id != got.ID || got.Method != "GET" {
		t.Errorf("id %q (fake %q), method %s", id, got.ID, got.Method)
	}
	if got.Roistat != "123456" || got.Title != "Заявка с сайта" || got.Name != "Иван Петров" ||
		got.Phone != "+79991234567" || got.Email != "ivan@example.com" {
		t.Errorf("lead = %+v", got)
	}
	for _, s := range []string{"Перезвоните", "Город: Москва", "utm_source: yandex"} {
		if !strings.Contains(got.Comment, s) {
			t.Errorf("comment lacks %q:\n%s", s, got.Comment)
		}
	}
	if got.Params.Has("is_need_callback") || len(got.Fields) != 0 {
		t.Errorf("unasked parameters: %v", got.Params)
	}
}

func TestNoVisitAndCallback(t *testing.T) {
	l := sample()
	l.Visit = nil
	l.Title = ""
	l.Callback = &lead.Callback{}
	_, got := send(t, "param is_need_check_order_in_processing 1\nparam sync 1", l)
	if got.Roistat != NoCookie || got.Title != "Заявка с сайта" {
		t.Errorf("roistat %q, title %q", got.Roistat, got.Title)
	}
	p := got.Params
	if p.Get("is_need_callback") != "1" || p.Get("callback_phone") != "+79991234567" ||
		p.Get("is_need_check_order_in_processing") != "1" || p.Get("sync") != "1" {
		t.Errorf("params %v", p)
	}
}

// Every flat line of the fields examples on Roistat's help page: Roistat
// takes them as fields[<key>] whatever CRM sits behind it.
func TestCRMFields(t *testing.T) {
	rows := []struct{ crm, key, value string }{
		{"amoCRM", "price", "123"},
		{"amoCRM", "responsible_user_id", "3"},
		{"amoCRM", "1276733", "Текст"},
		{"amoCRM", "status_id", "123123"},
		{"amoCRM", "tags", "Тег1, Тег2"},
		{"retailCRM", "managerComment", "Комментарий оператора"},
		{"retailCRM", "orderMethod", "landing-page"},
		{"retailCRM", "managerId", "123"},
		{"Битрикс24", "OPPORTUNITY", "123"},
		{"Битрикс24", "ASSIGNED_BY_ID", "3"},
		{"Битрикс24", "UF_CRM_1425989455", "Текст"},
		{"Битрикс24", "ASSIGNED_BY_CONTACT_MANAGER", "Y"},
		{"Битрикс24", "SOURCE_ID", "47"},
		{"Битрикс24", "SOURCE_DESCRIPTION", "25"},
		{"МойСклад", "state_uuid", "770657b-4fd2-11e4-90a2-8eca004192b1"},
		{"МойСклад", "owner_uid", "demo@login"},
		{"Мегаплан", "Cost", "123"},
		{"Мегаплан", "Category1000047CustomFieldSayt", "Текст"},
		{"Salesforce", "Company", "Компания"},
		{"Salesforce", "Title", "Должность"},
		{"Salesforce", "Owner", "123"},
		{"FreshOffice", "person", "1"},
		{"FreshOffice", "id_status_deal", "1"},
		{"FreshOffice", "summa", "0.00"},
		{"FreshOffice", "chance", "100"},
		{"FreshOffice", "id_manager", "1"},
		{"U-ON.Travel", "bedroom_count", "4"},
		{"U-ON.Travel", "price", "3000"},
		{"charset", "charset", "UTF-8"},
	}
	fake := roistattest.New()
	defer fake.Close()
	r := destination(t, fake, "")
	for _, row := range rows {
		l := sample()
		l.CRM = map[string]string{row.key: row.value}
		if _, err := r.Send(context.Background(), l); err != nil {
			t.Fatalf("%s %s: %v", row.crm, row.key, err)
		}
		all := fake.Leads()
		got := all[len(all)-1]
		if len(got.Fields) != 1 || got.Fields[row.key] != row.value {
			t.Errorf("%s: crm %s=%q arrived as fields %v", row.crm, row.key, row.value, got.Fields)
		}
	}
}

// A long comment is shortened so the GET stays under the 8 KB request line
// the fake (like nginx) enforces, and says it was cut.
func TestLongCommentFits(t *testing.T) {
	l := sample()
	l.Comment = strings.Repeat("Очень длинный комментарий посетителя. ", 300)
	_, got := send(t, "", l)
	if !strings.HasSuffix(got.Comment, "…") || !strings.HasPrefix(got.Comment, "Очень длинный") || !utf8.ValidString(got.Comment) {
		t.Errorf("comment not shortened cleanly: %d bytes, ends %q", len(got.Comment), got.Comment[len(got.Comment)-20:])
	}
	short := sample()
	_, got = send(t, "", short)
	if strings.HasSuffix(got.Comment, "…") {
		t.Errorf("short comment cut: %q", got.Comment)
	}
}

// The answer shapes the adapter accepts, since none is documented.
func TestAnswerShapes(t *testing.T) {
	cases := []struct{ reply, id string }{
		{`{"status":"success","data":{"id":"{id}"}}`, "fake"},
		{`{"status":"success","id":{id}}`, "fake"},
		{`{"status":"success","order_id":"9774766"}`, "9774766"},
		{`{"status":"success"}`, ""},
		{` `, ""},
	}
	fake := roistattest.New()
	defer fake.Close()
	r := destination(t, fake, "")
	for _, c := range cases {
		fake.Reply(c.reply)
		id, err := r.Send(context.Background(), sample())
		if err != nil {
			t.Errorf("%s: %v", c.reply, err)
			continue
		}
		want := c.id
		if want == "fake" {
			all := fake.Leads()
			want = all[len(all)-1].ID
		}
		if id != want {
			t.Errorf("%s: id %q, want %q", c.reply, id, want)
		}
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault      crmtest.Fault
		permanent  bool
		want       string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, true, "HTTP 401: authentication_failed: Invalid integration key", 0},
		{crmtest.PaymentHTML, true, "Проект заблокирован", 0},
		{crmtest.ForbiddenHTML, true, "403 Forbidden", 0},
		{crmtest.RateJSON, false, "too_many_requests: Request limit exceeded", 5 * time.Second},
		{crmtest.RateHTML, false, "429 Too Many Requests", 0},
		{crmtest.QueryLimit, false, "service_unavailable: Try again later", 0},
		{crmtest.ServerError, false, "HTTP 500: internal_error", 0},
		{crmtest.Slow, false, "timeout", 0},
		{crmtest.Garbage, false, "unreadable answer: Roistat: техническое обслуживание", 0},
		{crmtest.Validation, true, "Parameter roistat is required", 0},
		{roistattest.ErrorIn200, true, "HTTP 200: project_blocked: Project is blocked", 0},
		{crmtest.Unavailable, false, "503 Service Temporarily Unavailable", 0},
		{crmtest.Reset, false, "", 0},
	}
	fake := roistattest.New()
	defer fake.Close()
	fake.Faults.SlowFor = time.Minute // longer than any client waits
	r := destination(t, fake, "timeout 500ms")
	for _, c := range cases {
		fake.Faults.Push(c.fault)
		if c.fault == crmtest.Reset {
			// Go's transport replays a GET once when a reused connection
			// dies before answering (TestResetReplayedOnce); the replay
			// goes out on a new connection, which resets again.
			fake.Faults.Push(c.fault)
		}
		_, err := r.Send(context.Background(), sample())
		if err == nil {
			t.Errorf("%s: no error", c.fault)
			continue
		}
		if lead.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.want) || lead.RetryAfterOf(err) != c.retryAfter {
			t.Errorf("%s: %q permanent=%v retry after %v; want %q permanent=%v retry after %v",
				c.fault, err, lead.IsPermanent(err), lead.RetryAfterOf(err), c.want, c.permanent, c.retryAfter)
		}
		if strings.Contains(err.Error(), roistattest.Key) {
			t.Errorf("%s: the key leaks: %v", c.fault, err)
		}
	}
	if n := len(fake.Leads()); n != 0 {
		t.Errorf("%d leads recorded under faults", n)
	}
}

// A connection reset once, on a kept-alive connection, is absorbed by the
// transport's replay of the GET: the lead arrives once.
func TestResetReplayedOnce(t *testing.T) {
	fake := roistattest.New()
	defer fake.Close()
	r := destination(t, fake, "")
	if _, err := r.Send(context.Background(), sample()); err != nil { // opens the kept-alive connection
		t.Fatal(err)
	}
	fake.Faults.Push(crmtest.Reset)
	if _, err := r.Send(context.Background(), sample()); err != nil {
		t.Fatalf("reset on a reused connection not replayed: %v", err)
	}
	if n := len(fake.Leads()); n != 2 {
		t.Fatalf("fake holds %d leads, want 2", n)
	}
}

func TestWrongKeyRejected(t *testing.T) {
	fake := roistattest.New()
	defer fake.Close()
	r := &Roistat{Common: crm.Common{BaseURL: fake.URL}, Key: "d3Jvbmc="}
	if err := r.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Send(context.Background(), sample())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "authentication_failed") {
		t.Fatalf("want a permanent authentication error, got %v", err)
	}
}

func TestReadAnswer(t *testing.T) {
	cases := []struct {
		status    int
		body      string
		id        string
		wantErr   string
		permanent bool
	}{
		{200, `{"status":"success","data":{"id":"7"}}`, "7", "", false},
		{200, `{"status":"success","message":"Lead added"}`, "", "", false},
		{200, `{"lead_id":7}`, "7", "", false},
		{200, `{"error":"access_denied"}`, "", "access_denied", true},
		{200, `{"status":"error"}`, "", "status error", true},
		{200, `{"ok":true}`, "", "unreadable answer", false},
		{200, `OK`, "", "unreadable answer", false},
		{400, `{"status":"error","error":"request_error","description":"bad phone"}`, "", "HTTP 400: request_error: bad phone", true},
		{502, `<h1>Bad Gateway</h1>`, "", "HTTP 502: Bad Gateway", false},
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

// The checks only Roistat's options have; the rest is crmtest's.
func TestCaddyfile(t *testing.T) {
	for in, want := range map[string]string{
		"roistat {\n param title Заявка\n}":   `param: "title" is filled from the lead`,
		"roistat {\n param key abc\n}":        `param: "key" is filled from the lead`,
		"roistat {\n param fields[tags] a\n}": "set deal fields with a form's crm",
	} {
		var r Roistat
		err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		r    Roistat
		want string
	}{
		{Roistat{Key: "k", Params: map[string]string{"phone": "1"}}, `roistat: param "phone" is filled from the lead`},
		{Roistat{Common: crm.Common{BaseURL: "cloud.roistat.com"}, Key: "k"}, "roistat: base_url"},
	}
	for _, c := range cases {
		err := c.r.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.r, err, c.want)
		}
	}
	ok := Roistat{Key: "k"}
	if err := ok.Provision(caddy.Context{}); err != nil || ok.BaseURL != DefaultBaseURL {
		t.Errorf("defaults: err %v, base_url %q", err, ok.BaseURL)
	}
}
