package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// clientAddr is the visitor's address as Caddy computed it: the client_ip
// variable, which follows the server's trusted_proxies and
// client_ip_headers (X-Forwarded-For from a trusted proxy), else the
// connection's address. Every limit and every stored address uses it.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if a := intercept.ParseClientAddr(r.RemoteAddr); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}

// clientNetAddr is clientAddr parsed for the limiters (the zero Addr, one
// shared client, when it does not parse).
func clientNetAddr(r *http.Request) netip.Addr {
	return intercept.ParseClientAddr(clientAddr(r))
}

// Defaults of the capture budgets (App.LeadsPerClient, LeadsPerSite, MaxStore).
const (
	DefaultLeadsPerClient = 10      // leads a minute (and at once) from one client address
	DefaultLeadsPerSite   = 300     // leads a minute (and at once) for one site
	DefaultMaxStore       = 1 << 30 // 1 GiB of store files
	leadsPerNetworkFactor = 6       // a network (IPv4 /24, IPv6 /64) may leave 6 clients' worth
	storeRescan           = time.Second
	apiKeyFreeGuesses     = 5                // wrong Roistat API keys from one address before the delay
	apiKeyMaxWait         = 15 * time.Minute // the longest delay between two guesses
)

// errBudget is a capture refused by a budget; reason is the metric label.
type errBudget struct{ reason string }

func (e *errBudget) Error() string { return "capture budget: " + e.reason }

// captureBudget bounds what visitors can make the store keep: leads per
// client address (and per its network), per site, and the store's size.
// One per app; every capture path (form post, collect, Roistat API)
// passes through admit before the store.
type captureBudget struct {
	clients  *intercept.Limiter
	sites    *intercept.KeyLimiter
	maxStore int64
	usage    func() int64 // the store's bytes on disk; nil: no store yet
	logger   *zap.Logger

	mu        sync.Mutex
	scanned   int64     // usage() at scannedAt
	added     int64     // estimated bytes stored since
	scannedAt time.Time // zero: never
	warned    map[string]time.Time
}

func newCaptureBudget(perClient, perSite int, maxStore int64, logger *zap.Logger) *captureBudget {
	c := float64(perClient)
	return &captureBudget{
		clients: intercept.NewLimiter(intercept.Rate{Burst: c, PerMinute: c},
			intercept.Rate{Burst: c * leadsPerNetworkFactor, PerMinute: c * leadsPerNetworkFactor}, 0),
		sites:    intercept.NewKeyLimiter(intercept.Rate{Burst: float64(perSite), PerMinute: float64(perSite)}, 0),
		maxStore: maxStore,
		logger:   logger,
		warned:   map[string]time.Time{},
	}
}

// admit answers nil when l may be stored, else an *errBudget; a refusal is
// counted and logged (once a minute per reason, without the lead's values).
func (b *captureBudget) admit(site string, client netip.Addr, now time.Time) error {
	if b == nil {
		return nil
	}
	reason := ""
	switch {
	case b.storeFull(now):
		reason = "store_full"
	case !b.clients.Allow(client, now):
		reason = "budget_client"
	case !b.sites.Allow(site, now):
		reason = "budget_site"
	default:
		return nil
	}
	countCaptureFailure(reason)
	b.mu.Lock()
	warn := now.Sub(b.warned[reason]) >= time.Minute
	if warn {
		b.warned[reason] = now
	}
	b.mu.Unlock()
	if warn {
		msg := map[string]string{
			"store_full":    "lead store over max_store: new captures refused (site still served); free space or raise max_store",
			"budget_client": "a client address is over leads_per_client: its captures refused for now",
			"budget_site":   "a site is over leads_per_site: its captures refused for now",
		}[reason]
		b.logger.Warn(msg, zap.String("site", site), zap.Int64("max_store", b.maxStore), zap.String("reason", reason))
	}
	return &errBudget{reason}
}

// storeFull tells whether the store is at max_store: the size measured at
// most storeRescan ago plus what was stored since.
func (b *captureBudget) storeFull(now time.Time) bool {
	if b.maxStore <= 0 || b.usage == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.scannedAt.IsZero() || now.Sub(b.scannedAt) >= storeRescan {
		b.scanned, b.added, b.scannedAt = b.usage(), 0, now
	}
	return b.scanned+b.added >= b.maxStore
}

// stored adds a just-stored lead's estimated size to the store's.
func (b *captureBudget) stored(l *lead.Lead) {
	if b == nil || b.maxStore <= 0 {
		return
	}
	n, _ := json.Marshal(l)
	b.mu.Lock()
	b.added += int64(len(n))
	b.mu.Unlock()
}

// orDefault is v, or def when v is 0 (unset); a negative v (off) is kept.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// scrubLead cleans what every capture path stores: NUL bytes out of every
// value (the Roistat API's values do not pass through intercept.Fields),
// and a phone libphonenumber rejected out of the phone field, which is for
// numbers a CRM can dial; the typed text stays in the fields.
func scrubLead(l *lead.Lead) {
	for _, p := range []*string{&l.Title, &l.Form, &l.Name, &l.Phone, &l.Email, &l.Comment} {
		*p = noNUL(*p)
	}
	for _, m := range []map[string]string{l.Extra, l.CRM, l.Fields} {
		for k, v := range m {
			if nk, nv := noNUL(k), noNUL(v); nk != k || nv != v {
				delete(m, k)
				m[nk] = nv
			}
		}
	}
	if l.Phone != "" && !lead.IsPhone(l.Phone) {
		typed := false
		for _, v := range l.Fields {
			typed = typed || v == l.Phone
		}
		if !typed {
			if l.Fields == nil {
				l.Fields = map[string]string{}
			}
			l.Fields["phone (not a number)"] = l.Phone
		}
		l.Phone = ""
	}
}

func noNUL(s string) string { return strings.ReplaceAll(s, "\x00", "") }
