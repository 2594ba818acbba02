package caddymodule

import (
	"os"
	"strings"
	"testing"

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
