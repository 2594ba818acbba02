package intercept

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/leadproxy/leadproxy/lead"
)

// Cookie names (docs/capture-protocol.md).
const (
	MarkerCookie = "_lp_s"
	VisitCookie  = "_lp_v"
)

// Limits on what the browser sends, so a hostile client cannot make the
// server hold or store much.
const (
	MaxCookieValue = 4096
	MaxValues      = 64   // computed values in a marker or report
	MaxValueLen    = 4096 // bytes per value, longer ones are cut
)

// Marker is the content of the marker cookie.
type Marker struct {
	V       int               `json:"v"`
	Rule    string            `json:"r"`
	SID     string            `json:"s"`
	Action  string            `json:"a,omitempty"`
	Charset string            `json:"c,omitempty"`
	Values  map[string]string `json:"x,omitempty"`
	// Omit names the container's fields the script held secret by what
	// only the browser sees (type=password or file, autocomplete=cc-*, and
	// its wider name pattern): the post body carries them, the lead must not.
	Omit []string `json:"o,omitempty"`
	// Token is the server's signature of the site and the rule, as the
	// script it served carries it (MarkerSigner); a marker without a
	// valid one captures nothing.
	Token string `json:"t,omitempty"`
}

// Drop removes the fields the marker names in Omit (names compared as
// Fields.Get does, ignoring case).
func (m *Marker) Drop(f Fields) Fields {
	if m == nil || len(m.Omit) == 0 {
		return f
	}
	out := f[:0:0]
	for _, x := range f {
		if !slices.ContainsFunc(m.Omit, func(n string) bool { return strings.EqualFold(strings.TrimSpace(n), x.Name) }) {
			out = append(out, x)
		}
	}
	return out
}

// ExpireMarker answers a captured post with a Set-Cookie that deletes the
// marker, so that it serves that one post: a click marker names no path,
// and would otherwise mark every post of the next minute, unrelated ones
// too. A second click or submit sets it again.
func ExpireMarker(w http.ResponseWriter, r *http.Request) {
	c := &http.Cookie{Name: MarkerCookie, Value: "", Path: "/", MaxAge: -1, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
	w.Header().Add("Set-Cookie", c.String())
}

// VisitInfo is the content of the visit cookie.
type VisitInfo struct {
	ID       string            `json:"id,omitempty"`
	Landing  string            `json:"l,omitempty"`
	Referrer string            `json:"r,omitempty"`
	UTM      map[string]string `json:"u,omitempty"`
}

// EncodeCookieJSON is the cookie value format: unpadded base64url of JSON.
func EncodeCookieJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func decodeCookieJSON(value string, v any) error {
	if len(value) > MaxCookieValue {
		return errors.New("cookie too long")
	}
	value = strings.TrimRight(value, "=")
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return fmt.Errorf("cookie not base64url: %w", err)
	}
	return json.Unmarshal(b, v)
}

// ReadMarker returns the request's marker, or nil when it has none or a
// malformed one (a malformed marker is the visitor's problem, not a lead).
func ReadMarker(r *http.Request) (*Marker, error) {
	c, err := r.Cookie(MarkerCookie)
	if err != nil {
		return nil, nil
	}
	return ParseMarker(c.Value)
}

// ParseMarker decodes and checks a marker cookie value.
func ParseMarker(value string) (*Marker, error) {
	var m Marker
	if err := decodeCookieJSON(value, &m); err != nil {
		return nil, fmt.Errorf("marker: %w", err)
	}
	if m.V != 1 {
		return nil, fmt.Errorf("marker: version %d", m.V)
	}
	if m.Rule == "" || !validSID(m.SID) {
		return nil, errors.New("marker: missing rule or bad submission id")
	}
	if len(m.Token) > MaxMarkerToken {
		return nil, errors.New("marker: token too long")
	}
	m.Values = clampValues(m.Values)
	if len(m.Omit) > MaxValues {
		m.Omit = m.Omit[:MaxValues]
	}
	return &m, nil
}

// ReadVisit returns the request's visit cookie content, or nil.
func ReadVisit(r *http.Request) *VisitInfo {
	c, err := r.Cookie(VisitCookie)
	if err != nil {
		return nil
	}
	var v VisitInfo
	if decodeCookieJSON(c.Value, &v) != nil {
		return nil
	}
	v.clamp()
	return &v
}

func (v *VisitInfo) clamp() {
	v.ID = clamp(v.ID, 64)
	v.Landing = clamp(v.Landing, 2048)
	v.Referrer = clamp(v.Referrer, 2048)
	u := map[string]string{}
	for _, k := range []string{"source", "medium", "campaign", "term", "content"} {
		if x := clamp(v.UTM[k], 512); x != "" {
			u[k] = x
		}
	}
	v.UTM = u
}

// Visit builds the lead's visit from the cookie (or report) and the
// request; client is the visitor's address as the server computed it
// (behind a trusted proxy, not the connection's).
func Visit(r *http.Request, client string, v *VisitInfo, page string) *lead.Visit {
	out := &lead.Visit{Page: clamp(page, 2048), IP: clamp(client, 64), UserAgent: clamp(r.UserAgent(), 512)}
	if v != nil {
		out.ID, out.Landing, out.Referrer = v.ID, v.Landing, v.Referrer
		if len(v.UTM) > 0 {
			out.UTM = v.UTM
		}
	}
	return out
}

func validSID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func clampValues(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for _, k := range lead.SortedKeys(in) {
		if len(out) >= MaxValues {
			break
		}
		out[clamp(noNUL(k), 256)] = clamp(noNUL(in[k]), MaxValueLen)
	}
	return out
}

// clamp cuts s to at most n bytes on a rune boundary.
func clamp(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Report is the JSON the script sends to {prefix}/collect.
type Report struct {
	V       int               `json:"v"`
	Rule    string            `json:"r"`
	SID     string            `json:"s"`
	Honey   string            `json:"hp"`
	Page    string            `json:"page"`
	Charset string            `json:"c,omitempty"`
	Fields  map[string]string `json:"f,omitempty"`
	Values  map[string]string `json:"x,omitempty"`
	Visit   *VisitInfo        `json:"vis,omitempty"`
	Errors  []string          `json:"err,omitempty"`
}

// Report rejection reasons, as counted in leadproxy_collect_rejected_total.
var (
	ErrReportMalformed = errors.New("malformed")
	ErrReportHoneypot  = errors.New("honeypot")
)

// ParseReport decodes and checks a collect report.
func ParseReport(body []byte) (*Report, error) {
	var rep Report
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReportMalformed, err)
	}
	if rep.V != 1 || rep.Rule == "" || !validSID(rep.SID) {
		return nil, fmt.Errorf("%w: version, rule or submission id", ErrReportMalformed)
	}
	if rep.Honey != "" {
		return nil, ErrReportHoneypot
	}
	if len(rep.Fields) > MaxFields {
		return nil, fmt.Errorf("%w: %d fields", ErrReportMalformed, len(rep.Fields))
	}
	f := Fields{}
	for _, k := range lead.SortedKeys(rep.Fields) {
		f.Add(k, rep.Fields[k])
	}
	rep.Fields = f.Map()
	rep.Values = clampValues(rep.Values)
	rep.Page = clamp(rep.Page, 2048)
	if rep.Visit != nil {
		rep.Visit.clamp()
	}
	if len(rep.Errors) > 8 {
		rep.Errors = rep.Errors[:8]
	}
	for i, e := range rep.Errors {
		rep.Errors[i] = clamp(e, 512)
	}
	return &rep, nil
}
