package visit

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzExpand: placeholders never panic, leave text without a known
// placeholder as it is, and expand every known one.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "{visit}", "{a{visit}}", "{{utmSource}}", "}{", "{city} {domain}", "Заявка {utmCampaign}", "{", "{}"} {
		f.Add(s)
	}
	vars := Vars{Visit: &Visit{ID: "1", Source: "ads", UTM: map[string]string{"source": "ya"}}, Domain: "d"}
	f.Fuzz(func(t *testing.T, s string) {
		out := Expand(s, vars)
		if !strings.Contains(s, "{") && out != s {
			t.Fatalf("Expand(%q) = %q without a placeholder", s, out)
		}
		for _, name := range []string{"{visit}", "{source}", "{utmSource}", "{domain}"} {
			if strings.Contains(out, name) && !strings.Contains(s, name) {
				t.Fatalf("Expand(%q) = %q made a placeholder", s, out)
			}
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("Expand(%q) = %q: invalid UTF-8", s, out)
		}
	})
}

// FuzzCookieAndRequest: a visit cookie and a landing URL of any content
// give a valid id or none, and a bounded record.
func FuzzCookieAndRequest(f *testing.F) {
	f.Add("roistat_visit=117721528023645566", "/?utm_source=ya&gclid=1", "https://ya.ru/")
	f.Add(`roistat_visit="1"; a=b`, "/%zz?utm_medium=%ff", "::not a url")
	f.Fuzz(func(t *testing.T, cookie, path, ref string) {
		r := httptest.NewRequest("GET", "http://s.example/", nil)
		r.Header.Set("Cookie", cookie)
		if id := ReadID(r); id != "" && !ValidID(id) {
			t.Fatalf("ReadID(%q) = %q", cookie, id)
		}
		r.URL.RawQuery = strings.TrimPrefix(path, "/")
		r.Header.Set("Referer", ref)
		v := FromRequest(r, "1", time.Now())
		if len(v.Landing) > MaxURL || len(v.Referrer) > MaxURL {
			t.Fatalf("unbounded visit: %d, %d bytes", len(v.Landing), len(v.Referrer))
		}
		for _, m := range []map[string]string{v.UTM, v.Clicks} {
			for _, s := range m {
				if len(s) > MaxValue {
					t.Fatalf("unbounded tag: %d bytes", len(s))
				}
			}
		}
		found := false
		for _, s := range Sources {
			found = found || v.Source == s
		}
		if !found {
			t.Fatalf("source %q", v.Source)
		}
	})
}
