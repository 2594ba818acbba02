package crmtest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// Received is one request as a fake CRM received it.
type Received struct {
	Method string
	Host   string
	URL    string // path and query
	Header http.Header
	Body   string
}

// Recorder is a proxy in front of a fake CRM that keeps every request it
// passes on: what the CRM received, to hold a preview against.
type Recorder struct {
	URL string
	srv *httptest.Server
	mu  sync.Mutex
	got []Received
}

// NewRecorder starts a recording proxy to target (the fake's URL).
func NewRecorder(target string) *Recorder {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	r := &Recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, Received{Method: req.Method, Host: req.Host, URL: req.URL.RequestURI(), Header: req.Header.Clone(), Body: string(body)})
		r.mu.Unlock()
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		rp.ServeHTTP(w, req)
	}))
	r.URL = r.srv.URL
	return r
}

// Received returns the requests passed on so far.
func (r *Recorder) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.got...)
}

// Close stops the proxy.
func (r *Recorder) Close() { r.srv.Close() }

var fakeURL = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+`)

// Proxied puts a Recorder in front of the fake a destination's Caddyfile
// lines point at and returns the lines pointing at it; nil when the lines
// name no HTTP fake. Close the Recorder when done.
func Proxied(lines string) (string, *Recorder) {
	target := fakeURL.FindString(lines)
	if target == "" {
		return lines, nil
	}
	rec := NewRecorder(target)
	return strings.ReplaceAll(lines, target, rec.URL), rec
}

// PreviewMatches checks preview against what a CRM received for the same
// lead: as many requests, each with the same method, path, query and body,
// and every header the preview shows unmasked with the same value.
// assigned are the example ids of the preview's answers: where the preview
// carries one, the CRM's own id may stand.
func PreviewMatches(t testing.TB, preview []crm.PreviewRequest, got []Received, assigned ...string) {
	t.Helper()
	if len(preview) != len(got) {
		t.Fatalf("preview has %d requests, the CRM received %d:\npreview %+v\nreceived %+v", len(preview), len(got), preview, got)
	}
	for i, p := range preview {
		g := got[i]
		pu, err := url.Parse(p.URL)
		if err != nil {
			t.Fatalf("request %d: preview URL %q: %v", i, p.URL, err)
		}
		if p.Method != g.Method || pu.Host != g.Host || !sameWithIDs(pu.RequestURI(), g.URL, assigned) {
			t.Errorf("request %d: preview %s %s, received %s %s%s", i, p.Method, p.URL, g.Method, g.Host, g.URL)
		}
		if !sameWithIDs(p.Body, g.Body, assigned) {
			t.Errorf("request %d (%s %s): preview body\n%s\nreceived\n%s", i, g.Method, g.URL, p.Body, g.Body)
		}
		for k, vs := range p.Header {
			for j, v := range vs {
				if strings.Contains(v, crm.Masked) || strings.EqualFold(k, "webhook-timestamp") {
					continue // a secret, or the time of the request
				}
				if gv := g.Header.Values(k); j >= len(gv) || gv[j] != v {
					t.Errorf("request %d: header %s: preview %q, received %q", i, k, v, gv)
				}
			}
		}
	}
}

// sameWithIDs compares a preview's text with a received one, where each
// example id of the preview may be any id in the received text.
func sameWithIDs(preview, got string, ids []string) bool {
	if preview == got {
		return true
	}
	expr := regexp.QuoteMeta(preview)
	n := strings.Count(expr, regexp.QuoteMeta(crm.Masked))
	expr = strings.ReplaceAll(expr, regexp.QuoteMeta(crm.Masked), `[^&"]+`)
	for _, id := range ids {
		if q := regexp.QuoteMeta(id); strings.Contains(expr, q) {
			expr = strings.ReplaceAll(expr, q, `[0-9A-Za-z_-]+`)
			n++
		}
	}
	return n > 0 && regexp.MustCompile(`^`+expr+`$`).MatchString(got)
}

// previewMatchesSend: the preview of a lead is what Send then sends to the
// fake (through a recording proxy), and a preview sends nothing.
func previewMatchesSend(t *testing.T, c Conformance, typ string) {
	lines, _, stop := c.Fake()
	defer stop()
	orig := lines
	lines, rec := Proxied(lines)
	if rec == nil {
		// The fake is not an HTTP server (email's SMTP): the preview must
		// still be made, non-empty; the type's own tests hold it byte for
		// byte against what the server receives.
		d := Provisioned(t, c, block(typ, orig))
		p, ok := d.(crm.Previewer)
		if !ok {
			t.Fatalf("%T does not implement crm.Previewer (the dry run)", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		preview, err := p.Preview(ctx, c.Lead())
		if err != nil || len(preview) == 0 {
			t.Fatalf("Preview: %d requests, %v", len(preview), err)
		}
		return
	}
	defer rec.Close()
	d := Provisioned(t, c, block(typ, lines))
	p, ok := d.(crm.Previewer)
	if !ok {
		t.Fatalf("%T does not implement crm.Previewer (the dry run)", d)
	}
	l := c.Lead()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	preview, err := p.Preview(ctx, l)
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	if n := len(rec.Received()); n != 0 {
		t.Fatalf("Preview sent %d requests", n)
	}
	if len(preview) == 0 {
		t.Fatal("empty preview")
	}
	if _, err := Send(d, l); err != nil {
		t.Fatalf("Send: %v", err)
	}
	PreviewMatches(t, preview, rec.Received(), c.PreviewIDs...)
	sent := len(rec.Received())
	if _, err := p.Preview(ctx, l); err != nil {
		t.Errorf("a second preview: %v", err)
	}
	if n := len(rec.Received()); n != sent {
		t.Errorf("a second preview sent %d requests", n-sent)
	}
}

// Preview returns d's preview of l, for a type's own tests.
func Preview(t testing.TB, d lead.Sender, l *lead.Lead) []crm.PreviewRequest {
	t.Helper()
	p, ok := d.(crm.Previewer)
	if !ok {
		t.Fatalf("%T does not implement crm.Previewer", d)
	}
	out, err := p.Preview(context.Background(), l)
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	return out
}
