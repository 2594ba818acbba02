package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/webhook"
	"github.com/leadproxy/leadproxy/lead"
)

// TestReloadWhileServing: captures run without pause while the config is
// reloaded twice and `caddy validate` runs beside the live server on the
// same storage folder. Every answered POST is a stored lead, none fails,
// and each lead reaches the webhook once.
func TestReloadWhileServing(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := webhook.DecodeSecret(secret)
	var mu sync.Mutex
	received := map[string]int{} // lead id → deliveries
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(key, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), 401)
			return
		}
		mu.Lock()
		received[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer recv.Close()
	up := newUpstream(t)
	t.Setenv("TEST_WEBHOOK_SECRET", secret)
	vars := map[string]string{"UPSTREAM": up.URL,
		"DESTS": "destination hook webhook {\n url " + recv.URL + "\n secret {env.TEST_WEBHOOK_SECRET}\n}"}
	c := startCaddy(t, e2eSite, vars)

	ctx, stop := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var answeredMu sync.Mutex
	answered := map[string]bool{} // phones of the POSTs that got a 200
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := seq.Add(1)
				form := url.Values{"phone": {fmt.Sprintf("+7999%07d", n)}, "name": {"reload"}}
				req, _ := http.NewRequest("POST", c.URL("PORT_SITE")+"/callback", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				// A reload closes idle keep-alive connections; a request
				// racing that close is reset before the server reads it.
				// Browsers resend a request on such a reused connection,
				// whatever its method; Go's client does so only for
				// requests it may replay, which this header marks.
				req.Header.Set("Idempotency-Key", fmt.Sprint(n))
				resp, err := noCompress.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("POST answered %d during reloads", resp.StatusCode)
					continue
				}
				answeredMu.Lock()
				answered[form.Get("phone")] = true
				answeredMu.Unlock()
				sent.Add(1)
			}
		}()
	}
	waitFor(t, "captures before the first reload", 20*time.Second, func() bool { return sent.Load() >= 20 })

	// Two reloads that really change the config (another retry_for, then a
	// new form), so Caddy provisions a new app generation each time.
	reloaded := strings.Replace(e2eSite, "{{DESTS}}", "{{DESTS}}\n\t\tretry_for 48h", 1)
	if err := c.Reload(reloaded); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "captures after the first reload", 20*time.Second, func() bool { return sent.Load() >= 60 })

	// caddy validate beside the live server, on the same storage folder.
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	os.WriteFile(cfg, []byte(c.expand(reloaded)), 0o644)
	val := exec.Command(caddyBin, "validate", "--config", cfg, "--adapter", "caddyfile")
	val.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(c.dir, "data"), "HOME="+c.dir)
	if out, err := val.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate beside the server: %v\n%s", err, tail(string(out), 2000))
	}

	second := strings.Replace(reloaded, `form "Обратный звонок" {`, "form \"Новая форма\" {\n\t\t\tpost /new\n\t\t}\n\t\tform \"Обратный звонок\" {", 1)
	if err := c.Reload(second); err != nil {
		t.Fatal(err)
	}
	base := sent.Load()
	waitFor(t, "captures after the second reload", 20*time.Second, func() bool { return sent.Load() >= base+40 })
	stop()
	wg.Wait()

	// A reload can reset a connection before any handler reads the request
	// (Caddy's listener handover; a plain reverse_proxy site shows the
	// same). Such a POST got no answer, so nothing is promised for it; it
	// must stay rare.
	if failed.Load() > 2 {
		t.Fatalf("%d requests failed during two reloads (first: %v)", failed.Load(), firstErr.Load())
	}
	// Every answered POST is a stored lead (by its unique phone).
	stored := map[string]bool{}
	cursor := ""
	for {
		var list leadList
		c.AdminJSON("/leadproxy/leads?limit=200&cursor="+url.QueryEscape(cursor), &list)
		for _, l := range list.Leads {
			stored["+"+strings.TrimPrefix(l.Phone, "+")] = true
		}
		if list.NextCursor == "" {
			break
		}
		cursor = list.NextCursor
	}
	for p := range answered {
		if !stored[p] {
			t.Fatalf("answered POST with phone %s has no lead", p)
		}
	}
	want := len(stored)
	waitFor(t, "every lead delivered", 90*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= want
	})
	time.Sleep(500 * time.Millisecond) // let a duplicate, if any, arrive
	mu.Lock()
	defer mu.Unlock()
	if len(received) != want {
		t.Fatalf("webhook got %d distinct leads, want %d", len(received), want)
	}
	for id, n := range received {
		if n != 1 {
			t.Errorf("lead %s delivered %d times", id, n)
		}
	}
	// Every stored lead is delivered (checked through the admin API, page by page).
	var pending int
	cursor = ""
	for {
		var list leadList
		c.AdminJSON("/leadproxy/leads?limit=200&cursor="+url.QueryEscape(cursor), &list)
		for _, l := range list.Leads {
			if l.Status() != lead.StatusDelivered {
				pending++
			}
		}
		if list.NextCursor == "" {
			break
		}
		cursor = list.NextCursor
	}
	if pending != 0 {
		t.Fatalf("%d leads not delivered", pending)
	}
	t.Logf("%d captures across two reloads and a validate, all delivered once", want)
}
