package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/amocrm/amocrmtest"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/moysklad/moyskladtest"
	"github.com/leadproxy/leadproxy/crm/webhook/webhooktest"
	"github.com/leadproxy/leadproxy/lead"
)

// dryRunSite: a "Trial" form sent to a webhook, amoCRM and MoySklad, and a
// "Live" form sent to the webhook, on one site; {{SITE_DRY}} and
// {{TRIAL_DRY}} are the site's and the trial form's dry_run lines.
const dryRunSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		destination hook webhook {
			{{HOOK}}
		}
		destination amo amocrm {
			{{AMO}}
		}
		destination sklad moysklad {
			{{SKLAD}}
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		{{SITE_DRY}}
		form "Trial" {
			post /trial
			require phone
			send_to hook amo sklad
			{{TRIAL_DRY}}
		}
		form "Live" {
			post /live
			require phone
			send_to hook
		}
	}
	handle /leads* {
		leadproxy_dashboard
	}
	reverse_proxy {{UPSTREAM}}
}
`

// TestDryRunEndToEnd: with dry_run on a form, N posts give N listed leads
// with a preview per destination and no request to any CRM, beside a live
// form on the same site whose lead is sent; a resend in dry run refreshes
// the previews and sends nothing; after a reload turns dry_run off, a
// resend sends the lead, and each CRM receives byte for byte what the
// preview showed (the webhook, amoCRM's two requests, MoySklad's lookup,
// counterparty and order). Then dry_run on the site holds the live form
// too, and a form's `dry_run off` wins over it.
func TestDryRunEndToEnd(t *testing.T) {
	hookFake, amoFake, skladFake := webhooktest.New(), amocrmtest.New(), moyskladtest.New()
	defer hookFake.Close()
	defer amoFake.Close()
	defer skladFake.Close()
	hookLines, hook := crmtest.Proxied(hookFake.Caddyfile())
	amoLines, amo := crmtest.Proxied(amoFake.Caddyfile())
	skladLines, sklad := crmtest.Proxied(skladFake.Caddyfile())
	for _, r := range []*crmtest.Recorder{hook, amo, sklad} {
		defer r.Close()
	}
	indent := func(s string) string { return strings.ReplaceAll(s, "\n", "\n\t\t\t") }
	vars := map[string]string{"HOOK": indent(hookLines), "AMO": indent(amoLines), "SKLAD": indent(skladLines),
		"UPSTREAM": newUpstream(t).URL, "SITE_DRY": "", "TRIAL_DRY": "dry_run"}
	srv := startCaddy(t, dryRunSite, vars)

	post := func(path string, i int) {
		t.Helper()
		form := url.Values{"name": {fmt.Sprintf("Проба %d", i)}, "phone": {fmt.Sprintf("+7999000%04d", i)}, "email": {fmt.Sprintf("trial%d@example.com", i)}}
		resp, err := noCompress.Post(srv.URL("PORT_SITE")+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	leadsOf := func(form string) []lead.Lead {
		var list leadList
		srv.AdminJSON("/leadproxy/leads?limit=100&form="+url.QueryEscape(form), &list)
		return list.Leads
	}
	get := func(id string) lead.Lead {
		var l lead.Lead
		if code := srv.AdminJSON("/leadproxy/leads/"+id, &l); code != 200 {
			t.Fatalf("GET lead %s: %d", id, code)
		}
		return l
	}
	resend := func(id string) (int, lead.Lead) {
		resp, err := http.Post(srv.Admin+"/leadproxy/leads/"+id+"/retry", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, get(id)
	}
	dests := []string{"amo", "hook", "sklad"}

	const n = 3
	for i := range n {
		post("/trial", i)
	}
	post("/live", 100)
	waitFor(t, "the live lead delivered", 30*time.Second, func() bool {
		live := leadsOf("Live")
		return len(live) == 1 && live[0].Status() == lead.StatusDelivered
	})
	// The previews are written once each post has gone on.
	var trial []lead.Lead
	waitFor(t, "the trial leads' previews", 30*time.Second, func() bool {
		trial = leadsOf("Trial")
		for _, l := range trial {
			for _, d := range l.Deliveries {
				if len(d.Preview) == 0 && d.LastError == "" {
					return false
				}
			}
		}
		return len(trial) == n
	})
	for _, l := range trial {
		if l.Status() != lead.StatusDryRun || len(l.Deliveries) != len(dests) {
			t.Fatalf("trial lead %s: %s, %+v", l.ID, l.Status(), l.Deliveries)
		}
		for _, d := range l.Deliveries {
			if d.Status != lead.StatusDryRun || len(d.Preview) == 0 || d.LastError != "" || d.Attempts != 0 {
				t.Errorf("lead %s to %s: %+v", l.ID, d.Destination, d)
			}
		}
		if p := l.Delivery("sklad").Preview; len(p) != 3 || p[0].Method != "GET" || !strings.Contains(p[2].URL, "/entity/customerorder") {
			t.Errorf("MoySklad preview: %+v", p)
		}
		if p := l.Delivery("amo").Preview; len(p) != 2 || p[0].Header["Authorization"][0] != "Bearer "+crm.Masked ||
			strings.Contains(fmt.Sprint(p), amocrmtest.Token) {
			t.Errorf("amoCRM preview not masked: %+v", p)
		}
	}
	if a, s, h := len(amo.Received()), len(sklad.Received()), len(hook.Received()); a != 0 || s != 0 || h != 1 {
		t.Fatalf("CRM requests: amo %d, sklad %d, hook %d; want 0, 0 and the live lead's 1", a, s, h)
	}
	var stats struct {
		ByStatus map[string]int `json:"by_status"`
		Queue    int            `json:"queue_depth"`
	}
	srv.AdminJSON("/leadproxy/stats", &stats)
	if stats.ByStatus[lead.StatusDryRun] != n || stats.ByStatus[lead.StatusDelivered] != 1 || stats.Queue != 0 {
		t.Errorf("stats %+v", stats)
	}
	if m := adminText(t, srv, "/metrics"); !strings.Contains(m, `leadproxy_leads_dry_run_total{form="Trial"} 3`) ||
		strings.Contains(m, `leadproxy_leads_captured_total{form="Trial"`) {
		t.Errorf("metrics: dry-run leads not counted apart:\n%s", grepLines(m, "leadproxy_leads_"))
	}

	// A reload that changes amoCRM's pipeline, still in dry run: a resend
	// makes the previews again with it, and sends nothing.
	first := trial[len(trial)-1] // the oldest
	if strings.Contains(first.Delivery("amo").Preview[0].Body, `"pipeline_id"`) {
		t.Fatalf("amoCRM preview has a pipeline before one is set: %s", first.Delivery("amo").Preview[0].Body)
	}
	vars["AMO"] = indent(amoLines + "\npipeline_id 4242")
	if err := srv.Reload(dryRunSite); err != nil {
		t.Fatal(err)
	}
	code, again := resend(first.ID)
	if code != http.StatusOK || again.Status() != lead.StatusDryRun {
		t.Fatalf("resend in dry run: %d, %s", code, again.Status())
	}
	if body := again.Delivery("amo").Preview[0].Body; !strings.Contains(body, `"pipeline_id":4242`) {
		t.Errorf("the resend in dry run did not make the preview again: %s", body)
	}
	if a, s, h := len(amo.Received()), len(sklad.Received()), len(hook.Received()); a != 0 || s != 0 || h != 1 {
		t.Fatalf("a resend in dry run sent: amo %d, sklad %d, hook %d", a, s, h)
	}
	// The dashboard shows the previews, and its Retry in dry run sends nothing either.
	dash := &dashClient{t: t, base: srv.URL("PORT_SITE") + "/leads", jar: map[string]*http.Cookie{}}
	html := dash.page("?lead="+first.ID, 200)
	if !strings.Contains(html, `class="badge st-dry_run"`) || !strings.Contains(html, `<section class="preview" data-destination="amo">`) ||
		!strings.Contains(html, "/api/v4/leads/complex") || strings.Contains(html, amocrmtest.Token) {
		t.Errorf("dashboard lead page does not show the dry run (or shows the token):\n%s", html)
	}
	csrf := dashCSRFRE.FindStringSubmatch(html)
	if csrf == nil {
		t.Fatal("no csrf token on the lead page")
	}
	second := trial[0]
	resp := dash.do("POST", "?lead="+second.ID, url.Values{"csrf": {csrf[1]}, "action": {"retry"}, "lead": {second.ID}}, nil)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "?done=preview&lead="+second.ID {
		t.Fatalf("dashboard retry in dry run: %d, Location %q", resp.StatusCode, loc)
	}
	if html := dash.page("?done=preview&lead="+second.ID, 200); !strings.Contains(html, "Still in dry run: the previews were made again and nothing was sent.") {
		t.Error("dashboard retry in dry run: no flash saying nothing was sent")
	}
	if a, s, h := len(amo.Received()), len(sklad.Received()), len(hook.Received()); a != 0 || s != 0 || h != 1 {
		t.Fatalf("the dashboard's retry in dry run sent: amo %d, sklad %d, hook %d", a, s, h)
	}

	// dry_run off by a reload; the resend sends it, as previewed.
	vars["TRIAL_DRY"] = ""
	if err := srv.Reload(dryRunSite); err != nil {
		t.Fatal(err)
	}
	if code, _ := resend(first.ID); code != http.StatusAccepted {
		t.Fatalf("resend after dry_run off: %d", code)
	}
	waitFor(t, "the released lead delivered", 30*time.Second, func() bool { l := get(first.ID); return l.Status() == lead.StatusDelivered })
	sent := get(first.ID)
	crmtest.PreviewMatches(t, sent.Delivery("hook").Preview, hook.Received()[1:])
	crmtest.PreviewMatches(t, sent.Delivery("amo").Preview, amo.Received())
	crmtest.PreviewMatches(t, sent.Delivery("sklad").Preview, sklad.Received(),
		"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
	if len(amoFake.Leads()) != 1 || len(skladFake.Orders()) != 1 {
		t.Errorf("the CRMs hold %d amoCRM leads and %d MoySklad orders, want 1 each", len(amoFake.Leads()), len(skladFake.Orders()))
	}
	// The other trial leads stay held: a reload releases nothing by itself.
	for _, l := range trial[:len(trial)-1] {
		if got := get(l.ID); got.Status() != lead.StatusDryRun {
			t.Errorf("lead %s: %s after the reload, want still dry_run until resent", l.ID, got.Status())
		}
	}

	// dry_run on the site holds the live form too; the trial form's
	// `dry_run off` wins.
	vars["SITE_DRY"], vars["TRIAL_DRY"] = "dry_run", "dry_run off"
	if err := srv.Reload(dryRunSite); err != nil {
		t.Fatal(err)
	}
	hooked := len(hook.Received())
	post("/live", 101)
	post("/trial", 102)
	waitFor(t, "the trial form's lead delivered", 30*time.Second, func() bool {
		l := leadsOf("Trial")
		return len(l) == n+1 && l[0].Status() == lead.StatusDelivered
	})
	live := leadsOf("Live")
	if len(live) != 2 || live[0].Status() != lead.StatusDryRun {
		t.Fatalf("live form under the site's dry_run: %d leads, newest %s", len(live), live[0].Status())
	}
	if got := len(hook.Received()); got != hooked+1 {
		t.Errorf("hook got %d requests after the site's dry_run, want %d (the trial form's only)", got, hooked+1)
	}
}

// adminText GETs an admin path as text.
func adminText(t *testing.T, srv *caddyProc, path string) string {
	t.Helper()
	resp, err := http.Get(srv.Admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}
