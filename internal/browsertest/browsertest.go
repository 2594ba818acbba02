// Package browsertest drives headless Chromium for leadproxy's tests: it
// finds and starts the browser with the flags this machine needs, skips a
// test when there is no browser (fails it when LEADPROXY_REQUIRE_BROWSER=1,
// as CI sets), and opens tabs that record what their pages log as errors.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Wait bounds every browser step. It is generous on purpose: it only turns
// a hang into a failure, it measures nothing.
const Wait = 45 * time.Second

// Find returns the browser to drive, or "" when there is none.
func Find() string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start launches headless Chromium with its own profile folder. The
// returned context drives the browser; stop closes it and removes the
// profile. extra options come after the defaults (window size, flags).
func Start(extra ...chromedp.ExecAllocatorOption) (ctx context.Context, stop func(), err error) {
	path := Find()
	if path == "" {
		return nil, nil, errors.New("chromium not found")
	}
	dir, err := os.MkdirTemp("", "leadproxy-chromium-")
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
	)
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	stop = func() {
		cancelCtx()
		cancelAlloc()
		os.RemoveAll(dir)
	}
	// The first Do starts the browser, bound to ctx, which has no deadline.
	if err := chromedp.Do(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, stop, nil
}

// Unavailable skips t because the browser could not be used, or fails it
// when LEADPROXY_REQUIRE_BROWSER=1.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("LEADPROXY_REQUIRE_BROWSER") == "1" {
		t.Fatalf("browser required: %v", err)
	}
	t.Skipf("no browser: %v", err)
}

// Launch starts a browser for one test and stops it when the test ends.
func Launch(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	ctx, stop, err := Start(extra...)
	if err != nil {
		Unavailable(t, err)
	}
	t.Cleanup(stop)
	return ctx
}

// Tab is one tab in a fresh browser context (its own cookie jar) and the
// errors and uncaught exceptions its pages logged.
type Tab struct {
	Ctx      context.Context
	mu       sync.Mutex
	problems []string
}

// NewTab opens a tab of browser, closed when the test ends.
func NewTab(t testing.TB, browser context.Context) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first Do opens the tab, bound to ctx, which has no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	tab := &Tab{Ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				tab.mu.Lock()
				tab.problems = append(tab.problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
				tab.mu.Unlock()
			}
		}
	}()
	return tab
}

// Do runs steps, bounded by Wait.
func (b *Tab) Do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, Wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Eval evaluates js in the page and returns its string result.
func (b *Tab) Eval(t testing.TB, js string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, Wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// WaitText waits until the text of the element sel contains want.
func (b *Tab) WaitText(t testing.TB, sel, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, Wait)
	defer cancel()
	js := fmt.Sprintf(`(document.querySelector(%q)||{}).textContent.indexOf(%q) >= 0`, sel, want)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js)); err != nil {
		t.Fatalf("waiting for %q in %s: %v", want, sel, err)
	}
}

// Quiet fails t for every error the tab's pages logged or threw.
func (b *Tab) Quiet(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("console: %s", p)
	}
}

// Problems returns what the tab's pages logged as errors so far.
func (b *Tab) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// NodeModules returns the folder of the form libraries the stack tests load
// (internal/browsertest/testdata/stacks/node_modules, installed there by
// `npm ci`, as .ci/run does), found from the module root above the test's
// folder. When they are missing it skips t, or fails it when
// LEADPROXY_REQUIRE_BROWSER=1: a missing library must not pass for a tested
// one.
func NodeModules(t testing.TB) string {
	t.Helper()
	const rel = "internal/browsertest/testdata/stacks"
	dir, err := os.Getwd()
	for err == nil {
		if _, e := os.Stat(filepath.Join(dir, "go.mod")); e == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			err = errors.New("no go.mod above the test's folder")
		}
		dir = parent
	}
	if err == nil {
		nm := filepath.Join(dir, rel, "node_modules")
		if _, err = os.Stat(filepath.Join(nm, ".package-lock.json")); err == nil {
			return nm
		}
	}
	err = fmt.Errorf("the form libraries are not installed: run `npm ci` in %s (%v)", rel, err)
	if os.Getenv("LEADPROXY_REQUIRE_BROWSER") == "1" {
		t.Fatal(err)
	}
	t.Skip(err)
	return ""
}
