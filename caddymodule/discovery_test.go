package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/leadproxy/leadproxy/intercept"
)

// The rules form discovery proposes paste into a site block as they are:
// the Caddyfile adapts and provisions (every selector checked as the
// browser reads it, every source known).
func TestDiscoveredRulesValidate(t *testing.T) {
	raw, err := os.ReadFile("../intercept/testdata/discover/page.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	found := intercept.Discover(doc, "/")
	if len(found) < 5 {
		t.Fatalf("found %d forms and widgets", len(found))
	}
	var rules []string
	for _, f := range found {
		rules = append(rules, "\t\t"+strings.ReplaceAll(f.Rule, "\n", "\n\t\t"))
	}
	validates(t, "{\n\tleadproxy\n}\n:0 {\n\tleadproxy {\n"+strings.Join(rules, "\n")+"\n\t}\n\trespond ok\n}\n")
}

// TestDiscoveryAdminAPI: a page served through Caddy is sampled, and
// GET /leadproxy/forms?all=1 lists its forms and widgets, the one a rule
// covers named, each with a rule that pastes into a valid Caddyfile.
func TestDiscoveryAdminAPI(t *testing.T) {
	page, err := os.ReadFile("../intercept/testdata/discover/page.html")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	}))
	defer up.Close()
	c := startCaddy(t, `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		form "Звонок" {
			submit "#callback"
		}
	}
	handle /leads* {
		leadproxy_dashboard
	}
	handle {
		reverse_proxy {{UPSTREAM}}
	}
}
`, map[string]string{"UPSTREAM": up.URL})
	resp, err := noCompress.Do(navigation(t, c.URL("PORT_SITE")+"/landing", ""))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var got struct {
		Discovered []intercept.Found `json:"discovered"`
	}
	waitFor(t, "discovered forms", 30*time.Second, func() bool {
		got.Discovered = nil
		c.AdminJSON("/leadproxy/forms?all=1", &got)
		return len(got.Discovered) > 0
	})
	covered := map[string]string{}
	var rules []string
	for _, f := range got.Discovered {
		if !strings.HasSuffix(f.Path, "/landing") { // host and path, as the audit keys pages
			t.Errorf("path %q", f.Path)
		}
		covered[f.Selector] = strings.Join(f.CoveredBy, ",")
		rules = append(rules, "\t\t"+strings.ReplaceAll(f.Rule, "\n", "\n\t\t"))
	}
	if len(got.Discovered) != 6 || covered["#callback"] != "Звонок" || covered["button.quiz-send"] != "" {
		t.Errorf("discovered %d, covered %v", len(got.Discovered), covered)
	}
	var plain struct {
		Discovered []intercept.Found `json:"discovered"`
	}
	c.AdminJSON("/leadproxy/forms", &plain)
	if plain.Discovered != nil {
		t.Error("without all=1 the discovery is listed")
	}
	validates(t, "{\n\tleadproxy\n}\n:0 {\n\tleadproxy {\n"+strings.Join(rules, "\n")+"\n\t}\n\trespond ok\n}\n")

	// The dashboard's forms page shows the same, the rules escaped.
	resp, err = noCompress.Get(c.URL("PORT_SITE") + "/leads?view=forms")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	html := string(body)
	for _, want := range []string{"<h1>Forms on the site</h1>", "covered by “Звонок”", "<strong>not covered</strong>", "in a modal",
		"submit &#34;#callback&#34;", "click &#34;button.quiz-send&#34;", "submit `form[action=&#34;/contact&#34;]`"} {
		if !strings.Contains(html, want) {
			t.Errorf("forms page (%d) lacks %q:\n%s", resp.StatusCode, want, html)
		}
	}
}
