package crm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/leadproxy/leadproxy/lead"
)

// PreviewRequest is one request a destination would make for a lead, as a
// dry run shows it (secrets masked).
type PreviewRequest = lead.Request

// Previewer is implemented by destinations that can show what Send would
// send for a lead without sending it: the dry run. Every destination in
// crm/ implements it by running its own Send through Record, so the
// preview cannot drift from what is sent.
type Previewer interface {
	Preview(ctx context.Context, l *lead.Lead) ([]PreviewRequest, error)
}

// Answer is a CRM's documented success answer to one request of a preview
// (method, path and body as Send made them). nil means the request has no
// documented answer: the preview stops there with an error.
type Answer func(req *http.Request, body []byte) *Response

// JSONAnswer is a 200 with a JSON body, what most answers are.
func JSONAnswer(body string) *Response {
	return &Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {ContentJSON}}, Body: []byte(body)}
}

// Masked replaces secrets in a preview.
const Masked = "***"

// Preview bounds: a preview is stored with its lead, so a huge comment or a
// destination that loops cannot make it unbounded.
const (
	MaxPreviewRequests = 20       // requests kept; the rest are made (and answered) but not kept
	MaxPreviewBody     = 64 << 10 // bytes of one request body kept; the rest is cut, and said so
)

type recordKey struct{}

type recorder struct {
	answer  Answer
	secrets []string
	reqs    []PreviewRequest
	kept    map[string]string
}

// Recording reports whether ctx is a preview's: a destination must then
// keep nothing it learns (a renewed token, an id cache), as nothing was sent.
func Recording(ctx context.Context) bool {
	_, ok := ctx.Value(recordKey{}).(*recorder)
	return ok
}

// PreviewKeep keeps value under key for the rest of a preview (a token
// its answers gave), where a Send would keep it in the destination.
// Outside a preview it does nothing.
func PreviewKeep(ctx context.Context, key, value string) {
	if rec, ok := ctx.Value(recordKey{}).(*recorder); ok {
		if rec.kept == nil {
			rec.kept = map[string]string{}
		}
		rec.kept[key] = value
	}
}

// PreviewKept returns what PreviewKeep kept under key in this preview.
func PreviewKept(ctx context.Context, key string) (string, bool) {
	rec, ok := ctx.Value(recordKey{}).(*recorder)
	if !ok {
		return "", false
	}
	v, ok := rec.kept[key]
	return v, ok
}

// Record runs send (the destination's own Send) with every request that
// goes through Do recorded and answered by answer instead of sent, and
// returns the requests with secrets masked: each string of secrets (the
// configured token, key, password), the credentials of Authorization
// headers, the values of headers, form fields and query parameters whose
// name says secret (token, key, secret, password, signature). An error of
// send is returned with the requests made before it. send's requests must
// be made one at a time (a Send's are).
func Record(ctx context.Context, answer Answer, secrets []string, send func(ctx context.Context) error) ([]PreviewRequest, error) {
	rec := &recorder{answer: answer}
	for _, s := range secrets {
		if strings.TrimSpace(s) != "" {
			rec.secrets = append(rec.secrets, s)
		}
	}
	err := send(context.WithValue(ctx, recordKey{}, rec))
	out := make([]PreviewRequest, len(rec.reqs))
	for i, r := range rec.reqs {
		out[i] = rec.mask(r)
	}
	return out, err
}

// do records req and answers it (Do's path in a preview).
func (rec *recorder) do(req *http.Request) (*Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
		req.Body.Close()
		if err != nil {
			return nil, lead.Permanent(0, "preview: reading the request body: "+err.Error())
		}
		body = b
	}
	h := map[string][]string{}
	for k, vs := range req.Header {
		h[k] = append([]string(nil), vs...)
	}
	if auth := req.Header.Get("Authorization"); auth != "" {
		if _, cred, ok := strings.Cut(auth, " "); ok && cred != "" {
			rec.secrets = append(rec.secrets, cred)
		} else {
			rec.secrets = append(rec.secrets, auth)
		}
	}
	if len(rec.reqs) < MaxPreviewRequests {
		kept := string(body)
		if len(body) > MaxPreviewBody {
			kept = strings.ToValidUTF8(string(body[:MaxPreviewBody]), "") + fmt.Sprintf("\n… (%d more bytes not shown)", len(body)-MaxPreviewBody)
		}
		rec.reqs = append(rec.reqs, PreviewRequest{Method: req.Method, URL: req.URL.String(), Header: h, Body: kept})
	}
	ans := rec.answer(req, body)
	if ans == nil {
		return nil, lead.Permanent(0, fmt.Sprintf("preview: no documented answer for %s %s", req.Method, req.URL.Path))
	}
	cp := *ans
	cp.Header = ans.Header.Clone()
	if cp.Header == nil {
		cp.Header = http.Header{}
	}
	cp.Body = append([]byte(nil), ans.Body...)
	return &cp, nil
}

// secretName matches header, form and query names whose values are secrets.
var secretName = regexp.MustCompile(`(?i)token|secret|passw|signature|api[-_]?key|^key$|^auth|cookie`)

func (rec *recorder) mask(r PreviewRequest) PreviewRequest {
	// Longest first, so a secret that contains another is masked whole.
	secrets := append([]string(nil), rec.secrets...)
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	hide := func(s string) string {
		for _, sec := range secrets {
			for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
				s = strings.ReplaceAll(s, form, Masked)
			}
		}
		return s
	}
	out := PreviewRequest{Method: r.Method, URL: maskQuery(hide(r.URL)), Header: map[string][]string{}, Body: hide(r.Body)}
	for k, vs := range r.Header {
		for _, v := range vs {
			switch {
			case strings.EqualFold(k, "Authorization"):
				if scheme, _, ok := strings.Cut(v, " "); ok {
					v = scheme + " " + Masked
				} else {
					v = Masked
				}
			case secretName.MatchString(k):
				v = Masked
			default:
				v = hide(v)
			}
			out.Header[k] = append(out.Header[k], v)
		}
	}
	if ct := strings.ToLower(firstOf(r.Header, "Content-Type")); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		out.Body = maskForm(out.Body)
	}
	return out
}

func firstOf(h map[string][]string, name string) string {
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// maskForm masks the secret-named fields of a urlencoded body, keeping the
// order and encoding of everything else.
func maskForm(body string) string {
	parts := strings.Split(body, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if ok && err == nil && secretName.MatchString(name) {
			parts[i] = k + "=" + Masked
		}
	}
	return strings.Join(parts, "&")
}

func maskQuery(u string) string {
	base, q, ok := strings.Cut(u, "?")
	if !ok {
		return u
	}
	return base + "?" + maskForm(q)
}

// PreviewSend is a destination's Preview: its own Send run through Record.
func PreviewSend(ctx context.Context, s lead.Sender, l *lead.Lead, answer Answer, secrets ...string) ([]PreviewRequest, error) {
	return Record(ctx, answer, secrets, func(ctx context.Context) error {
		_, err := s.Send(ctx, l)
		return err
	})
}
