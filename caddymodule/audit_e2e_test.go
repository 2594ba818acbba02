package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuditFlagsStaleSelector: with a short flag_after, a selector that
// matches nothing on the pages served is flagged by the traffic alone — in
// the admin API, in the metric and in one log line — and the one that
// matches is not. Then the site changes so that it matches: the flag and
// the metric clear.
func TestAuditFlagsStaleSelector(t *testing.T) {
	var fixed atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		extra := ""
		if fixed.Load() {
			extra = `<button class="callback">Перезвоните</button>`
		}
		io.WriteString(w, `<!DOCTYPE html><html><head><title>t</title></head><body><form id="order"><input name="phone"></form>`+extra+`</body></html>`)
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
		audit {
			every      50ms
			flag_after 1s
			max_page   64KB
		}
		form "Заказ" {
			submit "#order"
		}
		form "Звонок" {
			click ".callback"
		}
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.URL})

	get := func() {
		resp, err := noCompress.Do(navigation(t, c.URL("PORT_SITE")+"/", ""))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	flagged := func() map[string]bool {
		var audit formAudit
		c.AdminJSON("/leadproxy/forms", &audit)
		m := map[string]bool{}
		for _, f := range audit.Forms {
			m[f.Form] = f.Flagged
		}
		return m
	}
	metric := func() string {
		resp, err := http.Get(c.Admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "leadproxy_form_selector_flagged{") && strings.Contains(line, `form="Звонок"`) {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		return ""
	}

	// Traffic for longer than flag_after; nobody reads the admin API, so
	// the metric and the log must come from the sampling itself.
	waitFor(t, "the metric to flag the click selector", 30*time.Second, func() bool {
		get()
		time.Sleep(60 * time.Millisecond)
		return metric() == "1"
	})
	if f := flagged(); !f["Звонок"] || f["Заказ"] {
		t.Fatalf("flags: %v, want only Звонок", f)
	}
	const warn = "form selector matched nothing on sampled pages"
	for i := 0; i < 5; i++ {
		get()
		time.Sleep(60 * time.Millisecond)
	}
	if n := strings.Count(c.Logs(t), warn); n != 1 {
		t.Fatalf("warning logged %d times, want once", n)
	}

	fixed.Store(true)
	waitFor(t, "the flag to clear once the button is back", 30*time.Second, func() bool {
		get()
		time.Sleep(60 * time.Millisecond)
		return metric() == "0" && !flagged()["Звонок"]
	})
}
