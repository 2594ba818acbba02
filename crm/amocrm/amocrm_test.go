package amocrm

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm/amocrm/amocrmtest"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/lead"
)

// newDest parses a destination block pointing at f (plus extra option
// lines) and provisions it, as Caddy would.
func newDest(t *testing.T, f *amocrmtest.Fake, extra string) *AmoCRM {
	t.Helper()
	a := new(AmoCRM)
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("amocrm {\n" + f.Caddyfile() + "\n" + extra + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := a.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return a
}

func testLead() *lead.Lead {
	return &lead.Lead{
		ID:        lead.NewID(time.Now()),
		CreatedAt: time.Now(),
		Form:      "Обратный звонок",
		Title:     "Заявка с сайта: Обратный звонок",
		Name:      "Иван Петров",
		Phone:     "+7 (999) 123-45-67",
		Email:     "ivan@example.com",
		Comment:   "Перезвоните после 18:00",
		Extra:     map[string]string{"Город": "Москва"},
		Visit: &lead.Visit{
			Page: "https://example.com/contacts",
			UTM:  map[string]string{"source": "yandex", "medium": "cpc", "campaign": "spring"},
		},
	}
}

func send(t *testing.T, a *AmoCRM, l *lead.Lead) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Send(ctx, l)
}

func mustSend(t *testing.T, a *AmoCRM, f *amocrmtest.Fake, l *lead.Lead) (amocrmtest.Lead, []amocrmtest.Note) {
	t.Helper()
	id, err := send(t, a, l)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	leads := f.Leads()
	if len(leads) == 0 {
		t.Fatal("fake accepted no lead")
	}
	got := leads[len(leads)-1]
	if want := got.ID; id != strconv.FormatInt(want, 10) {
		t.Fatalf("Send returned %q, the fake created %d", id, want)
	}
	return got, f.Notes()
}

// One row per line of Roistat's amoCRM `fields` example (plus pipeline_id):
// each key lands where amoCRM keeps it.
func TestCRMFields(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "")
	cases := []struct {
		key, val string
		check    func(amocrmtest.Lead) bool
	}{
		{"price", "123", func(l amocrmtest.Lead) bool { return l.Price != nil && *l.Price == 123 }},
		{"responsible_user_id", "3", func(l amocrmtest.Lead) bool { return l.ResponsibleUserID == 3 }},
		{"1276733", "Текст", func(l amocrmtest.Lead) bool {
			v, ok := amocrmtest.Field(l.CustomFieldsValues, "1276733")
			return ok && v == "Текст"
		}},
		{"status_id", "123123", func(l amocrmtest.Lead) bool { return l.StatusID == 123123 }},
		{"tags", "Тег1, Тег2", func(l amocrmtest.Lead) bool {
			tags := l.Embedded.Tags
			return len(tags) == 2 && tags[0].Name == "Тег1" && tags[1].Name == "Тег2"
		}},
		{"pipeline_id", "1234567", func(l amocrmtest.Lead) bool { return l.PipelineID == 1234567 }},
		{"price", "10 000,50", func(l amocrmtest.Lead) bool { return l.Price != nil && *l.Price == 10001 }},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.val, func(t *testing.T) {
			l := testLead()
			l.CRM = map[string]string{c.key: c.val}
			got, _ := mustSend(t, a, f, l)
			if !c.check(got) {
				t.Errorf("crm %s=%q not mapped: %+v", c.key, c.val, got)
			}
		})
	}
}

// Values amoCRM has no place for reach the note, and do not block the lead.
func TestCRMFieldsUnplacedGoToNote(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "")
	l := testLead()
	l.CRM = map[string]string{"price": "договорная", "status_id": "new", "Город": "Тверь"}
	got, notes := mustSend(t, a, f, l)
	if got.Price != nil || got.StatusID != 0 || len(got.CustomFieldsValues) != 3 { // the 3 UTMs
		t.Errorf("unusable values were sent: %+v", got)
	}
	text := notes[len(notes)-1].Text
	for _, want := range []string{"price: договорная", "status_id: new", "Город: Тверь"} {
		if !strings.Contains(text, want) {
			t.Errorf("note lacks %q:\n%s", want, text)
		}
	}
}

func TestMainFields(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "pipeline_id 77\nstatus_id 88\nresponsible_user_id 99\ntags сайт \"лендинг, весна\"")
	l := testLead()
	l.CRM = map[string]string{"tags": "Тег1", "status_id": "89"}
	got, notes := mustSend(t, a, f, l)

	if got.Name != l.Title || got.RequestID != l.ID {
		t.Errorf("name/request_id = %q/%q", got.Name, got.RequestID)
	}
	if got.PipelineID != 77 || got.StatusID != 89 || got.ResponsibleUserID != 99 {
		t.Errorf("config defaults or crm override wrong: pipeline %d status %d responsible %d", got.PipelineID, got.StatusID, got.ResponsibleUserID)
	}
	var tags []string
	for _, tg := range got.Embedded.Tags {
		tags = append(tags, tg.Name)
	}
	if strings.Join(tags, "|") != "сайт|лендинг|весна|Тег1" {
		t.Errorf("tags = %v", tags)
	}
	for code, want := range map[string]string{"UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": "spring"} {
		if v, _ := amocrmtest.Field(got.CustomFieldsValues, code); v != want {
			t.Errorf("%s = %q, want %q", code, v, want)
		}
	}
	if len(got.Embedded.Contacts) != 1 {
		t.Fatalf("contacts = %+v", got.Embedded.Contacts)
	}
	c := got.Embedded.Contacts[0]
	if c.FirstName != "Иван" || c.LastName != "Петров" {
		t.Errorf("contact name = %q %q", c.FirstName, c.LastName)
	}
	for code, want := range map[string]string{"PHONE": "+79991234567", "EMAIL": "ivan@example.com"} {
		v, _ := amocrmtest.Field(c.CustomFieldsValues, code)
		if v != want {
			t.Errorf("contact %s = %q, want %q", code, v, want)
		}
	}
	for _, fv := range c.CustomFieldsValues {
		if fv.Values[0].EnumCode != "WORK" {
			t.Errorf("%s enum_code = %q", fv.FieldCode, fv.Values[0].EnumCode)
		}
	}
	if len(notes) != 1 || notes[0].LeadID != got.ID || notes[0].NoteType != "common" || notes[0].Text != l.Summary() {
		t.Errorf("note = %+v, want the summary on lead %d", notes, got.ID)
	}
}

// A lead without name, phone or email has no contact; one without any
// summary gets no note (one request, not two).
func TestNoContactNoNote(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "")
	got, notes := mustSend(t, a, f, &lead.Lead{ID: "x1"})
	if len(got.Embedded.Contacts) != 0 || got.Name != "Заявка с сайта" {
		t.Errorf("lead = %+v", got)
	}
	if len(notes) != 0 {
		t.Errorf("notes = %+v", notes)
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault      crmtest.Fault
		permanent  bool
		msg        string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, true, "Invalid user name or password", 0},
		{crmtest.PaymentHTML, true, "402 Payment Required", 0},
		{crmtest.ForbiddenHTML, false, "blocked", BlockedPause},
		{crmtest.RateJSON, false, "Too many requests", 300 * time.Second},
		{crmtest.RateHTML, false, "429 Too Many Requests", 0},
		{crmtest.QueryLimit, false, "503 Service Temporarily Unavailable", 0},
		{crmtest.Unavailable, false, "503", 0},
		{crmtest.ServerError, false, "ErrInternalServer: Internal server error", 0},
		{crmtest.Slow, false, "timeout", 0},
		{crmtest.Garbage, false, "unreadable answer", 0},
		{crmtest.Validation, true, "custom_fields_values.0.field_id: The value you selected is not a valid choice. (NotSupportedChoice)", 0},
		{crmtest.Reset, false, "request failed", 0},
	}
	f := amocrmtest.New()
	defer f.Close()
	f.Faults.SlowFor = time.Minute // held until the client gives up
	a := newDest(t, f, "timeout 500ms")
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			f.Faults.Push(c.fault)
			before := len(f.Leads())
			id, err := send(t, a, testLead())
			var se *lead.SendError
			if err == nil || !errors.As(err, &se) {
				t.Fatalf("id=%q err=%v, want a *lead.SendError", id, err)
			}
			if se.Permanent != c.permanent {
				t.Errorf("permanent = %v, want %v (%v)", se.Permanent, c.permanent, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
			if se.RetryAfter != c.retryAfter {
				t.Errorf("retry after %v, want %v", se.RetryAfter, c.retryAfter)
			}
			if len(f.Leads()) != before {
				t.Errorf("a lead was created")
			}
		})
	}
}

// The lead exists once leads/complex succeeded: a failed note must not
// make the queue retry (and duplicate) it.
func TestNoteFailureStillDelivers(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "")
	f.Faults.Push(crmtest.None, crmtest.ServerError)
	got, notes := mustSend(t, a, f, testLead())
	if got.ID == 0 || len(notes) != 0 {
		t.Fatalf("lead %d, notes %+v", got.ID, notes)
	}
}

// An account without the UTM tracking fields rejects them: the lead goes
// through once more without them, and the UTMs are still in the note.
func TestUTMRejectedFallsBack(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	f.NoTracking = true
	a := newDest(t, f, "")
	l := testLead()
	l.CRM = map[string]string{"555001": "свое"}
	got, notes := mustSend(t, a, f, l)
	if len(f.Leads()) != 1 || len(got.CustomFieldsValues) != 1 {
		t.Fatalf("want one lead with only the custom field, got %+v", f.Leads())
	}
	if !strings.Contains(notes[0].Text, "utm_source: yandex") {
		t.Errorf("note lacks the UTMs: %s", notes[0].Text)
	}

	// Any other validation error is not retried without UTMs.
	f.Faults.Push(crmtest.Validation)
	if _, err := send(t, a, l); !lead.IsPermanent(err) {
		t.Fatalf("want permanent validation error, got %v", err)
	}
	if len(f.Leads()) != 1 {
		t.Fatal("validation error was retried")
	}
}

func TestWrongTokenIsPermanent(t *testing.T) {
	f := amocrmtest.New()
	defer f.Close()
	a := newDest(t, f, "")
	f.Token = "rotated"
	_, err := send(t, a, testLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v", err)
	}
}

func TestProvisionErrors(t *testing.T) {
	cases := []struct {
		a    AmoCRM
		want string
	}{
		{AmoCRM{Token: "t"}, "not www"},
		{AmoCRM{Token: "t"}, "want an absolute http(s) URL"},
	}
	bases := []string{"https://www.amocrm.ru", "x.amocrm.ru"}
	for i, c := range cases {
		a := c.a
		a.BaseURL = bases[i]
		err := a.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: err = %v, want %q", i, err, c.want)
		}
	}
}
