package intercept

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html/charset"
)

// The form audit answers the commonest way leads get lost: the site's form
// changes and a selector silently stops matching. Sampled copies of served
// pages are parsed with goquery off the response path, and for every
// submit, click and selector source the last match is recorded.

// AuditConfig bounds the audit's cost.
type AuditConfig struct {
	// Every is the least time between two samples of the same path. Default 1m.
	Every time.Duration
	// MaxPage is the most bytes of a page copied. Default 512 KiB.
	MaxPage int
	// FlagAfter: a selector that matched nothing on any sampled page for
	// this long (of traffic) is flagged. Default 24h.
	FlagAfter time.Duration
	// OnFlag is called once when a selector becomes flagged, and OnUnflag
	// when a flagged selector matches again. Both run on the audit
	// goroutine or the caller of Report, never with the auditor locked.
	OnFlag   func(a SelectorAudit)
	OnUnflag func(a SelectorAudit)
	// Now is the clock (tests).
	Now func() time.Time
}

// SelectorAudit is what the admin API shows for one selector of a rule.
type SelectorAudit struct {
	Form        string    `json:"form"`
	Role        string    `json:"role"` // submit, click, or the source's role
	Selector    string    `json:"selector"`
	LastMatch   time.Time `json:"last_match,omitzero"`
	LastPath    string    `json:"last_match_path,omitempty"`
	LastCount   int       `json:"last_match_count,omitempty"`
	LastChecked time.Time `json:"last_checked,omitzero"`
	Pages       int       `json:"pages_checked"`
	Flagged     bool      `json:"flagged"`
	// Invalid says why the browser cannot run the selector (CheckSelector):
	// such a selector never matches there, so the audit flags it at once
	// whatever the pages hold. Config loading refuses these; a rule built
	// another way may still carry one.
	Invalid string `json:"invalid,omitempty"`

	matcher   cascadia.Selector
	firstSeen time.Time
	reported  bool
}

// Auditor samples pages and keeps the audit of one set of rules.
type Auditor struct {
	cfg     AuditConfig
	mu      sync.Mutex
	items   []*SelectorAudit
	sampled map[string]time.Time
	work    chan sample
	wg      sync.WaitGroup
	closed  bool
	found   map[string]*Found // form discovery, by path and selector
}

// MaxFound bounds the forms and widgets discovery keeps per site.
const MaxFound = 500

type sample struct {
	path string
	page []byte
	ct   string
}

// NewAuditor starts an auditor for rules. Close stops it.
func NewAuditor(rules []*Rule, cfg AuditConfig) *Auditor {
	if cfg.Every <= 0 {
		cfg.Every = time.Minute
	}
	if cfg.MaxPage <= 0 {
		cfg.MaxPage = 512 << 10
	}
	if cfg.FlagAfter <= 0 {
		cfg.FlagAfter = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Auditor{cfg: cfg, sampled: map[string]time.Time{}, work: make(chan sample, 4)}
	add := func(form, role, sel string) {
		if sel == "" {
			return
		}
		// Judged as the browser would: what it rejects never matches,
		// though cascadia might match it.
		m, err := compileBrowserSelector(sel)
		it := &SelectorAudit{Form: form, Role: role, Selector: sel, matcher: m}
		if err != nil {
			it.Invalid = err.Error()
		}
		a.items = append(a.items, it)
	}
	for _, r := range rules {
		add(r.Title, "submit", r.Submit)
		add(r.Title, "click", r.Click)
		srcs := r.Sources()
		for _, role := range SortedRoles(srcs) {
			if s := srcs[role]; s.Kind == SourceSelector {
				add(r.Title, role, s.Value)
			}
		}
	}
	a.wg.Add(1)
	go a.run()
	return a
}

// SortedRoles returns the roles of a source map in a stable order.
func SortedRoles(m map[string]Source) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Want reports whether a page at path should be sampled now, and if so
// counts it as sampled. Cheap: called on the response path.
func (a *Auditor) Want(path string) bool {
	if a == nil || len(a.items) == 0 {
		return false
	}
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || now.Sub(a.sampled[path]) < a.cfg.Every {
		return false
	}
	if len(a.sampled) > 10_000 {
		clear(a.sampled) // bounded memory on sites with endless paths
	}
	a.sampled[path] = now
	return true
}

// MaxPage is the copy limit for samples.
func (a *Auditor) MaxPage() int { return a.cfg.MaxPage }

// Submit hands a copied page to the audit goroutine; it never blocks.
func (a *Auditor) Submit(path, contentType string, page []byte) {
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return
	}
	select {
	case a.work <- sample{path, page, contentType}:
	default: // busy: drop this sample, the next one will do
	}
}

func (a *Auditor) run() {
	defer a.wg.Done()
	for s := range a.work {
		a.check(s)
	}
}

func (a *Auditor) check(s sample) {
	r, err := charset.NewReader(bytes.NewReader(s.page), s.ct)
	if err != nil {
		return
	}
	doc, err := goquery.NewDocumentFromReader(r)
	if err != nil {
		return
	}
	found := Discover(doc, s.path) // outside the lock: it walks the page
	now := a.cfg.Now()
	a.mu.Lock()
	var unflagged []SelectorAudit
	for _, it := range a.items {
		if it.firstSeen.IsZero() {
			it.firstSeen = now
		}
		it.Pages++
		it.LastChecked = now
		if it.Invalid != "" {
			continue
		}
		if n := doc.FindMatcher(it.matcher).Length(); n > 0 {
			it.LastMatch, it.LastPath, it.LastCount = now, s.path, n
			if it.reported {
				unflagged = append(unflagged, *it)
			}
			it.Flagged, it.reported = false, false
		}
	}
	a.discover(found, s.path, now)
	flagged := a.evaluate(now)
	a.mu.Unlock()
	a.notify(flagged, unflagged)
}

// discover records the forms and widgets of a sampled page. Called with
// a.mu held.
func (a *Auditor) discover(found []Found, path string, now time.Time) {
	if a.found == nil {
		a.found = map[string]*Found{}
	}
	for _, f := range found {
		key := path + "\x00" + f.Selector
		if _, ok := a.found[key]; !ok && len(a.found) >= MaxFound {
			continue
		}
		for _, it := range a.items {
			if (it.Role == "submit" || it.Role == "click") && it.Invalid == "" && covers(it.matcher, it.Role, &f) &&
				!slices.Contains(f.CoveredBy, it.Form) {
				f.CoveredBy = append(f.CoveredBy, it.Form)
			}
		}
		f.LastSeen = now
		f.node = nil // the page is not kept
		a.found[key] = &f
	}
}

// Discovered lists the forms and lead widgets seen on sampled pages, by
// path and selector.
func (a *Auditor) Discovered() []Found {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	out := make([]Found, 0, len(a.found))
	for _, f := range a.found {
		out = append(out, *f)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y Found) int {
		if c := strings.Compare(x.Path, y.Path); c != 0 {
			return c
		}
		return strings.Compare(x.Selector, y.Selector)
	})
	return out
}

// evaluate updates the flags and returns the selectors newly flagged.
// Flagging counts traffic: the selector must have been checked on pages
// for FlagAfter since its last match (or since the audit began) without
// one. Called with a.mu held.
func (a *Auditor) evaluate(now time.Time) (flagged []SelectorAudit) {
	for _, it := range a.items {
		since := it.LastMatch
		if since.IsZero() {
			since = it.firstSeen
		}
		it.Flagged = it.Invalid != "" || it.Pages > 0 && !since.IsZero() && it.LastChecked.Sub(since) >= a.cfg.FlagAfter && now.Sub(since) >= a.cfg.FlagAfter
		if it.Flagged && !it.reported {
			it.reported = true
			flagged = append(flagged, *it)
		}
	}
	return flagged
}

func (a *Auditor) notify(flagged, unflagged []SelectorAudit) {
	if a.cfg.OnFlag != nil {
		for _, f := range flagged {
			a.cfg.OnFlag(f)
		}
	}
	if a.cfg.OnUnflag != nil {
		for _, f := range unflagged {
			a.cfg.OnUnflag(f)
		}
	}
}

// Report returns the audit of every selector, flags updated.
func (a *Auditor) Report() []SelectorAudit {
	if a == nil {
		return nil
	}
	now := a.cfg.Now()
	a.mu.Lock()
	flagged := a.evaluate(now)
	out := make([]SelectorAudit, 0, len(a.items))
	for _, it := range a.items {
		out = append(out, *it)
	}
	a.mu.Unlock()
	a.notify(flagged, nil)
	return out
}

// Close stops the audit goroutine.
func (a *Auditor) Close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	close(a.work)
	a.mu.Unlock()
	a.wg.Wait()
}

// HTMLContentType reports whether a content type is an HTML page.
func HTMLContentType(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "application/xhtml+xml")
}
