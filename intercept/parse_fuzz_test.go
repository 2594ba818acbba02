package intercept

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseBody: any body under any content type parses or errors, never
// panics, keeps within the limits and yields valid UTF-8.
func FuzzParseBody(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "name=%D0%98&phone=123&a=1&a=2", "")
	f.Add("application/x-www-form-urlencoded", "name=%C8%E2%E0%ED", "windows-1251")
	f.Add("application/json", `{"a":{"b":[1,"x",null,true]},"phone":"+7"}`, "")
	f.Add("multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--X--\r\n", "")
	f.Add("multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nbin\r\n--X--\r\n", "koi8-r")
	f.Add("text/plain", "a=b\nc=d", "")
	f.Fuzz(func(t *testing.T, ct, body, charset string) {
		fields, _ := ParseBody(ct, strings.NewReader(body), charset, "")
		if len(fields) > MaxFields {
			t.Fatalf("%d fields", len(fields))
		}
		for _, x := range fields {
			if len(x.Value) > MaxFieldLen+8 {
				t.Fatalf("value of %d bytes", len(x.Value))
			}
			if !utf8.ValidString(x.Name) || !utf8.ValidString(x.Value) {
				t.Fatalf("invalid UTF-8: %q=%q", x.Name, x.Value)
			}
			if Excluded(x.Name) {
				t.Fatalf("excluded field kept: %q", x.Name)
			}
		}
	})
}

// FuzzParseMarker: hostile cookies never panic and never pass unchecked.
func FuzzParseMarker(f *testing.F) {
	f.Add(mustEncode(Marker{V: 1, Rule: "abc", SID: "abcdefgh12345678", Values: map[string]string{"phone": "1"}}))
	f.Add("e30")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		m, err := ParseMarker(v)
		if err != nil {
			return
		}
		if m.V != 1 || !validSID(m.SID) || len(m.Values) > MaxValues || len(m.Token) > MaxMarkerToken {
			t.Fatalf("accepted bad marker %+v", m)
		}
		for _, x := range m.Values {
			if len(x) > MaxValueLen {
				t.Fatal("value over limit")
			}
		}
	})
}

// FuzzParseReport: hostile collect bodies never panic.
func FuzzParseReport(f *testing.F) {
	f.Add(`{"v":1,"r":"abc","s":"abcdefgh12345678","hp":"","f":{"phone":"1"},"x":{"name":"a"},"vis":{"id":"v","u":{"source":"s"}}}`)
	f.Add(`{"v":1}`)
	f.Fuzz(func(t *testing.T, body string) {
		rep, err := ParseReport([]byte(body))
		if err != nil {
			return
		}
		if len(rep.Fields) > MaxFields || len(rep.Values) > MaxValues || rep.Honey != "" {
			t.Fatalf("accepted bad report")
		}
	})
}
