package caddymodule

import (
	"testing"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// stillDryRun answers a resend by the current config: the form's own
// dry_run, else its site's; among sites with a form of that title, the
// one that captured for the lead's site; a form gone from the config is
// not held.
func TestStillDryRun(t *testing.T) {
	liveHandlers.Lock()
	saved := liveHandlers.set
	liveHandlers.set = nil
	liveHandlers.Unlock()
	t.Cleanup(func() {
		liveHandlers.Lock()
		liveHandlers.set = saved
		liveHandlers.Unlock()
	})
	off := false
	handler := func(dry bool, site string, forms ...*intercept.Rule) *Handler {
		hd := &Handler{DryRun: dry, Forms: forms, APIKey: "k", sites: new(sitesSeen)}
		if site != "" {
			hd.sawSite(site)
		}
		registerHandler(hd)
		return hd
	}
	trialA := handler(true, "a.example", &intercept.Rule{Title: "Заявка"}, &intercept.Rule{Title: "Live", DryRun: &off})
	liveB := handler(false, "b.example", &intercept.Rule{Title: "Заявка"})
	post := func(site, form string) *lead.Lead {
		return &lead.Lead{Site: site, Form: form, Mechanism: lead.MechPost}
	}
	cases := []struct {
		name string
		l    *lead.Lead
		want bool
	}{
		{"the dry site's form", post("a.example", "Заявка"), true},
		{"the same title on the live site", post("b.example", "Заявка"), false},
		{"a site neither captured for: any dry one holds it", post("c.example", "Заявка"), true},
		{"a form's dry_run off wins over its site's", post("a.example", "Live"), false},
		{"a form gone from the config", post("a.example", "Старая форма"), false},
		{"an API lead of the dry site", &lead.Lead{Site: "a.example", Form: "API", Mechanism: lead.MechAPI}, true},
		{"an auto lead where no site captures every form", &lead.Lead{Site: "a.example", Form: "auto", Mechanism: lead.MechAuto}, false},
	}
	for _, c := range cases {
		if got := stillDryRun(c.l); got != c.want {
			t.Errorf("%s: stillDryRun = %v, want %v", c.name, got, c.want)
		}
	}
	unregisterHandler(trialA)
	if stillDryRun(post("a.example", "Заявка")) {
		t.Error("held after its dry site left the config")
	}
	unregisterHandler(liveB)
}
