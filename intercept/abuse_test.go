package intercept

import (
	"strings"
	"testing"
)

// A JSON body nested 100,000 deep (under 1 MB) keeps the fields it could
// read, before and after the deep part, and says what it skipped.
func TestParseBodyDeepJSONKeepsFields(t *testing.T) {
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	for _, body := range []string{
		`{"phone":"+79991234567","junk":` + deep + `,"name":"Анна"}`,
		`{"junk":` + deep + `,"phone":"+79991234567","name":"Анна"}`,
		`{"name":"Анна","phone":"+79991234567","junk":` + strings.Repeat(`{"a":`, 50_000) + "1" + strings.Repeat("}", 50_000) + `}`,
	} {
		f, err := ParseBody("application/json", strings.NewReader(body), "", "")
		if err == nil || !strings.Contains(err.Error(), "deeper") {
			t.Errorf("err = %v, want the depth named", err)
		}
		if p, _ := f.Get("phone"); p != "+79991234567" {
			t.Errorf("phone %q", p)
		}
		if n, _ := f.Get("name"); n != "Анна" {
			t.Errorf("name %q", n)
		}
	}
	// Cut off inside the deep part: malformed, no fields (no lead from
	// half a body).
	f, err := ParseBody("application/json", strings.NewReader(`{"phone":"+79991234567","junk":`+strings.Repeat("[", 100_000)), "", "")
	if err == nil || len(f) != 0 {
		t.Errorf("truncated: %v, %v; want an error and no fields", f, err)
	}
}

// Names of secrets are never stored, whatever the body's encoding: the
// name, or its last part, is api_key, secret, token or pin ("pin_code" is
// an Indian postal code, and kept).
func TestSecretNamesNeverStored(t *testing.T) {
	for _, name := range []string{"api_key", "apiKey", "API-KEY", "secret", "client_secret", "token", "access_token", "user.token", "pin", "PIN", "card.pin"} {
		if !Excluded(name) {
			t.Errorf("%q is kept", name)
		}
	}
	for _, name := range []string{"shipping", "pinterest", "opinion", "keyword", "secretary", "tokenizer", "spin", "pin_code", "token_count"} {
		if Excluded(name) {
			t.Errorf("%q is dropped", name)
		}
	}
	f, _ := ParseBody("application/json", strings.NewReader(`{"phone":"1","auth":{"token":"t0k"},"api_key":"k","pin":"1234"}`), "", "")
	if len(f) != 1 {
		t.Errorf("fields %v, want the phone alone", f)
	}
}

// NUL bytes never reach a stored value or name.
func TestNULRemoved(t *testing.T) {
	var f Fields
	f.Add("na\x00me", "Ан\x00на\x00")
	if got := f.Map(); got["name"] != "Анна" {
		t.Errorf("fields %q", got)
	}
	if v := clampValues(map[string]string{"ph\x00one": "+7\x00999"}); v["phone"] != "+7999" {
		t.Errorf("values %q", v)
	}
}
