// Package salesforce is the destination for Salesforce: each lead becomes a
// Lead record through the REST API,
// POST {base_url}/services/data/v{api_version}/sobjects/Lead/ answering
// 201 {"id","success","errors"}; the id is the crm_id.
//
// Mapping: FirstName/LastName from lead.SplitName, Phone in E.164, Email,
// LeadSource (default "Web"), Description with the title, l.Summary()
// (comment, extra fields, attribution, utm_*) and anything that could not
// go into its own field. Salesforce requires LastName and Company, so a lead
// without them gets defaults, and says so: a one-word name is the LastName;
// no name at all, or no Company from the form's crm fields, is
// "[not provided]", as Salesforce's own Web-to-Lead does. Values are cut to
// the standard fields' lengths, and an email Salesforce would reject goes to
// the Description instead, so that no lead fails on a visitor's typing.
//
// The lead's crm fields are Salesforce API names and win over the mapping
// above: Company, Title, Owner (sent as OwnerId, a User or Queue id), any
// standard field, and custom fields ending in __c. utm_field maps a visit's
// utm_* value to a custom field (Salesforce has no standard UTM fields).
//
// Create is not idempotent. With external_id <Field__c> (an External ID
// field on Lead) the lead is upserted by l.ID instead,
// PATCH …/sobjects/Lead/<Field__c>/<lead id>, so a retry updates the record
// the first attempt created. Duplicate Management alerts are acknowledged
// (Sforce-Duplicate-Rule-Header: allowSave=true) unless allow_duplicates is
// off: a visitor's second request is still a lead; blocking rules still block.
//
// Auth: a "token" (session id), or client_id + client_secret + refresh_token
// used with the OAuth refresh_token grant at token_url (default
// https://login.salesforce.com/services/oauth2/token; test.salesforce.com for
// sandboxes, or the My Domain). Salesforce announces no expiry: the token is
// renewed once when a request answers 401 INVALID_SESSION_ID. A rotated
// refresh token is kept through the app's crm.TokenStore, else in memory.
//
// Errors are the JSON array [{"message","errorCode","fields"}]. 403
// REQUEST_LIMIT_EXCEEDED (the org's 24-hour API allocation) is retried, as
// are 5xx, 429 and network errors; other 4xx (validation, INVALID_FIELD,
// DUPLICATES_DETECTED, a refused token) are permanent with Salesforce's
// messages. Unconfirmed in the reference ([U]): the REST shape of
// DUPLICATES_DETECTED (only errorCode and message are read), and the body of
// an upsert that updated (read when present, else the Id is looked up).
package salesforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/oauth"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(Salesforce{})
}

// Defaults.
const (
	DefaultTokenURL   = "https://login.salesforce.com/services/oauth2/token"
	DefaultAPIVersion = "67.0"
	DefaultLeadSource = "Web"
	// NotProvided fills the required LastName and Company when the lead has
	// none: the value Salesforce's Web-to-Lead uses.
	NotProvided = "[not provided]"
)

// Salesforce creates Leads in a Salesforce org.
type Salesforce struct {
	crm.Common
	// Token is an access token (session id) used as is; when it is
	// rejected the lead fails. Prefer the refresh flow below.
	Token string `json:"token,omitempty"`
	// ClientID and ClientSecret of the connected app, and a RefreshToken
	// it issued: access tokens are obtained and renewed with them. Use
	// placeholders.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// TokenURL is the OAuth token endpoint. Default
	// https://login.salesforce.com/services/oauth2/token.
	TokenURL string `json:"token_url,omitempty"`
	// APIVersion of the REST API, "67.0". Default 67.0, the version the
	// reference documents.
	APIVersion string `json:"api_version,omitempty"`
	// LeadSource is the LeadSource picklist value. Default "Web", a value
	// every org starts with; a form's crm LeadSource wins.
	LeadSource string `json:"lead_source,omitempty"`
	// ExternalID is the API name of a Lead External ID field that receives
	// the lead id, making delivery idempotent (upsert). Default: none,
	// plain create.
	ExternalID string `json:"external_id,omitempty"`
	// AllowDuplicates acknowledges Duplicate Management alerts so the lead
	// is saved. Default true: a returning visitor's request is a lead too.
	AllowDuplicates *bool `json:"allow_duplicates,omitempty"`
	// UTMFields maps a utm key (source, medium, campaign, term, content) to
	// the Lead field that receives it, e.g. source → UTM_Source__c.
	UTMFields map[string]string `json:"utm_fields,omitempty"`

	sobject  string // {base_url}/services/data/vNN.N/sobjects/Lead
	tokenURL string
	token    string // Token resolved
	refresh  string // RefreshToken resolved
	clientID string
	secret   string
	oauth.Keeper
}

// CaddyModule returns the Caddy module information.
func (Salesforce) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".salesforce",
		New: func() caddy.Module { return new(Salesforce) },
	}
}

var (
	apiVersion = regexp.MustCompile(`^\d{2,3}\.\d$`)
	apiName    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
)

// Provision resolves placeholders and checks the options.
func (s *Salesforce) Provision(ctx caddy.Context) error {
	if err := s.Spec().Resolve(); err != nil {
		return err
	}
	if err := s.Common.Provision(""); err != nil {
		return fmt.Errorf("salesforce: %w", err)
	}
	token, refresh := s.token, s.refresh
	refreshFlow := s.clientID != "" // with the secret and refresh token: Resolve checked they go together
	if s.tokenURL == "" {
		s.tokenURL = DefaultTokenURL
	}
	if u, err := url.Parse(s.tokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("salesforce: token_url %q: want an absolute http(s) URL", s.tokenURL)
	}
	version := strings.TrimPrefix(s.APIVersion, "v")
	if version == "" {
		version = DefaultAPIVersion
	}
	if !apiVersion.MatchString(version) {
		return fmt.Errorf("salesforce: api_version %q: want a version like %s", s.APIVersion, DefaultAPIVersion)
	}
	if s.ExternalID != "" && !apiName.MatchString(s.ExternalID) {
		return fmt.Errorf("salesforce: external_id %q: want the API name of a Lead field, like LeadProxy_ID__c", s.ExternalID)
	}
	for key, field := range s.UTMFields {
		if err := crm.CheckUTMKey(key); err != nil {
			return fmt.Errorf("salesforce: utm_field: %w", err)
		}
		if !apiName.MatchString(field) {
			return fmt.Errorf("salesforce: utm_field %s: %q is not a field API name", key, field)
		}
	}
	if s.LeadSource == "" {
		s.LeadSource = DefaultLeadSource
	}
	s.sobject = s.BaseURL + "/services/data/v" + version + "/sobjects/Lead"
	var grant oauth.Grant
	if refreshFlow {
		grant = s.grant
	}
	seed := oauth.Seed(s.BaseURL, s.tokenURL, token, s.clientID, s.secret, refresh)
	s.Keep("salesforce", oauth.New(oauth.Token{Access: token, Refresh: refresh}, seed, grant, ctx.Logger()))
	return nil
}

// Account is the Salesforce org (its instance, the base_url's host): API
// allocations count per org.
func (s *Salesforce) Account() string { return crm.AccountKey("salesforce", crm.HostOf(s.BaseURL)) }

// DefaultRate: Salesforce documents no per-second limit for sObject create,
// only the org's rolling 24-hour allocation (shared with its other
// integrations; exceeding it is a retried 403). 10 a second drains a
// backlog quickly without bursting into that allocation.
func (s *Salesforce) DefaultRate() (int, time.Duration) { return s.RateOr(10, time.Second, 1) }

// Send creates (or, with external_id, upserts) the Lead and returns its id.
func (s *Salesforce) Send(ctx context.Context, l *lead.Lead) (string, error) {
	if s.Tokens() == nil {
		return "", lead.Permanent(0, "salesforce: not provisioned")
	}
	body, err := crm.JSONBody(s.fields(l))
	if err != nil {
		return "", err
	}
	step, method, target := "create lead", http.MethodPost, s.sobject+"/"
	if s.ExternalID != "" {
		step, method, target = "upsert lead", http.MethodPatch, s.byExternalID(l.ID)
	}
	resp, err := s.call(ctx, method, target, body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", step, err)
	}
	if resp.Status == http.StatusNoContent && s.ExternalID != "" {
		// An upsert that updated answers no body before API 46.0.
		return s.lookup(ctx, l.ID)
	}
	var ans struct {
		ID string `json:"id"`
	}
	err = json.Unmarshal(resp.Body, &ans)
	if ans.ID == "" {
		return "", fmt.Errorf("%s: %w", step, crm.Unparsable(resp, err))
	}
	return ans.ID, nil
}

// Preview is what Send would send for l (the dry run): a token request
// only when Send would make one (its answer is kept nowhere), then the
// create or upsert, answered as documented (201 with the new id).
func (s *Salesforce) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, s, l, func(req *http.Request, _ []byte) *crm.Response {
		if req.URL.String() == s.tokenURL {
			return crm.JSONAnswer(`{"access_token":"leadproxy-preview-access-token","token_type":"Bearer"}`)
		}
		return &crm.Response{Status: http.StatusCreated, Header: http.Header{"Content-Type": {crm.ContentJSON}},
			Body: []byte(`{"id":"00Q000000000001AAA","success":true,"errors":[]}`)}
	}, s.secret, s.token, s.refresh)
}

func (s *Salesforce) byExternalID(leadID string) string {
	return s.sobject + "/" + url.PathEscape(s.ExternalID) + "/" + url.PathEscape(leadID)
}

// lookup reads the Id of the Lead whose external id is leadID.
func (s *Salesforce) lookup(ctx context.Context, leadID string) (string, error) {
	resp, err := s.call(ctx, http.MethodGet, s.byExternalID(leadID)+"?fields=Id", nil)
	if err != nil {
		return "", fmt.Errorf("read upserted lead: %w", err)
	}
	var rec struct {
		ID string `json:"Id"`
	}
	err = json.Unmarshal(resp.Body, &rec)
	if rec.ID == "" {
		return "", fmt.Errorf("read upserted lead: %w", crm.Unparsable(resp, err))
	}
	return rec.ID, nil
}

// call makes one REST request with the current token, renewed once on 401,
// and classifies the answer.
func (s *Salesforce) call(ctx context.Context, method, target string, body []byte) (*crm.Response, error) {
	resp, err := s.Tokens().Do(ctx, func(access string) (*crm.Response, error) {
		h := crm.Bearer(access)
		if body != nil && (s.AllowDuplicates == nil || *s.AllowDuplicates) {
			h.Set("Sforce-Duplicate-Rule-Header", "allowSave=true")
		}
		req, err := crm.NewRequest(ctx, method, target, crm.ContentJSON, body, h)
		if err != nil {
			return nil, err
		}
		return crm.Do(s.Client(), req)
	}, func(r *crm.Response) bool { return r.Status == http.StatusUnauthorized })
	if err != nil {
		return nil, err
	}
	return resp, classify(resp)
}

func (s *Salesforce) grant(ctx context.Context, cur oauth.Token) (oauth.Token, error) {
	return oauth.Exchange(ctx, s.Client(), s.tokenURL, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {cur.Refresh},
		"client_id":     {s.clientID},
		"client_secret": {s.secret},
	}, nil)
}

// apiError is one entry of Salesforce's error array.
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields"`
}

// classify turns a non-2xx answer into an error with Salesforce's messages.
func classify(r *crm.Response) error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	var errs []apiError
	json.Unmarshal(r.Body, &errs)
	var parts []string
	limited := false
	for _, e := range errs {
		if e.ErrorCode == "" && e.Message == "" {
			continue
		}
		p := e.ErrorCode + ": " + e.Message
		if len(e.Fields) > 0 {
			p += " (" + strings.Join(e.Fields, ", ") + ")"
		}
		parts = append(parts, p)
		limited = limited || e.ErrorCode == "REQUEST_LIMIT_EXCEEDED"
	}
	msg := strings.Join(parts, "; ")
	switch {
	case r.Status == http.StatusForbidden && limited:
		return lead.Retryable(r.Status, msg, crm.RetryAfter(r.Header, time.Now()))
	case r.Status == http.StatusMultipleChoices:
		return lead.Permanent(r.Status, "the external id matches several leads")
	}
	return crm.Classify(r, msg)
}

// fields builds the Lead: the mapped main fields, then utm_field values,
// then the form's crm fields (API names) over both; then the required
// fields' defaults and the standard length limits.
func (s *Salesforce) fields(l *lead.Lead) map[string]any {
	f := map[string]any{"LeadSource": s.LeadSource}
	var notes []string
	first, last := lead.SplitName(l.Name)
	if last == "" {
		first, last = "", first // LastName is the required one
	}
	if first != "" {
		f["FirstName"] = first
	}
	if last != "" {
		f["LastName"] = last
	}
	if phone := lead.NormalizePhone(l.Phone, ""); phone != "" {
		f["Phone"] = phone
	}
	if email := strings.TrimSpace(l.Email); email != "" {
		if acceptableEmail(email) {
			f["Email"] = email
		} else {
			notes = append(notes, "Email: "+email)
		}
	}
	if l.Visit != nil {
		for key, field := range s.UTMFields {
			if v := l.Visit.UTM[key]; v != "" {
				f[field] = v
			}
		}
	}
	for k, v := range l.CRM {
		if v == "" {
			continue // an empty form field does not clear a default
		}
		if k == "Owner" {
			k = "OwnerId"
		}
		f[k] = v
	}
	if _, set := f["Description"]; !set {
		f["Description"] = description(l, notes)
	}
	for _, req := range []string{"LastName", "Company"} {
		if v, _ := f[req].(string); strings.TrimSpace(v) == "" {
			f[req] = NotProvided
		}
	}
	for field, max := range maxLen {
		if v, ok := f[field].(string); ok {
			f[field] = truncate(v, max)
		}
	}
	return f
}

// maxLen holds the lengths of the standard Lead fields the adapter fills;
// a longer value is refused (STRING_TOO_LONG) and would fail the lead.
var maxLen = map[string]int{
	"FirstName": 40, "LastName": 80, "Company": 255, "Title": 128,
	"Phone": 40, "Email": 80, "LeadSource": 255, "Description": 32000,
}

func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max])
}

// acceptableEmail is a conservative check of what Salesforce's Email field
// takes: a plain ASCII addr-spec with a dotted domain, within 80 characters.
func acceptableEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || len(s) > 80 {
		return false
	}
	for _, r := range s {
		if r > 0x7e {
			return false
		}
	}
	_, domain, _ := strings.Cut(s, "@")
	return strings.Contains(domain, ".") && !strings.HasSuffix(domain, ".")
}

// description is the Lead's text: title, notes, summary.
func description(l *lead.Lead, notes []string) string {
	var lines []string
	if l.Title != "" && l.Title != l.Form {
		lines = append(lines, l.Title)
	}
	lines = append(lines, notes...)
	if s := l.Summary(); s != "" {
		lines = append(lines, s)
	}
	return strings.Join(lines, "\n")
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Salesforce)(nil)
	_ caddyfile.Unmarshaler = (*Salesforce)(nil)
	_ lead.Sender           = (*Salesforce)(nil)
	_ lead.Rated            = (*Salesforce)(nil)
	_ crm.TokenKeeper       = (*Salesforce)(nil)
)
