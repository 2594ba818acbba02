package salesforce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/oauth"
	"github.com/leadproxy/leadproxy/crm/salesforce/salesforcetest"
	"github.com/leadproxy/leadproxy/lead"
)

// newDest parses "salesforce { <lines> }" and provisions it.
func newDest(t *testing.T, lines string) *Salesforce {
	t.Helper()
	s := new(Salesforce)
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser("salesforce {\n" + lines + "\n}")); err != nil {
		t.Fatal(err)
	}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func staticConfig(f *salesforcetest.Fake) string {
	return fmt.Sprintf("base_url %s\ntoken %s", f.URL, salesforcetest.StaticToken)
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

func send(t *testing.T, s *Salesforce, l *lead.Lead) string {
	t.Helper()
	id, err := s.Send(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func lastLead(t *testing.T, f *salesforcetest.Fake) map[string]any {
	t.Helper()
	leads := f.Leads()
	if len(leads) == 0 {
		t.Fatal("no lead reached the fake")
	}
	return leads[len(leads)-1]
}

// One row per line of the Roistat page's Salesforce "fields" example, plus
// the custom field (API name) the page describes.
func TestCRMFieldsFromReference(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	cases := []struct{ key, value, field string }{
		{"Company", "Компания", "Company"},
		{"Title", "Должность", "Title"},
		{"Owner", salesforcetest.UserID, "OwnerId"},
		{"Budget__c", "100000", "Budget__c"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			l := fullLead()
			l.CRM = map[string]string{c.key: c.value}
			send(t, s, l)
			got := lastLead(t, f)
			if got[c.field] != c.value {
				t.Errorf("%s = %v, want %q", c.field, got[c.field], c.value)
			}
			if c.key != c.field {
				if _, leaked := got[c.key]; leaked {
					t.Errorf("%s sent under its Roistat name too", c.key)
				}
			}
		})
	}
}

// Roistat's example owner "123" is no Salesforce id: the org says so and
// the lead fails for good, with Salesforce's message.
func TestOwnerNotAnID(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	l := fullLead()
	l.CRM = map[string]string{"Owner": "123"}
	_, err := s.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "MALFORMED_ID: Owner ID: id value of incorrect type: 123 (OwnerId)") {
		t.Errorf("got %v", err)
	}
}

func TestMainFields(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile()+"\nutm_field source UTM_Source__c\nutm_field medium UTM_Medium__c")
	id := send(t, s, fullLead())
	if ids := f.LeadIDs(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("crm id %q, fake gave %v", id, ids)
	}
	got := lastLead(t, f)
	want := map[string]string{
		"FirstName": "Иван", "LastName": "Петров", "Phone": "+79991234567", "Email": "ivan@example.com",
		"LeadSource": "Web", "Company": NotProvided, "UTM_Source__c": "yandex",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %q", k, got[k], v)
		}
	}
	if _, ok := got["UTM_Medium__c"]; ok {
		t.Error("an absent utm value was sent")
	}
	desc, _ := got["Description"].(string)
	for _, part := range []string{"Обратный звонок", "Перезвоните после 18:00", "Город: Москва", "Форма: Заявка с сайта", "utm_source: yandex", "Визит: v1"} {
		if !strings.Contains(desc, part) {
			t.Errorf("Description lacks %q:\n%s", part, desc)
		}
	}

	// The form's crm fields are API names and win over the mapping.
	l := fullLead()
	l.CRM = map[string]string{"LeadSource": "Other", "UTM_Source__c": "from-form", "Description": "own text", "Title": ""}
	send(t, s, l)
	got = lastLead(t, f)
	if got["LeadSource"] != "Other" || got["UTM_Source__c"] != "from-form" || got["Description"] != "own text" {
		t.Errorf("crm did not win: %v", got)
	}
	if _, ok := got["Title"]; ok {
		t.Error("an empty crm value was sent")
	}
}

func TestRequiredFieldDefaults(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	cases := []struct {
		name, company     string
		first, last, comp string
	}{
		{"", "", "", NotProvided, NotProvided},
		{"Иван", "", "", "Иван", NotProvided},
		{"Петров Иван Сергеевич", "ООО Ромашка", "Иван Сергеевич", "Петров", "ООО Ромашка"},
		{"Anna Maria Smith Jones", "  ", "Anna Maria Smith", "Jones", NotProvided},
	}
	for _, c := range cases {
		l := &lead.Lead{ID: lead.NewID(time.Now()), Name: c.name, Phone: "+14155552671"}
		if c.company != "" {
			l.CRM = map[string]string{"Company": c.company}
		}
		send(t, s, l)
		got := lastLead(t, f)
		first, _ := got["FirstName"].(string)
		if first != c.first || got["LastName"] != c.last || got["Company"] != c.comp {
			t.Errorf("%q/%q: FirstName %q LastName %v Company %v", c.name, c.company, first, got["LastName"], got["Company"])
		}
	}
}

// What the visitor typed never fails the lead on Salesforce's limits.
func TestDefensiveValues(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	long := strings.Repeat("Щ", 100)
	for _, email := range []string{"ivan@localhost", "иван@пример.рф", "ivan at example.com"} {
		l := &lead.Lead{ID: lead.NewID(time.Now()), Name: "Иван " + long, Email: email,
			CRM: map[string]string{"Company": strings.Repeat("x", 300)}}
		send(t, s, l)
		got := lastLead(t, f)
		if _, ok := got["Email"]; ok {
			t.Errorf("%q sent as Email", email)
		}
		if !strings.Contains(got["Description"].(string), "Email: "+email) {
			t.Errorf("%q not kept in Description", email)
		}
		if n := len([]rune(got["LastName"].(string))); n != 80 {
			t.Errorf("LastName is %d runes", n)
		}
	}
}

func TestRefreshFlow(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	send(t, s, fullLead())
	send(t, s, fullLead())
	if f.Refreshes() != 1 || f.Rejected() != 0 {
		t.Fatalf("refreshes %d, rejected %d; want 1, 0", f.Refreshes(), f.Rejected())
	}

	f.ExpireSessions() // 401 INVALID_SESSION_ID: refresh once, resend
	send(t, s, fullLead())
	if f.Refreshes() != 2 || f.Rejected() != 1 {
		t.Fatalf("refreshes %d, rejected %d; want 2, 1", f.Refreshes(), f.Rejected())
	}

	// A 401 that survives the refresh is final: one refresh, no loop.
	f.Faults.Push(crmtest.Unauthorized, crmtest.Unauthorized)
	_, err := s.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401: INVALID_SESSION_ID: Session expired or invalid") {
		t.Errorf("got %v", err)
	}
	if f.Refreshes() != 3 {
		t.Errorf("refreshes %d, want 3", f.Refreshes())
	}
	if n := len(f.Leads()); n != 3 {
		t.Errorf("%d leads, want 3", n)
	}
}

func TestRevokedRefreshToken(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	send(t, s, fullLead())
	f.ExpireSessions()
	f.RevokeRefresh()
	_, err := s.Send(context.Background(), fullLead())
	var ae *oauth.AuthError
	if !lead.IsPermanent(err) || !errors.As(err, &ae) || !strings.Contains(err.Error(), "invalid_grant: expired access/refresh token") {
		t.Errorf("got %v", err)
	}
}

// With rotation the configured refresh token dies at first use: only the
// stored one lets a restarted destination go on.
func TestRotatedRefreshTokenStored(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	f.Rotate = true
	store := &oauth.MemoryStore{}
	s1 := newDest(t, f.Caddyfile())
	s1.SetTokenStore("sf", store)
	send(t, s1, fullLead())
	tok, err := store.Stored("salesforce/sf")
	if err != nil || tok.Access == "" || tok.Refresh == "" || tok.Refresh == salesforcetest.RefreshToken {
		t.Fatalf("stored %+v, %v", tok, err)
	}

	f.ExpireSessions()
	s2 := newDest(t, f.Caddyfile())
	s2.SetTokenStore("sf", store)
	send(t, s2, fullLead())
	if f.Refreshes() != 2 {
		t.Errorf("refreshes %d, want 2", f.Refreshes())
	}

	// Without the store the restart is stuck with a dead refresh token.
	f.ExpireSessions()
	s3 := newDest(t, f.Caddyfile())
	if _, err := s3.Send(context.Background(), fullLead()); !lead.IsPermanent(err) {
		t.Errorf("without the stored token: %v", err)
	}
}

func TestConcurrentSendsRefreshOnce(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	f.Rotate = true // a second refresh with the same token would fail
	s := newDest(t, f.Caddyfile())
	send(t, s, fullLead())
	f.ExpireSessions()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Send(context.Background(), fullLead())
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
	if f.Refreshes() != 2 {
		t.Errorf("refreshes %d, want 2", f.Refreshes())
	}
}

func TestStaticToken(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, staticConfig(f))
	send(t, s, fullLead())
	f.RevokeStatic()
	_, err := s.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "INVALID_SESSION_ID") {
		t.Errorf("got %v", err)
	}
	if f.Refreshes() != 0 {
		t.Error("a static token was refreshed")
	}
}

// Every fault on the create call, with a static token (so 401 is final).
func TestFaultsClassified(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	f.Faults.SlowFor = 10 * time.Second
	s := newDest(t, staticConfig(f)+"\ntimeout 300ms")
	cases := []struct {
		fault     crmtest.Fault
		permanent bool
		status    int
		msg       string
	}{
		{crmtest.Unauthorized, true, 401, "INVALID_SESSION_ID: Session expired or invalid"},
		{crmtest.PaymentHTML, true, 402, "Payment Required"},
		{crmtest.ForbiddenHTML, true, 403, "your IP address is not allowed"},
		{crmtest.RateJSON, false, 403, "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."},
		{crmtest.RateHTML, false, 429, "Too Many Requests"},
		{crmtest.QueryLimit, false, 503, "SERVER_UNAVAILABLE"},
		{crmtest.ServerError, false, 500, "UNKNOWN_EXCEPTION: An unexpected error occurred"},
		{crmtest.Unavailable, false, 503, "down for maintenance"},
		{crmtest.Garbage, false, 200, "unreadable answer: Redirecting to login"},
		{crmtest.Validation, true, 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION: Phone must include the country code (Phone)"},
		{salesforcetest.DuplicatesDetected, true, 400, "DUPLICATES_DETECTED: Use one of these records?"},
		{crmtest.Slow, false, 0, "timeout"},
		{crmtest.Reset, false, 0, "create lead"},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			f.Faults.Push(c.fault)
			id, err := s.Send(context.Background(), fullLead())
			if err == nil {
				t.Fatalf("no error, id %q", id)
			}
			var se *lead.SendError
			if !errors.As(err, &se) {
				t.Fatalf("not a SendError: %v", err)
			}
			if se.Permanent != c.permanent || se.Status != c.status {
				t.Errorf("permanent=%v status=%d: %v", se.Permanent, se.Status, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
		})
	}
	if n := f.Records(); n != 0 {
		t.Errorf("%d records saved under faults", n)
	}
}

func TestTokenEndpointFaults(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	cases := []struct {
		fault     crmtest.Fault
		permanent bool
		msg       string
	}{
		{crmtest.ServerError, false, "auth: HTTP 500"},
		{crmtest.Unavailable, false, "auth: HTTP 503"},
		{crmtest.Garbage, false, "token endpoint: unreadable answer"},
		{crmtest.Reset, false, "auth: request failed"},
	}
	for _, c := range cases {
		t.Run(string(c.fault), func(t *testing.T) {
			s := newDest(t, f.Caddyfile())
			f.TokenFaults.Push(c.fault)
			_, err := s.Send(context.Background(), fullLead())
			if err == nil || lead.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v (permanent=%v), want permanent=%v with %q", err, lead.IsPermanent(err), c.permanent, c.msg)
			}
		})
	}
	s := newDest(t, strings.Replace(f.Caddyfile(), salesforcetest.ClientSecret, "wrong", 1))
	_, err := s.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "invalid_client: invalid client credentials") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestUnknownFieldPermanent(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile())
	l := fullLead()
	l.CRM = map[string]string{"Nope__c": "x"}
	_, err := s.Send(context.Background(), l)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "INVALID_FIELD: No such column 'Nope__c' on sobject of type Lead") {
		t.Errorf("got %v", err)
	}
}

func TestExternalIDUpsert(t *testing.T) {
	for _, noContent := range []bool{false, true} {
		t.Run(fmt.Sprintf("204=%v", noContent), func(t *testing.T) {
			f := salesforcetest.New()
			defer f.Close()
			f.UpsertNoContent = noContent
			s := newDest(t, f.Caddyfile()+"\nexternal_id "+salesforcetest.ExternalID+"\napi_version v58.0")
			l := fullLead()
			first := send(t, s, l)
			again := send(t, s, l) // a retry after a lost answer
			if first != again || f.Records() != 1 {
				t.Errorf("ids %q, %q; %d records", first, again, f.Records())
			}
			if _, ok := lastLead(t, f)[salesforcetest.ExternalID]; ok {
				t.Error("the external id went into the body as well as the URL")
			}
			if other := send(t, s, fullLead()); other == first || f.Records() != 2 {
				t.Errorf("a new lead got id %q; %d records", other, f.Records())
			}
		})
	}
	f := salesforcetest.New()
	defer f.Close()
	s := newDest(t, f.Caddyfile()+"\nexternal_id Missing__c")
	_, err := s.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "NOT_FOUND: Provided external ID field does not exist or is not accessible: Missing__c") {
		t.Errorf("got %v", err)
	}
}

func TestDuplicateAlerts(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	f.AlertOnDuplicateEmail = true
	s := newDest(t, f.Caddyfile())
	send(t, s, fullLead())
	send(t, s, fullLead()) // same email: acknowledged by default
	if f.Records() != 2 {
		t.Fatalf("%d records", f.Records())
	}
	strict := newDest(t, f.Caddyfile()+"\nallow_duplicates off")
	_, err := strict.Send(context.Background(), fullLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "DUPLICATES_DETECTED") {
		t.Errorf("allow_duplicates off: %v", err)
	}
}

// The checks only Salesforce's options have; the rest is crmtest's.
func TestCaddyfile(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"salesforce {\n allow_duplicates yes\n}", `allow_duplicates: want on or off, got "yes"`},
		{"salesforce {\n utm_field gclid G__c\n}", `utm_field: "gclid" is not a utm key`},
		{"salesforce {\n token t\n client_id c\n}", "client_id, client_secret and refresh_token go together; missing client_secret, refresh_token, at Testfile:1"},
	} {
		err := new(Salesforce).UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.want)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	const base = "https://acme.my.salesforce.com"
	cases := []struct {
		s    Salesforce
		want string
	}{
		{Salesforce{Token: "t"}, "salesforce: base_url is required"},
		{Salesforce{}, "salesforce: token or client_id + client_secret + refresh_token is required"},
		{Salesforce{ClientID: "c", RefreshToken: "r"}, "go together; missing client_secret"},
		{Salesforce{Token: "t", ClientSecret: "s"}, "missing client_id, refresh_token"},
		{Salesforce{Token: "t", APIVersion: "latest"}, `api_version "latest"`},
		{Salesforce{Token: "t", TokenURL: "login.salesforce.com"}, `token_url "login.salesforce.com"`},
		{Salesforce{Token: "t", ExternalID: "Lead Proxy"}, `external_id "Lead Proxy"`},
		{Salesforce{Token: "t", UTMFields: map[string]string{"source": "utm source"}}, `utm_field source: "utm source" is not a field API name`},
		{Salesforce{Token: "t", UTMFields: map[string]string{"gclid": "G__c"}}, `utm_field: "gclid" is not a utm key`},
	}
	for _, c := range cases {
		if !strings.Contains(c.want, "base_url") {
			c.s.BaseURL = base
		}
		err := c.s.Provision(caddy.Context{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.s, err, c.want)
		}
	}
}

func TestPlaceholdersFromEnv(t *testing.T) {
	f := salesforcetest.New()
	defer f.Close()
	t.Setenv("SF_URL", f.URL)
	t.Setenv("SF_CLIENT_ID", salesforcetest.ClientID)
	t.Setenv("SF_CLIENT_SECRET", salesforcetest.ClientSecret)
	t.Setenv("SF_REFRESH_TOKEN", salesforcetest.RefreshToken)
	s := newDest(t, "base_url {env.SF_URL}\ntoken_url {env.SF_URL}/services/oauth2/token\n"+
		"client_id {env.SF_CLIENT_ID}\nclient_secret {env.SF_CLIENT_SECRET}\nrefresh_token {env.SF_REFRESH_TOKEN}")
	send(t, s, fullLead())
	if f.Refreshes() != 1 {
		t.Error("the refresh did not use the resolved credentials")
	}
	if s.ClientSecret != "{env.SF_CLIENT_SECRET}" {
		t.Error("the config struct lost its placeholder (it would leak the secret into autosave)")
	}
}
