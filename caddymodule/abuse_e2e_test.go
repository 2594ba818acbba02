package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/leadproxy/leadproxy/intercept"
)

// proxiedSite trusts loopback as a proxy that sets X-Forwarded-For, as a
// site behind Cloudflare or a load balancer does.
const proxiedSite = `{
	admin {{ADMIN}}
	servers {
		trusted_proxies static 127.0.0.1/8
		client_ip_headers X-Forwarded-For
	}
	leadproxy {
		storage {{STORAGE}}
		{{GLOBAL}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key abuse-api-key-7c1e
		{{OPTS}}
		form "Заявка" {
			post    /callback
			require phone
		}
		form "Форма" {
			submit "#f"
			phone  field phone
		}
	}
	reverse_proxy {{UPSTREAM}}
}
`

func proxiedVars(upstream string, kv ...string) map[string]string {
	return hardVars(upstream, append([]string{"GLOBAL", ""}, kv...)...)
}

// abuseReport is a collect report of the form "Форма"; honey non-empty
// makes it a honeypot report, answered 204 and never stored.
func abuseReport(site, sid, phone, honey string) []byte {
	b, _ := json.Marshal(map[string]any{"v": 1, "r": intercept.RuleID("Форма"), "s": sid, "hp": honey,
		"page": site + "/", "f": map[string]string{"phone": phone}})
	return b
}

// Behind a trusted proxy every visitor has their own allowance: the limit
// follows Caddy's client_ip (X-Forwarded-For), not the proxy's address,
// and so does the address stored on the lead.
func TestAbuseLimitsFollowClientIP(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	site := c.URL("PORT_SITE")
	collect := site + "/_leadproxy/collect"
	send := func(xff, sid, phone string) int {
		code, _ := hardPost(t, collect, "text/plain", abuseReport(site, sid, phone, ""), map[string]string{"Origin": site, "X-Forwarded-For": xff})
		return code
	}
	accepted := 0
	for i := range collectBurst + 5 {
		code := send("198.51.100.10", fmt.Sprintf("sid-visitor-a-%03d", i), fmt.Sprintf("+7999200%04d", i))
		if code == 429 {
			break
		}
		if code != 204 {
			t.Fatalf("visitor A report %d: %d", i, code)
		}
		accepted++
	}
	if accepted != collectBurst {
		t.Fatalf("visitor A: %d reports before the first 429, want the burst of %d", accepted, collectBurst)
	}
	if code := send("203.0.113.20", "sid-visitor-b-001", "+79993000001"); code != 204 {
		t.Fatalf("visitor B (another X-Forwarded-For) refused with %d after visitor A's burst: they share a bucket", code)
	}
	l := hardLeadByPhone(t, c, "+79993000001")
	if l == nil || l.Visit == nil || l.Visit.IP != "203.0.113.20" {
		t.Fatalf("visitor B's lead: %+v, want visit.ip 203.0.113.20 from X-Forwarded-For", l)
	}
}

// The issue-16 flood: 100,000 reports from distinct addresses (50,000 of
// one IPv6 /64, 50,000 of distinct IPv4 /24s), then a real visitor, whose
// report is accepted and stored. The flood's reports are honeypot reports
// so that what is measured is the limiter, not the store.
func TestAbuseFloodOfAddressesLetsVisitorsIn(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	site := c.URL("PORT_SITE")
	collect := site + "/_leadproxy/collect"
	const flood = 100_000
	var next, limited, passed atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= flood {
					return
				}
				// Even: one /64; odd: 10.a.b.1, a new /24 each.
				addr := fmt.Sprintf("2001:db8:1:2:%x:%x::1", i>>16, i&0xffff)
				if h := i / 2; i%2 == 1 {
					addr = fmt.Sprintf("10.%d.%d.1", h>>8, h&0xff)
				}
				req, _ := http.NewRequest("POST", collect, strings.NewReader(string(abuseReport(site, fmt.Sprintf("sid-flood-%07d", i), "+79990000000", "bot"))))
				req.Header.Set("Content-Type", "text/plain")
				req.Header.Set("Origin", site)
				req.Header.Set("X-Forwarded-For", addr)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 429:
					limited.Add(1)
				case 204:
					passed.Add(1)
				default:
					t.Errorf("flood report %d: %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("flood of %d addresses: %d passed the limiter, %d limited", flood, passed.Load(), limited.Load())
	if limited.Load() == 0 {
		t.Fatal("50,000 addresses of one /64 were never limited: the network bucket does nothing")
	}
	code, _ := hardPost(t, collect, "text/plain", abuseReport(site, "sid-real-visitor-1", "+79994000001", ""),
		map[string]string{"Origin": site, "X-Forwarded-For": "198.51.100.77"})
	if code != 204 {
		t.Fatalf("the real visitor's report after the flood: %d, want 204", code)
	}
	if hardLeadByPhone(t, c, "+79994000001") == nil {
		t.Fatal("the real visitor's lead is not stored")
	}
}
