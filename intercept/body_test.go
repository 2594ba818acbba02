package intercept

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
)

func cp1251(s string) string {
	b, err := charmap.Windows1251.NewEncoder().String(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseBody(t *testing.T) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("name", "Анна")
	fw, _ := mw.CreateFormFile("file", "secret.txt")
	fw.Write([]byte("file contents must never be captured"))
	mw.WriteField("phone", "+7 999 111 22 33")
	mw.WriteField("password", "hunter2")
	mw.Close()

	cases := []struct {
		name, ct, body, charset string
		want                    map[string]string
		notWant                 []string
	}{
		{"urlencoded keeps order and joins repeats", "application/x-www-form-urlencoded",
			"b=2&a=1&b=3&csrf_token=x&_wpnonce=y", "", map[string]string{"b": "2, 3", "a": "1"}, []string{"csrf_token", "_wpnonce"}},
		{"urlencoded cp1251 from the page charset", "application/x-www-form-urlencoded",
			"name=" + urlEscapeBytes(cp1251("Иван")), "windows-1251", map[string]string{"name": "Иван"}, nil},
		{"urlencoded cp1251 by fallback", "application/x-www-form-urlencoded",
			"name=" + urlEscapeBytes(cp1251("Пётр")), "", map[string]string{"name": "Пётр"}, nil},
		{"utf-8 stays utf-8", "application/x-www-form-urlencoded; charset=UTF-8",
			"name=%D0%98%D0%B2%D0%B0%D0%BD", "", map[string]string{"name": "Иван"}, nil},
		{"multipart skips files and passwords", mw.FormDataContentType(), mp.String(), "",
			map[string]string{"name": "Анна", "phone": "+7 999 111 22 33"}, []string{"file", "password"}},
		{"json nested", "application/json", `{"contact":{"phone":"123","tags":["a","b"]},"cvv":"123","n":1.5,"x":null}`, "",
			map[string]string{"contact.phone": "123", "contact.tags.0": "a", "contact.tags.1": "b", "n": "1.5", "x": ""}, []string{"cvv"}},
		{"card number by value", "application/x-www-form-urlencoded", "note=4111+1111+1111+1111&phone=89991234567", "",
			map[string]string{"phone": "89991234567"}, []string{"note"}},
		{"text/plain form", "text/plain", "name=Ivan\r\nphone=123\r\n", "", map[string]string{"name": "Ivan", "phone": "123"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := ParseBody(c.ct, strings.NewReader(c.body), c.charset, "")
			if err != nil {
				t.Fatal(err)
			}
			got := f.Map()
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			for _, k := range c.notWant {
				if _, ok := got[k]; ok {
					t.Errorf("%s captured: %v", k, got)
				}
			}
			if strings.Contains(strings.Join(valuesOf(got), " "), "file contents") {
				t.Error("file part captured")
			}
		})
	}
	if f, _ := ParseBody("application/x-www-form-urlencoded", strings.NewReader("b=2&a=1"), "", ""); f[0].Name != "b" {
		t.Errorf("order lost: %v", f)
	}
}

func valuesOf(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func urlEscapeBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString("%")
		b.WriteString(strings.ToUpper(string("0123456789abcdef"[s[i]>>4]) + string("0123456789abcdef"[s[i]&15])))
	}
	return b.String()
}

func TestParseBodyErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	cases := []struct{ ct, body string }{
		{"application/json", `{"a":`},
		{"application/json", deep},
		{"multipart/form-data", "x"},
		{"multipart/form-data; boundary=zz", "--zz\r\nbroken"},
		{"image/png", "x"},
		{"", "a=b"},
		{"text/html; charset", "x"},
	}
	for _, c := range cases {
		if _, err := ParseBody(c.ct, strings.NewReader(c.body), "", ""); err == nil {
			t.Errorf("ParseBody(%q, %q): no error", c.ct, c.body)
		}
	}
}

func TestParseBodyLimits(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString("f")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(strings.Repeat("y", i/26))
		b.WriteString("=v&")
	}
	b.WriteString("long=" + strings.Repeat("z", 100000))
	f, err := ParseBody("application/x-www-form-urlencoded", strings.NewReader(b.String()), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(f) > MaxFields {
		t.Fatalf("%d fields kept, limit %d", len(f), MaxFields)
	}
	for _, x := range f {
		if len(x.Value) > MaxFieldLen {
			t.Fatalf("field %s is %d bytes", x.Name, len(x.Value))
		}
	}
}

func TestReadBodyReplaysExactly(t *testing.T) {
	for _, size := range []int{0, 10, 300 << 10, 2 << 20} {
		data := bytes.Repeat([]byte{0, 1, 2, 0xff, 'a'}, size/5+1)[:size]
		b, err := ReadBody(bytes.NewReader(data), -1, 256<<10, 1<<20, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if b.Complete() != (size <= 1<<20) {
			t.Fatalf("size %d: complete=%v", size, b.Complete())
		}
		if b.Complete() {
			got, _ := io.ReadAll(b.Reader())
			if !bytes.Equal(got, data) {
				t.Fatalf("size %d: read-ahead differs", size)
			}
		}
		rc := b.Replay(io.NopCloser(nil))
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: replay differs (%d bytes, err %v)", size, len(got), err)
		}
	}
}

func TestExcluded(t *testing.T) {
	// Twice: the second answer comes from the cache of names.
	for range 2 {
		testExcluded(t)
	}
	// Past the cache's bound, names are still matched, not all allowed.
	for i := range memoMaxNames + 10 {
		if Excluded(fmt.Sprintf("field_%d", i)) {
			t.Fatalf("field_%d excluded", i)
		}
	}
	if n := excluded.len(); n > memoMaxNames {
		t.Errorf("the cache holds %d names, bound %d", n, memoMaxNames)
	}
	for _, n := range []string{"new_password", "card-number", strings.Repeat("x", 70) + "_password"} {
		if !Excluded(n) {
			t.Errorf("%q not excluded once the cache is full", n)
		}
	}
}

func testExcluded(t *testing.T) {
	t.Helper()
	for _, n := range []string{"password", "user_password", "pwd", "csrf_token", "_token", "authenticity_token", "__RequestVerificationToken", "cvv", "cvc2", "card_number", "cc-number", "cc_exp", "_wpnonce"} {
		if !Excluded(n) {
			t.Errorf("%q not excluded", n)
		}
	}
	for _, n := range []string{"name", "phone", "email", "message", "passport_city", "company", "token_count_x", "comment"} {
		if Excluded(n) {
			t.Errorf("%q excluded", n)
		}
	}
}
