package intercept

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// auditClock is a settable clock for the auditor.
type auditClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *auditClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *auditClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// sampleAndWait submits a page and waits until the audit goroutine has
// checked it (pages_checked grows).
func sampleAndWait(t *testing.T, a *Auditor, path, page string) {
	t.Helper()
	before := a.Report()[0].Pages
	if !a.Want(path) {
		t.Fatalf("Want(%q) = false", path)
	}
	a.Submit(path, "text/html; charset=utf-8", []byte(page))
	deadline := time.Now().Add(10 * time.Second)
	for a.Report()[0].Pages == before {
		if time.Now().After(deadline) {
			t.Fatal("sample not checked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuditMatchFlagUnflag(t *testing.T) {
	clock := &auditClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var flags, unflags []string
	rules := []*Rule{
		{Title: "A", Submit: "#f"},
		{Title: "B", Click: ".call", Phone: &Source{Kind: SourceSelector, Value: "input.tel"}},
	}
	a := NewAuditor(rules, AuditConfig{Every: time.Minute, FlagAfter: time.Hour, Now: clock.Now,
		OnFlag: func(s SelectorAudit) {
			mu.Lock()
			flags = append(flags, s.Form+"/"+s.Role)
			mu.Unlock()
		},
		OnUnflag: func(s SelectorAudit) {
			mu.Lock()
			unflags = append(unflags, s.Form+"/"+s.Role)
			mu.Unlock()
		}})
	defer a.Close()

	page := `<html><body><form id="f"><input class="tel"></form><button class="call">Call</button>
	<button class="call">Call</button></body></html>`
	sampleAndWait(t, a, "/", page)
	if a.Want("/") {
		t.Fatal("the same path was sampled again within Every")
	}
	byKey := func() map[string]SelectorAudit {
		m := map[string]SelectorAudit{}
		for _, s := range a.Report() {
			m[s.Form+"/"+s.Role] = s
		}
		return m
	}
	r := byKey()
	if len(r) != 3 || r["A/submit"].LastCount != 1 || r["B/click"].LastCount != 2 || r["B/phone"].LastPath != "/" {
		t.Fatalf("report after a matching page: %+v", r)
	}

	// The site changes: the form gets another id. Pages keep coming for
	// more than FlagAfter; the flag is raised by the sampling itself, with
	// nobody reading the report.
	changed := `<html><body><form id="g"><input class="tel"></form><button class="call"></button></body></html>`
	for i := 0; i < 7; i++ {
		clock.Add(11 * time.Minute)
		sampleAndWait(t, a, "/", changed)
	}
	mu.Lock()
	gotFlags := append([]string(nil), flags...)
	mu.Unlock()
	if len(gotFlags) != 1 || gotFlags[0] != "A/submit" {
		t.Fatalf("flags raised: %v, want exactly A/submit once", gotFlags)
	}
	r = byKey()
	if !r["A/submit"].Flagged || r["B/click"].Flagged || r["B/phone"].Flagged {
		t.Fatalf("flags in report: %+v", r)
	}
	// More traffic: no second OnFlag for the same selector.
	clock.Add(11 * time.Minute)
	sampleAndWait(t, a, "/", changed)
	// The form is fixed: the flag clears and OnUnflag runs once.
	clock.Add(11 * time.Minute)
	sampleAndWait(t, a, "/", page)
	mu.Lock()
	defer mu.Unlock()
	if len(flags) != 1 || len(unflags) != 1 || unflags[0] != "A/submit" {
		t.Fatalf("flags %v, unflags %v", flags, unflags)
	}
	if byKey()["A/submit"].Flagged {
		t.Fatal("still flagged after a match")
	}
}

// No traffic means no verdict: a selector is not flagged by the clock alone.
func TestAuditNoTrafficNoFlag(t *testing.T) {
	clock := &auditClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	a := NewAuditor([]*Rule{{Title: "A", Submit: "#f"}}, AuditConfig{FlagAfter: time.Hour, Now: clock.Now})
	defer a.Close()
	sampleAndWait(t, a, "/", `<html><body>no form</body></html>`)
	clock.Add(48 * time.Hour)
	if s := a.Report()[0]; s.Flagged {
		t.Fatalf("flagged without traffic: %+v", s)
	}
}

// The audit judges selectors as the browser does: one the browser rejects
// is flagged on the first report and never counts a match, though cascadia
// would match it on the page.
func TestAuditFlagsSelectorsTheBrowserRejects(t *testing.T) {
	var mu sync.Mutex
	var flags []string
	rules := []*Rule{{Title: "A", Submit: "form:contains(Отправить)"}, {Title: "B", Submit: "#f"}}
	a := NewAuditor(rules, AuditConfig{OnFlag: func(s SelectorAudit) {
		mu.Lock()
		flags = append(flags, s.Form+"/"+s.Role)
		mu.Unlock()
	}})
	defer a.Close()
	r := a.Report()
	if !r[0].Flagged || !strings.Contains(r[0].Invalid, ":contains is a jQuery extension") {
		t.Fatalf("A: flagged %v invalid %q, want flagged with the reason", r[0].Flagged, r[0].Invalid)
	}
	if r[1].Flagged || r[1].Invalid != "" {
		t.Fatalf("B: %+v, want not flagged", r[1])
	}
	sampleAndWait(t, a, "/", `<form id="f"><button>Отправить</button></form>`)
	r = a.Report()
	if r[0].LastCount != 0 || !r[0].LastMatch.IsZero() || !r[0].Flagged {
		t.Errorf("A after a page cascadia matches: %+v, want no match and still flagged", r[0])
	}
	if r[1].LastCount != 1 {
		t.Errorf("B: %d matches, want 1", r[1].LastCount)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(flags) != 1 || flags[0] != "A/submit" {
		t.Errorf("OnFlag calls %v, want one for A/submit", flags)
	}
}
