package intercept

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExtractSources(t *testing.T) {
	rule := &Rule{
		Title:   "Заявка",
		Submit:  "#f",
		Name:    &Source{SourceField, "Name"},
		Phone:   &Source{SourceJS, "return x"},
		Comment: &Source{SourceStatic, "с сайта"},
		Extra:   []Labeled{{"Город", Source{SourceSelector, ".city"}}, {"Пусто", Source{SourceField, "nothing"}}},
		CRM:     []Labeled{{"status_id", Source{SourceStatic, "142"}}, {"1276733", Source{SourceField, "Text"}}},
	}
	in := Input{
		Fields: Fields{{"Name", "Иван"}, {"Text", "Хочу окна"}, {"email", "a@b.ru"}},
		Values: map[string]string{"phone": "8 (999) 123-45-67", "extra:Город": "Москва"},
	}
	l := Extract(rule, in, "RU")
	checks := map[string][2]string{
		"title":   {l.Title, "Заявка"},
		"name":    {l.Name, "Иван"},
		"phone":   {l.Phone, "+79991234567"},
		"email":   {l.Email, "a@b.ru"},
		"comment": {l.Comment, "с сайта"},
		"city":    {l.Extra["Город"], "Москва"},
		"status":  {l.CRM["status_id"], "142"},
		"custom":  {l.CRM["1276733"], "Хочу окна"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
	if _, ok := l.Extra["Пусто"]; ok {
		t.Error("empty extra kept")
	}
}

func TestAutoDetect(t *testing.T) {
	cases := []struct {
		fields Fields
		types  map[string]string
		role   string
		want   string
	}{
		{Fields{{"your-name", "Анна"}}, nil, RoleName, "Анна"},
		{Fields{{"Телефон", "89991234567"}}, nil, RolePhone, "+79991234567"},
		{Fields{{"fio", "Петров"}}, nil, RoleName, "Петров"},
		{Fields{{"user_mail", "x@y.z"}}, nil, RoleEmail, "x@y.z"},
		{Fields{{"your-message", "hi"}}, nil, RoleComment, "hi"},
		{Fields{{"q1", "89991234567"}}, map[string]string{"q1": "tel"}, RolePhone, "+79991234567"},
		{Fields{{"contact", "x@y.z"}}, map[string]string{"contact": "email"}, RoleEmail, "x@y.z"},
		// Framework names: the innermost key decides, as a plain name would.
		{Fields{{"demo_request[name]", "Анна"}}, nil, RoleName, "Анна"},
		{Fields{{"email_form[name]", "Анна"}, {"email_form[mail]", "x@y.z"}}, nil, RoleEmail, "x@y.z"},
		{Fields{{"email_form[name]", "Анна"}}, nil, RoleName, "Анна"},
		{Fields{{"data[Lead][phone]", "89991234567"}}, nil, RolePhone, "+79991234567"},
		{Fields{{"fields[email]", "x@y.z"}}, nil, RoleEmail, "x@y.z"},
		{Fields{{"fields[phone][0][value]", "89991234567"}}, nil, RolePhone, "+79991234567"},
		{Fields{{"contact[0][value]", "x@y.z"}}, nil, RoleEmail, ""},
		{Fields{{"order[comment]", "позвоните вечером"}}, nil, RoleComment, "позвоните вечером"},
		{Fields{{"phone", "89991234567"}}, nil, RolePhone, "+79991234567"},
	}
	for _, c := range cases {
		l := Extract(nil, Input{Fields: c.fields, Types: c.types}, "RU")
		got := map[string]string{RoleName: l.Name, RolePhone: l.Phone, RoleEmail: l.Email, RoleComment: l.Comment}[c.role]
		if got != c.want {
			t.Errorf("%v: %s = %q, want %q", c.fields, c.role, got, c.want)
		}
	}
}

func TestInnermostKey(t *testing.T) {
	for name, want := range map[string]string{
		"phone":                   "phone",
		"demo_request[name]":      "name",
		"data[Lead][phone]":       "phone",
		"fields[email]":           "email",
		"contact[0][value]":       "contact",
		"fields[phone][0][value]": "phone",
		"items[]":                 "items",
		"a[b":                     "a[b",
		"[x]":                     "x",
		"tags[][]":                "tags",
	} {
		if got := InnermostKey(name); got != want {
			t.Errorf("InnermostKey(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMatchPathPattern(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          bool
	}{
		{"/contact", "/contact", true},
		{"/contact", "/contact/", true},
		{"/contact", "/contacts", false},
		{"/order/*", "/order/new/step2", true},
		{"/order/*", "/orders", false},
		{"/api/*/lead", "/api/v1/lead", true},
		{"/api/*/lead", "/api/v1/x/lead", false},
		{"", "/x", false},
	}
	for _, c := range cases {
		if got := MatchPathPattern(c.pattern, c.path); got != c.want {
			t.Errorf("MatchPathPattern(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	v, err := EncodeCookieJSON(Marker{V: 1, Rule: RuleID("A"), SID: "abcdefgh12345678", Action: "/contact", Charset: "windows-1251", Values: map[string]string{"phone": "123"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMarker(v)
	if err != nil || m.Rule != RuleID("A") || m.Values["phone"] != "123" || m.Charset != "windows-1251" {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{"", "!!!", "e30", // {}
		mustEncode(Marker{V: 2, Rule: "r", SID: "abcdefgh12345678"}),
		mustEncode(Marker{V: 1, Rule: "r", SID: "short"}),
		mustEncode(Marker{V: 1, Rule: "r", SID: "bad sid with spaces!"}),
		strings.Repeat("A", 5000)} {
		if _, err := ParseMarker(bad); err == nil {
			t.Errorf("ParseMarker(%.30q): no error", bad)
		}
	}
}

func mustEncode(v any) string {
	s, err := EncodeCookieJSON(v)
	if err != nil {
		panic(err)
	}
	return s
}

func TestParseReport(t *testing.T) {
	ok := `{"v":1,"r":"abc","s":"abcdefgh12345678","hp":"","page":"https://x/","f":{"phone":"1","password":"p"},"x":{"extra:Город":"М"}}`
	rep, err := ParseReport([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if _, leaked := rep.Fields["password"]; leaked || rep.Fields["phone"] != "1" || rep.Values["extra:Город"] != "М" {
		t.Fatalf("%+v", rep)
	}
	if _, err := ParseReport([]byte(strings.Replace(ok, `"hp":""`, `"hp":"bot"`, 1))); err != ErrReportHoneypot {
		t.Fatalf("honeypot: %v", err)
	}
	for _, bad := range []string{`{`, `[]`, `{"v":1}`, `{"v":1,"r":"a","s":"x"}`, `null`} {
		if _, err := ParseReport([]byte(bad)); err == nil {
			t.Errorf("ParseReport(%s): no error", bad)
		}
	}
}

func TestVisitFromCookie(t *testing.T) {
	r := httptest.NewRequest("POST", "/contact", nil)
	r.RemoteAddr = "203.0.113.7:5555"
	r.Header.Set("User-Agent", "UA")
	r.AddCookie(&http.Cookie{Name: VisitCookie, Value: mustEncode(VisitInfo{ID: "v1", Landing: "https://x/?utm_source=ya", UTM: map[string]string{"source": "ya", "bogus": "x"}})})
	v := Visit(r, "203.0.113.7", ReadVisit(r), "https://x/page")
	if v.ID != "v1" || v.UTM["source"] != "ya" || v.UTM["bogus"] != "" || v.IP != "203.0.113.7" || v.Page != "https://x/page" || v.UserAgent != "UA" {
		t.Fatalf("%+v", v)
	}
}

// The remembered answers are the regexps' answers, and the memory is bounded
// whatever names visitors send.
func TestAutoRoleCache(t *testing.T) {
	names := []string{"email", "your-email", "Phone", "tel", "fio", "your-name", "message", "q", "city"}
	for round := 0; round < 2; round++ { // the second round answers from the cache
		for _, n := range names {
			want := ""
			for _, a := range autoNames {
				if a.re.MatchString(n) {
					want = a.role
					break
				}
			}
			if got := AutoRole(n); got != want {
				t.Errorf("round %d: AutoRole(%q) = %q, want %q", round, n, got, want)
			}
		}
	}
	for i := 0; i < 2*memoMaxNames; i++ {
		AutoRole(fmt.Sprintf("field_%d", i))
	}
	if n := autoRoles.len(); n > memoMaxNames {
		t.Errorf("cache holds %d names, bound is %d", n, memoMaxNames)
	}
	if got := AutoRole("contact_phone"); got != RolePhone {
		t.Errorf("past the bound: AutoRole(contact_phone) = %q", got)
	}
}
