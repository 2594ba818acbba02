package moysklad

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/moysklad/moyskladtest"
	"github.com/leadproxy/leadproxy/lead"
)

// Ids used in the crm fields below.
const (
	stateID    = "fb56c504-2e58-11e6-8a84-bae500000069"
	currencyID = "bc1b4fde-019a-11e6-9464-e4de00000073"
	projectID  = "7944ef04-f831-11e5-7a69-971500188b20"
	contractID = "8ce3c179-015e-11e6-9464-e4de0000007a"
	storeID    = "850ee995-f504-11e5-8a84-bae500000160"
	orgID      = "770657bb-4fd2-11e4-90a2-8eca004192b1"
	agentID    = "9794d400-f689-11e5-8a84-bae500000078"
	goodID     = "c02e3a5c-007e-11e6-9464-e4de00000006"
	serviceID  = "c02e3a5c-007e-11e6-9464-e4de00000007"
	attrString = "5290a290-0313-11e6-9464-e4de00000020"
	attrLong   = "5290a290-0313-11e6-9464-e4de00000021"
	attrDouble = "5290a290-0313-11e6-9464-e4de00000022"
	attrBool   = "5290a290-0313-11e6-9464-e4de00000023"
	attrCustom = "5290a290-0313-11e6-9464-e4de00000024"
	attrAgent  = "5290a290-0313-11e6-9464-e4de00000025"
)

func newDest(t *testing.T, f *moyskladtest.Fake, extra string) *MoySklad {
	t.Helper()
	m, err := parse(crmtest.Block("moysklad", f.Caddyfile(), extra))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func parse(block string) (*MoySklad, error) {
	var m MoySklad
	err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block))
	return &m, err
}

func sampleLead() *lead.Lead {
	return &lead.Lead{
		ID: lead.NewID(time.Now()), CreatedAt: time.Now(), Site: "example.com",
		Form: "Заявка с сайта", Title: "Заявка с сайта",
		Name: "Иван Петров", Phone: "8 (999) 123-45-67", Email: "ivan@example.com",
		Comment: "Перезвоните после 18:00",
		Extra:   map[string]string{"Город": "Москва"},
		Visit:   &lead.Visit{ID: "visit-1", UTM: map[string]string{"source": "yandex", "medium": "cpc"}},
	}
}

// sendOne sends l and returns the one order the fake then holds.
func sendOne(t *testing.T, f *moyskladtest.Fake, m *MoySklad, l *lead.Lead) moyskladtest.CustomerOrder {
	t.Helper()
	id, err := m.Send(context.Background(), l)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	orders := f.Orders()
	if len(orders) != 1 {
		t.Fatalf("fake has %d orders, want 1", len(orders))
	}
	if id != orders[0].ID {
		t.Fatalf("Send returned %q, the CRM created %q", id, orders[0].ID)
	}
	return orders[0]
}

func href(path string) string { return HrefBase + path }

func TestSendCreatesCounterpartyAndOrder(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	l := sampleLead()
	o := sendOne(t, f, newDest(t, f, ""), l)

	cps := f.Counterparties()
	if len(cps) != 1 {
		t.Fatalf("%d counterparties, want 1", len(cps))
	}
	c := cps[0]
	if c.Name != "Иван Петров" || c.CompanyType != "individual" || c.Phone != "+79991234567" ||
		c.Email != "ivan@example.com" || c.SyncID != SyncID("counterparty", l.ID) {
		t.Errorf("counterparty %+v", c)
	}
	if got, want := o.Organization.Meta, (Meta{href("/entity/organization/" + moyskladtest.Organization), "organization", "application/json"}); got != moyskladtest.Meta(want) {
		t.Errorf("organization %+v, want %+v", got, want)
	}
	if got := o.Agent.Meta.Href; got != href("/entity/counterparty/"+c.ID) {
		t.Errorf("agent %s, want the new counterparty %s", got, c.ID)
	}
	if o.SyncID != SyncID("customerorder", l.ID) || o.SyncID == c.SyncID {
		t.Errorf("order syncId %q", o.SyncID)
	}
	for _, line := range []string{"Имя: Иван Петров", "Телефон: +79991234567", "Email: ivan@example.com",
		"Перезвоните после 18:00", "Город: Москва", "Форма: Заявка с сайта", "utm_source: yandex"} {
		if !strings.Contains(o.Description, line) {
			t.Errorf("description lacks %q:\n%s", line, o.Description)
		}
	}
	for _, k := range []string{"state", "store", "project", "contract", "owner", "rate", "positions", "attributes"} {
		if _, ok := o.Raw[k]; ok {
			t.Errorf("%s sent with no crm field for it", k)
		}
	}
	want := []string{
		"GET /api/remap/1.2/entity/counterparty?filter=phone%3D%2B79991234567&limit=1",
		"POST /api/remap/1.2/entity/counterparty",
		"POST /api/remap/1.2/entity/customerorder",
	}
	if got := f.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSendFindsCounterparty(t *testing.T) {
	cases := []struct {
		name     string
		existing moyskladtest.Counterparty
		phone    string
		filter   string
	}{
		{"by phone", moyskladtest.Counterparty{Name: "Иван", Phone: "+79991234567"}, "+7 999 123-45-67", "filter=phone%3D%2B79991234567"},
		{"by email without phone", moyskladtest.Counterparty{Name: "Иван", Email: "ivan@example.com"}, "", "filter=email%3Divan%40example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := moyskladtest.New()
			defer f.Close()
			id := f.AddCounterparty(c.existing)
			l := sampleLead()
			l.Phone = c.phone
			o := sendOne(t, f, newDest(t, f, ""), l)
			if o.Agent.Meta.Href != href("/entity/counterparty/"+id) {
				t.Errorf("agent %s, want the existing %s", o.Agent.Meta.Href, id)
			}
			if n := len(f.Counterparties()); n != 0 {
				t.Errorf("%d counterparties created, want 0", n)
			}
			if reqs := f.Requests(); len(reqs) != 2 || !strings.Contains(reqs[0], c.filter) {
				t.Errorf("requests %q, want a lookup with %s then the order", reqs, c.filter)
			}
		})
	}
}

// One row per line of the МойСклад block on Roistat's help page.
func TestSendCRMFields(t *testing.T) {
	cases := []struct {
		row   string
		crm   map[string]string
		check func(o moyskladtest.CustomerOrder) string
	}{
		{"state_uuid", map[string]string{"state_uuid": stateID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.State, href("/entity/customerorder/metadata/states/"+stateID), "state")
		}},
		{"currency_uuid", map[string]string{"currency_uuid": currencyID}, func(o moyskladtest.CustomerOrder) string {
			if o.Rate == nil {
				return "no rate"
			}
			return wantRef(o.Rate.Currency, href("/entity/currency/"+currencyID), "currency")
		}},
		{"project_uuid", map[string]string{"project_uuid": projectID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Project, href("/entity/project/"+projectID), "project")
		}},
		{"contract_uuid", map[string]string{"contract_uuid": contractID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Contract, href("/entity/contract/"+contractID), "contract")
		}},
		{"owner_uid (login)", map[string]string{"owner_uid": moyskladtest.Employee}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Owner, href("/entity/employee/"+moyskladtest.EmployeeID), "employee")
		}},
		{"owner_uid (unknown login)", map[string]string{"owner_uid": "nobody@demo"}, func(o moyskladtest.CustomerOrder) string {
			if o.Owner != nil || !strings.Contains(o.Description, "Ответственный не найден: nobody@demo") {
				return fmt.Sprintf("owner %v, description %q", o.Owner, o.Description)
			}
			return ""
		}},
		{"existing_store_uuid", map[string]string{"existing_store_uuid": storeID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Store, href("/entity/store/"+storeID), "store")
		}},
		{"existing_organization_uuid", map[string]string{"existing_organization_uuid": orgID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Organization, href("/entity/organization/"+orgID), "organization")
		}},
		{"existing_counterparty_uuid", map[string]string{"existing_counterparty_uuid": agentID}, func(o moyskladtest.CustomerOrder) string {
			return wantRef(o.Agent, href("/entity/counterparty/"+agentID), "counterparty")
		}},
		{"existing_good_uuid", map[string]string{"existing_good_uuid": `[
				{"uuid":"` + goodID + `","count":"2","discount":"5","vat":"18","sum":"1500.50"},
				{"uuid":"` + serviceID + `","type":"service"}]`},
			func(o moyskladtest.CustomerOrder) string {
				if len(o.Positions) != 2 {
					return fmt.Sprintf("%d positions", len(o.Positions))
				}
				p, q := o.Positions[0], o.Positions[1]
				if p.Quantity != 2 || p.Discount == nil || *p.Discount != 5 || p.VAT == nil || *p.VAT != 18 || p.Price == nil || *p.Price != 150050 {
					return fmt.Sprintf("first position %+v", p)
				}
				if msg := wantRef(p.Assortment, href("/entity/product/"+goodID), "product"); msg != "" {
					return msg
				}
				if q.Quantity != 1 || q.Discount != nil || q.VAT != nil || q.Price != nil {
					return fmt.Sprintf("second position %+v: defaults must be left to MoySklad", q)
				}
				return wantRef(q.Assortment, href("/entity/service/"+serviceID), "service")
			}},
		{"<Field_Name> string", map[string]string{"Город доставки": `{"uuid":"` + attrString + `","value":"Москва","type":"string"}`},
			wantAttr(attrString, "Москва")},
		{"<Field_Name> long", map[string]string{"Этаж": `{"uuid":"` + attrLong + `","value":"12","type":"long"}`},
			wantAttr(attrLong, float64(12))},
		{"<Field_Name> double", map[string]string{"Вес": `{"uuid":"` + attrDouble + `","value":"1,5","type":"double"}`},
			wantAttr(attrDouble, 1.5)},
		{"<Field_Name> boolean", map[string]string{"Срочно": `{"uuid":"` + attrBool + `","value":"1","type":"boolean"}`},
			wantAttr(attrBool, true)},
		{"<Field_Name> custom directory", map[string]string{"Канал": `{"uuid":"` + attrCustom + `","value":"` + projectID + "/" + contractID + `","type":"customentity"}`},
			wantAttr(attrCustom, map[string]any{"meta": map[string]any{"href": href("/entity/customentity/" + projectID + "/" + contractID), "type": "customentity", "mediaType": "application/json"}})},
		{"<Field_Name> counterparty", map[string]string{"Партнёр": `{"uuid":"` + attrAgent + `","value":"` + agentID + `","type":"counterparty"}`},
			wantAttr(attrAgent, map[string]any{"meta": map[string]any{"href": href("/entity/counterparty/" + agentID), "type": "counterparty", "mediaType": "application/json"}})},
		{"plain key (not in the list)", map[string]string{"Промокод": "SPRING"}, func(o moyskladtest.CustomerOrder) string {
			if !strings.Contains(o.Description, "Промокод: SPRING") || len(o.Attributes) != 0 {
				return "plain key not in the description: " + o.Description
			}
			return ""
		}},
	}
	for _, c := range cases {
		t.Run(c.row, func(t *testing.T) {
			f := moyskladtest.New()
			defer f.Close()
			l := sampleLead()
			l.CRM = c.crm
			if msg := c.check(sendOne(t, f, newDest(t, f, ""), l)); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func wantRef(r *moyskladtest.Ref, href, typ string) string {
	if r == nil {
		return "reference missing"
	}
	if r.Meta.Href != href || r.Meta.Type != typ || r.Meta.MediaType != "application/json" {
		return fmt.Sprintf("meta %+v, want href %s type %s", r.Meta, href, typ)
	}
	return ""
}

func wantAttr(id string, value any) func(o moyskladtest.CustomerOrder) string {
	return func(o moyskladtest.CustomerOrder) string {
		if len(o.Attributes) != 1 {
			return fmt.Sprintf("%d attributes", len(o.Attributes))
		}
		a := o.Attributes[0]
		if a.Meta.Href != href("/entity/customerorder/metadata/attributes/"+id) || a.Meta.Type != "attributemetadata" {
			return fmt.Sprintf("meta %+v", a.Meta)
		}
		if fmt.Sprintf("%#v", a.Value) != fmt.Sprintf("%#v", value) {
			return fmt.Sprintf("value %#v, want %#v", a.Value, value)
		}
		return ""
	}
}

func TestSendExistingCounterpartySkipsLookup(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	l := sampleLead()
	l.CRM = map[string]string{"existing_counterparty_uuid": agentID}
	sendOne(t, f, newDest(t, f, ""), l)
	if reqs := f.Requests(); len(reqs) != 1 {
		t.Errorf("requests %q, want only the order", reqs)
	}
}

func TestSendOwnerLookedUpOnce(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	m := newDest(t, f, "")
	for range 2 {
		l := sampleLead()
		l.CRM = map[string]string{"owner_uid": moyskladtest.Employee}
		if _, err := m.Send(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, r := range f.Requests() {
		if strings.Contains(r, "/entity/employee") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d employee lookups for two leads, want 1", n)
	}
}

func TestSendStoreOption(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	o := sendOne(t, f, newDest(t, f, "store "+storeID), sampleLead())
	if msg := wantRef(o.Store, href("/entity/store/"+storeID), "store"); msg != "" {
		t.Error(msg)
	}
}

func TestSendCRMFieldErrors(t *testing.T) {
	cases := []struct {
		crm  map[string]string
		want string
	}{
		{map[string]string{"state_uuid": "new"}, `crm state_uuid "new": want a UUID`},
		{map[string]string{"existing_counterparty_uuid": "42"}, `crm existing_counterparty_uuid "42": want a UUID`},
		{map[string]string{"existing_good_uuid": `[{"uuid":"<Good_ID>"}]`}, `item 1: uuid "<Good_ID>" is not a UUID`},
		{map[string]string{"existing_good_uuid": `[{"uuid":"` + goodID + `","count":"много"}]`}, `count: "много" is not a number`},
		{map[string]string{"existing_good_uuid": `товар`}, "want a JSON array"},
		{map[string]string{"Этаж": `{"uuid":"` + attrLong + `","value":"высокий","type":"long"}`}, `crm Этаж: value "высокий" is not an integer`},
		{map[string]string{"Этаж": `{"uuid":"` + attrLong + `",`}, "want a JSON object {uuid, value, type}"},
		{map[string]string{"Партнёр": `{"uuid":"` + attrAgent + `","value":"ООО Ромашка","type":"counterparty"}`}, "want the UUID of a counterparty"},
	}
	for _, c := range cases {
		f := moyskladtest.New()
		l := sampleLead()
		l.CRM = c.crm
		_, err := newDest(t, f, "").Send(context.Background(), l)
		reqs := f.Requests()
		f.Close()
		if !lead.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want permanent containing %q", c.crm, err, c.want)
		}
		if len(reqs) != 0 {
			t.Errorf("%v: %d requests made for a lead that cannot be sent", c.crm, len(reqs))
		}
	}
}

func TestSendBadEmailKeptOutOfCounterparty(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	l := sampleLead()
	l.Email = "ivan@mail"
	o := sendOne(t, f, newDest(t, f, ""), l)
	if c := f.Counterparties()[0]; c.Email != "" {
		t.Errorf("counterparty email %q; MoySklad rejects it (3015)", c.Email)
	}
	if !strings.Contains(o.Description, "Email: ivan@mail") {
		t.Errorf("description lost the email: %s", o.Description)
	}
}

func TestSendLongDescriptionCut(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	l := sampleLead()
	l.Comment = strings.Repeat("Очень длинный комментарий. ", 300)
	o := sendOne(t, f, newDest(t, f, ""), l)
	if n := len([]rune(o.Description)); n != DescriptionMax || !strings.HasSuffix(o.Description, "…") {
		t.Errorf("description is %d characters", n)
	}
}

func TestSendNoContactName(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	l := &lead.Lead{ID: lead.NewID(time.Now()), Phone: "+79991234567"}
	sendOne(t, f, newDest(t, f, ""), l)
	if c := f.Counterparties()[0]; c.Name != "+79991234567" {
		t.Errorf("counterparty name %q, want the phone", c.Name)
	}
}

// A resend after a lost answer finds the counterparty and replays the
// order's syncId: one counterparty, one order, the same id.
func TestSendResendIsIdempotent(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	m := newDest(t, f, "")
	l := sampleLead()
	id1, err := m.Send(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := m.Send(context.Background(), l)
	if err != nil || id2 != id1 {
		t.Fatalf("resend: %q %v, want %q", id2, err, id1)
	}
	if len(f.Orders()) != 1 || len(f.Counterparties()) != 1 {
		t.Fatalf("%d orders, %d counterparties; want 1 and 1", len(f.Orders()), len(f.Counterparties()))
	}
}

func TestSendFaults(t *testing.T) {
	cases := []struct {
		fault      crmtest.Fault
		extra      string
		permanent  bool
		status     int
		msg        string
		retryAfter time.Duration
	}{
		{crmtest.Unauthorized, "", true, 401, "Ошибка аутентификации: Неверный токен доступа (code 1056)", 0},
		{crmtest.PaymentHTML, "", true, 402, "Аккаунт заблокирован", 0},
		{crmtest.ForbiddenHTML, "", true, 403, "403 Forbidden", 0},
		{crmtest.RateJSON, "", false, 429, "(code 1049)", 1500 * time.Millisecond},
		{moyskladtest.Parallel, "", false, 429, "одновременное количество запросов (code 1073)", 0},
		{crmtest.RateHTML, "", false, 429, "429 Too Many Requests", 0},
		{crmtest.QueryLimit, "", false, 503, "ведутся технические работы (code 1074)", 0},
		{crmtest.ServerError, "", false, 500, "Неизвестная ошибка (code 1999)", 0},
		{crmtest.Slow, "timeout 300ms", false, 0, "timeout", 0},
		{crmtest.Garbage, "", false, 200, "unreadable answer", 0},
		{crmtest.Validation, "", true, 412, "поле 'name' не может быть пустым или отсутствовать (code 3000)", 0},
		{crmtest.Unavailable, "", false, 503, "empty answer", 0},
		{crmtest.Reset, "", false, 0, "request failed", 0},
	}
	steps := []struct {
		name  string
		ahead int // requests answered normally before the fault
		desc  string
	}{
		{"find counterparty", 0, "moysklad: find counterparty: "},
		{"create counterparty", 1, "moysklad: create counterparty: "},
		{"create order", 2, "moysklad: create order: "},
	}
	for _, step := range steps {
		for _, c := range cases {
			t.Run(step.name+"/"+string(c.fault), func(t *testing.T) {
				f := moyskladtest.New()
				defer f.Close()
				m := newDest(t, f, c.extra)
				for range step.ahead {
					f.Faults.Push(crmtest.None)
				}
				f.Faults.Push(c.fault)
				l := sampleLead()
				_, err := m.Send(context.Background(), l)
				var se *lead.SendError
				if !errors.As(err, &se) {
					t.Fatalf("error %v is not a *lead.SendError", err)
				}
				if se.Permanent != c.permanent || se.Status != c.status || !strings.Contains(err.Error(), c.msg) ||
					!strings.HasPrefix(err.Error(), step.desc) {
					t.Fatalf("got %q (permanent %v, status %d); want permanent %v, status %d, %q…%q",
						err, se.Permanent, se.Status, c.permanent, c.status, step.desc, c.msg)
				}
				if got := lead.RetryAfterOf(err); got != c.retryAfter {
					t.Errorf("retry after %v, want %v", got, c.retryAfter)
				}
				// The CRM recovers: the resend makes one counterparty and one order.
				if _, err := m.Send(context.Background(), l); err != nil {
					t.Fatalf("resend: %v", err)
				}
				if len(f.Orders()) != 1 || len(f.Counterparties()) != 1 {
					t.Fatalf("%d orders, %d counterparties after the resend; want 1 and 1", len(f.Orders()), len(f.Counterparties()))
				}
			})
		}
	}
}

// Without Accept-Encoding: gzip MoySklad answers 415 with no body; the
// adapter always sends it, so this checks the fake and the message.
func TestGzipRequired(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	req, _ := http.NewRequest(http.MethodGet, f.URL+"/api/remap/1.2/entity/counterparty?filter=phone=1", nil)
	req.Header.Set("Authorization", "Bearer "+moyskladtest.Token)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := crm.Do(http.DefaultClient, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnsupportedMediaType || len(resp.Body) != 0 {
		t.Fatalf("status %d, body %q; want 415 and no body", resp.Status, resp.Body)
	}
	err = classify(resp)
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "Accept-Encoding: gzip") {
		t.Fatalf("classify 415: %v", err)
	}
}

func TestSendWrongToken(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	_, err := newDest(t, f, "token other").Send(context.Background(), sampleLead())
	if !lead.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("got %v", err)
	}
}

func TestSendPlaceholders(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	t.Setenv("TEST_MOYSKLAD_TOKEN", moyskladtest.Token)
	t.Setenv("TEST_MOYSKLAD_ORG", moyskladtest.Organization)
	t.Setenv("TEST_MOYSKLAD_URL", f.URL+"/api/remap/1.2")
	m, err := parse("moysklad {\nbase_url {env.TEST_MOYSKLAD_URL}\ntoken {env.TEST_MOYSKLAD_TOKEN}\norganization {env.TEST_MOYSKLAD_ORG}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	sendOne(t, f, m, sampleLead())
}

func TestProvision(t *testing.T) {
	org := moyskladtest.Organization
	bad := []struct {
		m    MoySklad
		want string
	}{
		{MoySklad{Token: "t", Organization: "Моя компания"}, `organization "Моя компания": want a UUID`},
		{MoySklad{Token: "t", Organization: org, Store: "Основной склад"}, `store "Основной склад": want a UUID`},
		{MoySklad{Token: "t", Organization: org, Common: crm.Common{BaseURL: "api.moysklad.ru"}}, "want an absolute http(s) URL"},
	}
	for _, c := range bad {
		if err := c.m.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.m, err, c.want)
		}
	}
	good := []struct{ base, api string }{
		{"", DefaultBaseURL},
		{"https://api.moysklad.ru", DefaultBaseURL},
		{"https://api.moysklad.ru/api/remap/1.2/", DefaultBaseURL},
		{"http://127.0.0.1:8080/proxy", "http://127.0.0.1:8080/proxy"},
	}
	for _, c := range good {
		m := MoySklad{Token: "t", Organization: org, Common: crm.Common{BaseURL: c.base}}
		if err := m.Provision(caddy.Context{}); err != nil || m.api != c.api {
			t.Errorf("base_url %q: api %q, err %v; want %q", c.base, m.api, err, c.api)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"X-Lognex-Retry-After": {"1500"}, "X-Lognex-Reset": {"2500"}}, 1500 * time.Millisecond},
		{http.Header{"X-Lognex-Reset": {"2500"}}, 2500 * time.Millisecond},
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"X-Lognex-Retry-After": {"soon"}}, 0},
		{http.Header{}, 0},
	}
	for _, c := range cases {
		if got := RetryAfter(c.h); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

func TestMessage(t *testing.T) {
	msg, codes := Message([]byte(`{"errors":[{"error":"Ошибка сохранения объекта: поле 'name' не может быть пустым или отсутствовать","parameter":"name","code":3000},{"error":"Неверный формат UUID","code":1052,"error_message":"syncId"}]}`))
	if msg != "Ошибка сохранения объекта: поле 'name' не может быть пустым или отсутствовать (code 3000); Неверный формат UUID syncId (code 1052)" ||
		fmt.Sprint(codes) != "[3000 1052]" {
		t.Errorf("%q %v", msg, codes)
	}
	if msg, codes := Message([]byte("<html>")); msg != "" || codes != nil {
		t.Errorf("html: %q %v", msg, codes)
	}
}

func TestSyncID(t *testing.T) {
	a, b := SyncID("customerorder", "x"), SyncID("customerorder", "x")
	if a != b || !IsUUID(a) || a == SyncID("counterparty", "x") || a == SyncID("customerorder", "y") {
		t.Errorf("SyncID not stable per (kind, lead) or not a UUID: %s", a)
	}
}

// Codes that mean "later" are retried whatever status they come with.
func TestClassifyRetryCodes(t *testing.T) {
	cases := []struct {
		status, code int
		retry        bool
	}{
		{http.StatusForbidden, 1095, true},
		{http.StatusBadRequest, 1074, true},
		{http.StatusForbidden, 1016, false},
		{http.StatusPreconditionFailed, 3000, false},
	}
	for _, c := range cases {
		body := fmt.Sprintf(`{"errors":[{"error":"x","code":%d}]}`, c.code)
		err := classify(&crm.Response{Status: c.status, Header: http.Header{}, Body: []byte(body)})
		if err == nil || lead.IsPermanent(err) == c.retry {
			t.Errorf("status %d code %d: %v, want retry %v", c.status, c.code, err, c.retry)
		}
	}
}

// A token that may not list employees still delivers the order, without owner.
func TestSendOwnerLookupForbidden(t *testing.T) {
	f := moyskladtest.New()
	defer f.Close()
	f.Faults.Push(crmtest.ForbiddenHTML)
	l := sampleLead()
	l.CRM = map[string]string{"existing_counterparty_uuid": agentID, "owner_uid": moyskladtest.Employee}
	o := sendOne(t, f, newDest(t, f, ""), l)
	if o.Owner != nil || !strings.Contains(o.Description, "Ответственный не найден: "+moyskladtest.Employee) {
		t.Errorf("owner %v, description %q", o.Owner, o.Description)
	}
}

// A sum typed with group separators reads as it does in every other
// destination (crm.ParseNumber): "10 000" was refused here once.
func TestPositionSumAsTyped(t *testing.T) {
	const good = "7944ef04-f831-11e5-7a69-971500188b19"
	for _, sum := range []string{"10 000", "10\u00a0000", "10000", "10 000,00"} {
		ps, err := parsePositions(`[{"uuid":"` + good + `","sum":"` + sum + `"}]`)
		if err != nil || len(ps) != 1 || ps[0].Price == nil || *ps[0].Price != 1000000 {
			t.Errorf("sum %q: %+v, %v; want 1000000 kopecks", sum, ps, err)
		}
	}
}
