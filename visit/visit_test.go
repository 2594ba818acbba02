package visit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name, ref, query, want string
	}{
		{"no referrer, no tags", "", "", SourceDirect},
		{"internal referrer", "https://shop.example/cart", "", SourceDirect},
		{"www twin", "https://www.shop.example/", "", SourceDirect},
		{"google", "https://www.google.com/", "", SourceOrganic},
		{"google.co.uk", "https://www.google.co.uk/search?q=x", "", SourceOrganic},
		{"yandex.ru", "https://yandex.ru/search/?text=x", "", SourceOrganic},
		{"ya.ru", "https://ya.ru/", "", SourceOrganic},
		{"vk", "https://vk.com/wall-1_2", "", SourceSocial},
		{"telegram", "https://t.me/channel/5", "", SourceSocial},
		{"webmail", "https://e.mail.ru/inbox", "", SourceEmail},
		{"mail.ru search is search", "https://go.mail.ru/search?q=x", "", SourceOrganic},
		{"other site", "https://blog.example.org/post", "", SourceReferral},
		{"yclid", "https://yandex.ru/", "yclid=123", SourceAds},
		{"gclid", "", "gclid=abc", SourceAds},
		{"fbclid", "https://l.facebook.com/", "fbclid=abc", SourceAds},
		{"cpc", "", "utm_source=yandex&utm_medium=cpc", SourceAds},
		{"email medium", "", "utm_source=newsletter&utm_medium=email", SourceEmail},
		{"email beats click id", "", "utm_medium=email&gclid=1", SourceEmail},
		{"social medium", "", "utm_source=vk&utm_medium=social", SourceSocial},
		{"organic medium", "", "utm_source=google&utm_medium=organic", SourceOrganic},
		{"tagged social source", "", "utm_source=vk.com&utm_medium=post", SourceSocial},
		{"tagged unknown", "", "utm_source=partner&utm_medium=link", SourceReferral},
		{"case", "", "utm_medium=CPC", SourceAds},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://shop.example/p?"+c.query, nil)
			if c.ref != "" {
				r.Header.Set("Referer", c.ref)
			}
			v := FromRequest(r, "1", time.Now())
			if v.Source != c.want {
				t.Errorf("source %q, want %q (visit %+v)", v.Source, c.want, v)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	long := strings.Repeat("я", 2000)
	r := httptest.NewRequest("GET", "http://Shop.Example:8080/landing?utm_source=yandex&utm_medium=cpc&utm_campaign=spring&utm_term=%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD&utm_content=ad1&yclid=42&x="+long, nil)
	r.Header.Set("Referer", "https://yandex.ru/")
	v := FromRequest(r, "7", time.Unix(1, 0))
	if v.Site != "shop.example" || v.ID != "7" || !v.At.Equal(time.Unix(1, 0)) {
		t.Errorf("visit %+v", v)
	}
	if len(v.Landing) > MaxURL || !strings.HasPrefix(v.Landing, "http://shop.example:8080/landing?utm_source=yandex") {
		t.Errorf("landing %q (%d bytes)", v.Landing, len(v.Landing))
	}
	want := map[string]string{"source": "yandex", "medium": "cpc", "campaign": "spring", "term": "диван", "content": "ad1"}
	if fmt.Sprint(v.UTM) != fmt.Sprint(want) || v.Clicks["yclid"] != "42" || v.Referrer != "https://yandex.ru/" {
		t.Errorf("utm %v clicks %v referrer %q", v.UTM, v.Clicks, v.Referrer)
	}
	if got := Clamp("яя", 3); got != "я" {
		t.Errorf("Clamp on a rune boundary: %q", got)
	}
}

func TestIDAndCookie(t *testing.T) {
	now := time.Now()
	a, b := NewID(now), NewID(now)
	if a == b || !ValidID(a) || len(a) > 19 {
		t.Fatalf("ids %q %q", a, b)
	}
	if _, at, ok := idTime(a); !ok || at.UnixMilli() != now.UnixMilli() {
		t.Errorf("idTime(%q) = %v %v", a, at, ok)
	}
	if _, _, ok := idTime("123456"); ok {
		t.Error("a Roistat-sized id read as one of ours")
	}
	for _, bad := range []string{"", "nocookie", "12a", "-1", strings.Repeat("9", 20)} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q)", bad)
		}
	}
	rec := httptest.NewRecorder()
	SetCookie(rec.Header(), a, time.Hour, true)
	c := rec.Result().Cookies()[0]
	if c.Name != "roistat_visit" || c.Value != a || c.MaxAge != 3600 || !c.Secure || c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie %+v", c)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "a=1; roistat_visit_x=2")
	r.Header.Add("Cookie", "b=2; roistat_visit="+a+"; c=3")
	if got := ReadID(r); got != a {
		t.Errorf("ReadID = %q", got)
	}
	r.Header.Set("Cookie", "roistat_visit=nocookie")
	if got := ReadID(r); got != "" {
		t.Errorf("ReadID of a bad value = %q", got)
	}
}

func TestIsBot(t *testing.T) {
	bots := []string{"", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "curl/8.5.0", "python-requests/2.31",
		"facebookexternalhit/1.1", "Mozilla/5.0 (compatible; bingbot/2.0)", "TelegramBot (like TwitterBot)", "Go-http-client/1.1"}
	for _, ua := range bots {
		if !IsBot(ua) {
			t.Errorf("IsBot(%q) = false", ua)
		}
	}
	people := []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"}
	for _, ua := range people {
		if IsBot(ua) {
			t.Errorf("IsBot(%q) = true", ua)
		}
	}
}

func TestExpand(t *testing.T) {
	v := &Visit{ID: "42", Landing: "https://s.example/?utm_source=ya", Referrer: "https://ya.ru/", Source: SourceAds,
		UTM: map[string]string{"source": "ya", "medium": "cpc", "campaign": "весна", "term": "t", "content": "c"}}
	vars := Vars{Visit: v, Domain: "s.example"}
	cases := map[string]string{
		"Заявка {utmCampaign} ({source})":                            "Заявка весна (ads)",
		"{visit}|{landingPage}|{referrer}":                           "42|https://s.example/?utm_source=ya|https://ya.ru/",
		"{utmSource}/{utmMedium}/{utmTerm}/{utmContent} on {domain}": "ya/cpc/t/c on s.example",
		"{city} {sourceAliasLevel1} {unknown":                        "{city} {sourceAliasLevel1} {unknown",
		"{a{visit}} {}":                                              "{a42} {}",
		"no braces":                                                  "no braces",
	}
	for in, want := range cases {
		if got := Expand(in, vars); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Expand("[{visit}{utmSource}]", Vars{}); got != "[]" {
		t.Errorf("no visit: %q", got)
	}
}
