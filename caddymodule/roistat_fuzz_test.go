package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/leadproxy/leadproxy/lead"
)

// inProcessCaddy runs a Caddyfile inside the test process, so the fuzzer's
// coverage guidance sees the server's code (the real binary of the other
// end-to-end tests is a black box to it). {{ADMIN}}, {{PORT}} and
// {{STORAGE}} are filled in; the store lives in /dev/shm when there is
// one, where an fsync costs nothing. It returns the site's and the admin
// endpoint's base URLs.
func inProcessCaddy(tb testing.TB, caddyfile string) (site, admin string) {
	tb.Helper()
	dir := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "leadproxy-fuzz-")
		if err == nil {
			dir = d
			tb.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	if dir == "" {
		dir = tb.TempDir()
	}
	admin = fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	port := freePort(tb)
	cf := strings.NewReplacer("{{ADMIN}}", admin, "{{PORT}}", fmt.Sprint(port), "{{STORAGE}}", dir+"/leads").Replace(caddyfile)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { caddy.Stop() })
	return fmt.Sprintf("http://127.0.0.1:%d", port), "http://" + admin
}

const roistatFuzzKey = "fuzz-api-key-8f3a"

const roistatFuzzSite = `{
	admin {{ADMIN}}
	persist_config off
	log {
		output discard
	}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT}} {
	leadproxy {
		api_key ` + roistatFuzzKey + `
		max_body 16KB
	}
	respond "site"
}
`

// FuzzRoistatAPI: any call to {prefix}/api/proxy/1.0/leads/add gets
// Roistat's JSON answer (never a 500, never a dropped connection), a lead
// is stored only with the right key, and the stored lead is valid UTF-8,
// bounded, and never carries the API key unless the call put it in a
// second parameter.
func FuzzRoistatAPI(f *testing.F) {
	site, admin := inProcessCaddy(f, roistatFuzzSite)
	k := "key=" + roistatFuzzKey
	f.Add("GET", k+"&title=T&name=%D0%98%D0%B2%D0%B0%D0%BD&phone=89991234567&email=a%40b.c&comment=hi&roistat=123&fields[status_id]=1&client_fields[city]=M&is_need_callback=1&callback_phone=89990000000&is_skip_sending=1", "", []byte(nil))
	f.Add("POST", "", "application/x-www-form-urlencoded", []byte(k+"&name=%C8%E2%E0%ED&fields[charset]=Windows-1251&phone=%2B7+999+123-45-67"))
	f.Add("POST", k, "multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n+79991234567\r\n--X\r\nContent-Disposition: form-data; name=\"fields[goods][0][uuid]\"\r\n\r\nu1\r\n--X--\r\n"))
	f.Add("POST", "", "", []byte(k+"&phone=1&fields[]=x&fields[a][b]=c&client_fields[=y"))
	f.Add("PUT", k, "text/plain", []byte("phone=1"))
	f.Fuzz(func(t *testing.T, method, query, ctype string, body []byte) {
		if method != "GET" && method != "POST" && method != "PUT" && method != "HEAD" {
			method = "POST"
		}
		target := site + "/_leadproxy/api/proxy/1.0/leads/add"
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.URL.RawQuery = query
		if !validHeaderValue(ctype) || !validRawQuery(query) {
			return // Go's client refuses them before the server sees them
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := noCompress.Do(req)
		if err != nil {
			t.Fatalf("%s %q: no answer (did the handler panic?): %v", method, query, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if method == "HEAD" {
			return
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		var ans struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil {
			t.Fatalf("status %d, not Roistat's JSON: %q", resp.StatusCode, raw)
		}
		if (ans.Status == "success") != (resp.StatusCode == 200) || (ans.Status != "success" && ans.Status != "error") {
			t.Fatalf("status %d with %q", resp.StatusCode, raw)
		}
		if ans.Status != "success" {
			return
		}
		input := query + "\x00" + string(body)
		if !strings.Contains(input, roistatFuzzKey) {
			t.Fatalf("lead %s stored without the key", ans.Data.ID)
		}
		resp, err = http.Get(admin + "/leadproxy/leads/" + ans.Data.ID)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var l lead.Lead
		if err := json.Unmarshal(stored, &l); err != nil || l.ID != ans.Data.ID {
			t.Fatalf("stored lead %s: %v: %s", ans.Data.ID, err, stored)
		}
		if len(stored) > 8*len(input)+4096 {
			t.Fatalf("a %d-byte call stored a %d-byte lead", len(input), len(stored))
		}
		if strings.Count(input, roistatFuzzKey) < 2 && bytes.Contains(stored, []byte(roistatFuzzKey)) {
			t.Fatalf("the API key was stored with the lead: %s", stored)
		}
		if l.Mechanism != lead.MechAPI || l.Title == "" {
			t.Fatalf("lead %+v", l)
		}
	})
}

// validHeaderValue mirrors the check of Go's client (httpguts): it refuses
// control characters but tab in a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validRawQuery: what a client can put on the request line.
func validRawQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f || c == '#' || c >= 0x80 {
			return false
		}
	}
	return true
}
