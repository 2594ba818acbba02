package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/report"
)

const visitsSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		timezone Europe/Moscow
		visits {
			retention 30d
			max 1000
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key test-key
		form "Заявка {utmCampaign}" {
			post    /order
			require phone
			comment static "Пришёл из {source}: {landingPage} на {domain}"
			crm     utm static "{utmSource}/{utmMedium} {city}"
		}
	}
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_OFF}} {
	leadproxy {
		visits off
	}
	reverse_proxy {{UPSTREAM}}
}
`

const browserUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// navigate GETs a page as a browser's navigation would and returns the
// visit cookie the answer set ("" for none).
func navigate(t *testing.T, u, ua, cookie, referrer string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("User-Agent", ua)
	if cookie != "" {
		req.Header.Set("Cookie", "roistat_visit="+cookie)
	}
	if referrer != "" {
		req.Header.Set("Referer", referrer)
	}
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "roistat_visit" {
			return c.Value
		}
	}
	return ""
}

func getReport(t *testing.T, c *caddyProc, by string) map[string]report.Row {
	t.Helper()
	var rep report.Report
	if st := c.AdminJSON("/leadproxy/report?by="+by, &rep); st != 200 {
		t.Fatalf("report by=%s: %d", by, st)
	}
	rows := map[string]report.Row{}
	for _, r := range rep.Rows {
		rows[r.Key] = r
	}
	return rows
}

func visitsOf(r report.Row) int {
	if r.Visits == nil {
		return -1
	}
	return *r.Visits
}

// TestVisitsLeadsReportExport: visits recorded by the proxy (no script
// involved), a form post and a Roistat API call with placeholders joined
// to them, the report's counts, the CSV read back by Python, and search.
func TestVisitsLeadsReportExport(t *testing.T) {
	up := newUpstream(t)
	c := startCaddy(t, visitsSite, map[string]string{"UPSTREAM": up.URL})
	site := c.URL("PORT_SITE")

	// An ad click: a first navigation sets the cookie; later ones do not.
	ad := navigate(t, site+"/landing?utm_source=yandex&utm_medium=cpc&utm_campaign=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0&yclid=777", browserUA, "", "https://yandex.ru/")
	if ad == "" {
		t.Fatal("no roistat_visit cookie on a first page view")
	}
	if again := navigate(t, site+"/second", browserUA, ad, site+"/landing"); again != "" {
		t.Errorf("a known visit got a new cookie %q", again)
	}
	// Organic search, a bot, and a browser that never returns its cookie.
	organic := navigate(t, site+"/blog", browserUA, "", "https://www.google.com/")
	navigate(t, site+"/blog", browserUA, organic, "")
	if bot := navigate(t, site+"/", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "", ""); bot != "" {
		t.Errorf("a crawler got a visit cookie")
	}
	if navigate(t, site+"/", browserUA, "", "") == "" {
		t.Error("no cookie for a direct visit")
	}

	// A form post from the ad visit (a server-side rule: no script).
	form := url.Values{"phone": {"8 912 000-00-01"}, "name": {"Пётр Щукин"}}
	req, _ := http.NewRequest("POST", site+"/order", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "roistat_visit="+ad)
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The site's backend calls the Roistat-compatible API as Roistat's PHP
	// sample does, with the visitor's cookie as roistat.
	apiURL := site + "/_leadproxy/api/proxy/1.0/leads/add"
	callRoistatPHP(t, apiURL, map[string]string{"key": "test-key", "roistat": organic,
		"title": "Звонок {utmSource} {source} {visit}", "comment": "с {landingPage} ({referrer}) {city}",
		"name": "Анна", "phone": "+7 913 000 00 02", "fields[source_name]": "{source}|{domain}"})

	var list leadList
	c.AdminJSON("/leadproxy/leads", &list)
	if len(list.Leads) != 2 {
		t.Fatalf("%d leads, want 2", len(list.Leads))
	}
	byForm := map[string]lead.Lead{}
	for _, l := range list.Leads {
		byForm[l.Form] = l
	}
	fl := byForm["Заявка {utmCampaign}"]
	if fl.Visit == nil || fl.Visit.ID != ad || fl.Visit.Source != "ads" || fl.Visit.UTM["campaign"] != "весна" || fl.Visit.Clicks["yclid"] != "777" {
		t.Fatalf("form lead's visit: %+v", fl.Visit)
	}
	if fl.Title != "Заявка весна" || fl.Comment != "Пришёл из ads: "+site+"/landing?utm_source=yandex&utm_medium=cpc&utm_campaign=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0&yclid=777 на 127.0.0.1" ||
		fl.CRM["utm"] != "yandex/cpc {city}" || fl.Phone != "+79120000001" {
		t.Errorf("form lead placeholders: title %q comment %q crm %v phone %q", fl.Title, fl.Comment, fl.CRM, fl.Phone)
	}
	al := byForm["api"]
	if al.Visit == nil || al.Visit.ID != organic || al.Visit.Source != "organic" || al.Visit.Referrer != "https://www.google.com/" {
		t.Fatalf("API lead's visit: %+v", al.Visit)
	}
	if al.Title != "Звонок  organic "+organic || al.Comment != "с "+site+"/blog (https://www.google.com/) {city}" || al.CRM["source_name"] != "organic|127.0.0.1" {
		t.Errorf("API lead placeholders: title %q comment %q crm %v", al.Title, al.Comment, al.CRM)
	}

	// The report: two recorded visits (the bot's and the one whose cookie
	// never came back are not), a lead under ads and one under organic.
	src := getReport(t, c, "source")
	if visitsOf(src["ads"]) != 1 || src["ads"].Leads != 1 || visitsOf(src["organic"]) != 1 || src["organic"].Leads != 1 ||
		src["ads"].Conversion == nil || *src["ads"].Conversion != 1 {
		t.Errorf("report by source: %+v", src)
	}
	if _, ok := src["direct"]; ok {
		t.Errorf("the visit whose cookie never came back was counted: %+v", src["direct"])
	}
	if camp := getReport(t, c, "utm_campaign"); camp["весна"].Leads != 1 || visitsOf(camp["весна"]) != 1 {
		t.Errorf("report by campaign: %+v", camp)
	}
	if forms := getReport(t, c, "form"); forms["api"].Leads != 1 || forms["api"].Visits != nil {
		t.Errorf("report by form: %+v", forms)
	}
	resp, err = http.Get(c.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`leadproxy_visits_total{result="recorded"} 2`, `leadproxy_visits_total{result="dropped"} 0`, "leadproxy_visits_stored 2"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if st := c.AdminJSON("/leadproxy/report?by=city", nil); st != 400 {
		t.Errorf("by=city: %d, want 400", st)
	}

	// visits off: no cookie, no visit; a reload keeps the visit store.
	if off := navigate(t, c.URL("PORT_OFF")+"/?utm_source=x", browserUA, "", ""); off != "" {
		t.Errorf("visits off set a cookie %q", off)
	}
	if err := c.Reload(visitsSite); err != nil {
		t.Fatal(err)
	}
	email := navigate(t, site+"/news?utm_source=digest&utm_medium=email", browserUA, "", "")
	navigate(t, site+"/news", browserUA, email, "")
	if src := getReport(t, c, "source"); visitsOf(src["email"]) != 1 || visitsOf(src["ads"]) != 1 {
		t.Errorf("report after a reload: %+v", src)
	}

	// Search finds the form lead's phone however it is typed.
	for _, q := range []string{"8 912 000-00-01", "+7 (912) 000 00 01", "9120000001", "912 000"} {
		found := adminSearch(t, c, fmt.Sprintf(`{"q": %q}`, q))
		if len(found.Leads) != 1 || found.Leads[0].Phone != "+79120000001" {
			t.Errorf("search %q: %d leads", q, len(found.Leads))
		}
	}
	bySource := adminSearch(t, c, `{"q": "organic"}`)
	if len(bySource.Leads) != 1 || bySource.Leads[0].Form != "api" {
		t.Errorf("search by source: %d leads", len(bySource.Leads))
	}
	resp, err = http.Get(c.Admin + "/leadproxy/leads?status=sent")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "want one of pending, retrying, delivered, failed, skipped") {
		t.Errorf("status=sent: %d %s", resp.StatusCode, body)
	}

	// The export, read by Python's csv module.
	resp, err = http.Get(c.Admin + "/leadproxy/leads.csv")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(raw), "\uFEFFid,created_at,") || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("leads.csv: %d %s %.80q", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	rows := readCSVWithPython(t, raw)
	if len(rows) != 2 {
		t.Fatalf("python read %d rows, want 2: %v", len(rows), rows)
	}
	names := map[string]map[string]string{}
	for _, r := range rows {
		names[r["name"]] = r
	}
	if r := names["Пётр Щукин"]; r["utm_campaign"] != "весна" || r["source"] != "ads" || r["phone"] != "+79120000001" || r["title"] != "Заявка весна" || r["visit_id"] != ad {
		t.Errorf("form lead's CSV row: %v", r)
	}
	if r := names["Анна"]; r["source"] != "organic" || r["status"] != "skipped" {
		t.Errorf("API lead's CSV row: %v", r)
	}
}

// callRoistatPHP sends an API call the way Roistat's PHP sample does:
// file_get_contents($url.'?'.http_build_query($data)). With php installed
// it is PHP itself; without, the same query built as http_build_query
// builds it (RFC 1738: spaces as +, brackets escaped).
func callRoistatPHP(t *testing.T, apiURL string, params map[string]string) {
	t.Helper()
	if php, err := exec.LookPath("php"); err == nil {
		var b strings.Builder
		b.WriteString("<?php\n$data = array(\n")
		for k, v := range params {
			fmt.Fprintf(&b, "  %s => %s,\n", phpString(k), phpString(v))
		}
		// Nested keys as PHP writes them: 'fields' => array('x' => ...).
		fmt.Fprintf(&b, ");\n$fields = array();\nforeach ($data as $k => $v) { if (preg_match('/^fields\\[(.+)\\]$/', $k, $m)) { $fields[$m[1]] = $v; unset($data[$k]); } }\n$data['fields'] = $fields;\n")
		fmt.Fprintf(&b, "echo file_get_contents(%s . '?' . http_build_query($data));\n", phpString(apiURL))
		script := filepath.Join(t.TempDir(), "roistat.php")
		os.WriteFile(script, []byte(b.String()), 0o644)
		out, err := exec.Command(php, script).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"status":"success"`) {
			t.Fatalf("php: %v: %s", err, out)
		}
		return
	}
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	resp, err := http.Get(apiURL + "?" + q.Encode()) // url.Values.Encode is http_build_query's RFC 1738 form
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"success"`) {
		t.Fatalf("API: %d %s", resp.StatusCode, b)
	}
}

func phpString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// readCSVWithPython parses an export with Python's csv module, as a user's
// script would (utf-8-sig drops the BOM), and returns its rows as dicts.
func readCSVWithPython(t *testing.T, raw []byte) []map[string]string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	f := filepath.Join(t.TempDir(), "leads.csv")
	os.WriteFile(f, raw, 0o644)
	prog := `import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    print(json.dumps(list(csv.DictReader(f)), ensure_ascii=False))`
	out, err := exec.Command(py, "-c", prog, f).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var rows []map[string]string
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("python's output: %v: %s", err, out)
	}
	return rows
}
