package intercept

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The script names the fields it held secret by what only the browser
// sees (here type=password, named "passcode"); the handler drops them from the
// parsed post.
func TestMarkerDropsOmittedFields(t *testing.T) {
	v, err := EncodeCookieJSON(map[string]any{"v": 1, "r": "abc", "s": "sid-0123456789abcdef", "o": []string{"passcode", " Secret_Word "}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMarker(v)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseBody("application/x-www-form-urlencoded", strings.NewReader("email=a%40b.ru&passcode=hunter2&secret_word=x&name=Ann"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Drop(f).Map()
	if len(got) != 2 || got["email"] != "a@b.ru" || got["name"] != "Ann" {
		t.Errorf("after Drop: %q, want email and name only", got)
	}
	if len(f) != 4 {
		t.Errorf("Drop changed its argument: %q", f.Map())
	}
	var none *Marker
	if len(none.Drop(f)) != 4 {
		t.Error("a nil marker dropped fields")
	}

	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprint("f", i)
	}
	v, _ = EncodeCookieJSON(map[string]any{"v": 1, "r": "abc", "s": "sid-0123456789abcdef", "o": many})
	if m, err := ParseMarker(v); err != nil || len(m.Omit) != MaxValues {
		t.Errorf("200 omitted names: %v, kept %d, want %d", err, len(m.Omit), MaxValues)
	}
}

func TestExpireMarker(t *testing.T) {
	for _, c := range []struct {
		tls    bool
		secure bool
	}{{false, false}, {true, true}} {
		r := httptest.NewRequest(http.MethodPost, "/send", nil)
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		w.Header().Add("Set-Cookie", "site=1; Path=/")
		ExpireMarker(w, r)
		sc := w.Header().Values("Set-Cookie")
		if len(sc) != 2 || sc[0] != "site=1; Path=/" {
			t.Fatalf("Set-Cookie %q: want the site's cookie kept and one more", sc)
		}
		resp := http.Response{Header: http.Header{"Set-Cookie": {sc[1]}}}
		ck := resp.Cookies()
		if len(ck) != 1 || ck[0].Name != MarkerCookie || ck[0].MaxAge >= 0 || ck[0].Path != "/" || ck[0].Secure != c.secure ||
			ck[0].SameSite != http.SameSiteLaxMode {
			t.Errorf("tls %v: %q does not delete the marker as the script set it", c.tls, sc[1])
		}
	}
}
