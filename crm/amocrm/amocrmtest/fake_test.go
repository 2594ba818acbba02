package amocrmtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The fake rejects what amoCRM rejects, with problem+json.
func TestRejects(t *testing.T) {
	f := New()
	defer f.Close()
	cases := []struct {
		path, ctype, auth, body string
		status                  int
		detail                  string
	}{
		{"/api/v4/leads/complex", "application/json", "Bearer wrong", `[{}]`, 401, "Invalid user name or password"},
		{"/api/v4/leads/complex", "text/plain", "", `[{}]`, 400, "Content-Type must be application/json"},
		{"/api/v4/leads/complex", "application/json", "", `{"name":"x"}`, 400, "Request body must be an array"},
		{"/api/v4/leads/complex", "application/json", "", `[]`, 400, "Request must contain from 1 to 50 entities"},
		{"/api/v4/leads/complex", "application/json", "", `[{"price":"123"}]`, 400, "Request validation failed"},
		{"/api/v4/leads/complex", "application/json", "", `[{"custom_fields_values":[{"values":[{"value":"x"}]}]}]`, 400, "Request validation failed"},
		{"/api/v4/leads/complex", "application/json", "", `[{"_embedded":{"contacts":[{},{}]}}]`, 400, "Request validation failed"},
		{"/api/v4/leads/123/notes", "application/json", "", `[{"note_type":"common","params":{"text":"x"}}]`, 404, "Entity not found"},
		{"/api/v4/contacts", "application/json", "", `[{}]`, 404, "Page not found"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", f.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		auth := c.auth
		if auth == "" {
			auth = "Bearer " + f.Token
		}
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Detail string `json:"detail"`
		}
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != c.status || p.Detail != c.detail || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %q %s, want %d %q", c.path, c.body, resp.StatusCode, p.Detail, resp.Header.Get("Content-Type"), c.status, c.detail)
		}
	}
	if len(f.Leads()) != 0 {
		t.Fatal("a rejected lead was recorded")
	}
}
