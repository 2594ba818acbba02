// Package oauth keeps the OAuth tokens of a CRM destination that refreshes
// them (Salesforce, Megaplan): one renewal at a time however many Sends run,
// a request retried once with a new token when the CRM rejects the old one,
// and the tokens persisted through a crm.TokenStore so that a restart keeps a
// rotated refresh token.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// Skew renews a token this long before its announced expiry, so a request
// does not leave with a token that dies on the way.
const Skew = time.Minute

// previewKey is where a preview keeps its token (crm.PreviewKeep).
const previewKey = "oauth.access"

// Token is an access token and what is needed to renew it.
type Token struct {
	Access  string    `json:"access_token,omitempty"`
	Refresh string    `json:"refresh_token,omitempty"`
	Expiry  time.Time `json:"expiry,omitzero"` // zero: unknown, renewed only when rejected
}

// Grant obtains a new token. cur is the token held now; its Refresh may be
// empty. Errors must be classified (*lead.SendError).
type Grant func(ctx context.Context, cur Token) (Token, error)

// record is what the TokenStore holds. Seed ties it to the configured
// credentials: a new refresh token or password in the config wins over a
// stored token obtained with the old one.
type record struct {
	Seed string `json:"seed"`
	Token
}

// Tokens holds one destination's token. Safe for concurrent use.
type Tokens struct {
	grant Grant
	seed  string
	log   *zap.Logger
	now   func() time.Time

	sem    chan struct{} // one slot: loading and renewal happen one at a time
	tok    Token
	mu     sync.Mutex // guards store and key against SetStore during a Send
	store  crm.TokenStore
	key    string
	loaded bool
}

// New returns Tokens starting from initial (a configured access or refresh
// token, possibly empty). grant nil means the token cannot be renewed: a
// rejected token is then the CRM's answer to report. seed identifies the
// configured credentials (see Seed).
func New(initial Token, seed string, grant Grant, log *zap.Logger) *Tokens {
	if log == nil {
		log = zap.NewNop()
	}
	return &Tokens{grant: grant, seed: seed, log: log, now: time.Now, sem: make(chan struct{}, 1), tok: initial}
}

// Seed hashes the configured credentials into a short fingerprint.
func Seed(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// SetStore makes the tokens durable under key. The stored token, if it was
// obtained with the same configured credentials, is used from the next call.
func (t *Tokens) SetStore(key string, s crm.TokenStore) {
	t.mu.Lock()
	t.store, t.key, t.loaded = s, key, false
	t.mu.Unlock()
}

// CanRenew reports whether a rejected token can be replaced.
func (t *Tokens) CanRenew() bool { return t.grant != nil }

// Current returns the token held now (for tests and diagnostics).
func (t *Tokens) Current() Token {
	if t.lock(context.Background()) != nil {
		return Token{}
	}
	defer t.unlock()
	return t.tok
}

// Get returns an access token, obtaining one when there is none or it is
// about to expire.
func (t *Tokens) Get(ctx context.Context) (string, error) {
	if err := t.lock(ctx); err != nil {
		return "", err
	}
	defer t.unlock()
	t.loadLocked()
	if access, ok := crm.PreviewKept(ctx, previewKey); ok {
		return access, nil
	}
	if t.tok.Access != "" && (t.tok.Expiry.IsZero() || t.now().Before(t.tok.Expiry.Add(-Skew))) {
		return t.tok.Access, nil
	}
	if t.grant == nil {
		if t.tok.Access != "" {
			return t.tok.Access, nil // expired by our clock; let the CRM decide
		}
		return "", lead.Permanent(0, "auth: no access token configured")
	}
	return t.renewLocked(ctx)
}

// Renew replaces the access token the CRM rejected. When another Send has
// renewed it meanwhile, that newer token is returned without a new grant.
func (t *Tokens) Renew(ctx context.Context, rejected string) (string, error) {
	if err := t.lock(ctx); err != nil {
		return "", err
	}
	defer t.unlock()
	t.loadLocked()
	if t.tok.Access != "" && t.tok.Access != rejected {
		return t.tok.Access, nil
	}
	if t.grant == nil {
		return "", lead.Permanent(http.StatusUnauthorized, "auth: token rejected and it cannot be renewed")
	}
	return t.renewLocked(ctx)
}

// Do runs call with the current access token. When the CRM rejects the token
// (rejected reports it) and it can be renewed, Do renews it once and calls
// again; a second rejection is returned for the caller to classify.
func (t *Tokens) Do(ctx context.Context, call func(access string) (*crm.Response, error), rejected func(*crm.Response) bool) (*crm.Response, error) {
	access, err := t.Get(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := call(access)
	if err != nil || !rejected(resp) || !t.CanRenew() {
		return resp, err
	}
	if access, err = t.Renew(ctx, access); err != nil {
		return nil, err
	}
	return call(access)
}

func (t *Tokens) lock(ctx context.Context) error {
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &lead.SendError{Msg: "auth: waiting for token renewal", Err: ctx.Err()}
	}
}

func (t *Tokens) unlock() { <-t.sem }

func (t *Tokens) storeKey() (crm.TokenStore, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	loaded := t.loaded
	t.loaded = true
	return t.store, t.key, loaded
}

func (t *Tokens) loadLocked() {
	store, key, loaded := t.storeKey()
	if store == nil || loaded {
		return
	}
	raw, err := store.LoadToken(key)
	if err != nil {
		t.log.Warn("loading stored token failed; using the configured one", zap.String("key", key), zap.Error(err))
		return
	}
	if raw == "" {
		return
	}
	var rec record
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.log.Warn("stored token unreadable; using the configured one", zap.String("key", key), zap.Error(err))
		return
	}
	if rec.Seed != t.seed || (rec.Access == "" && rec.Refresh == "") {
		return // obtained with other credentials than the config holds now
	}
	t.tok = rec.Token
}

func (t *Tokens) renewLocked(ctx context.Context) (string, error) {
	nt, err := t.grant(ctx, t.tok)
	if err != nil {
		return "", &AuthError{Err: err}
	}
	if nt.Access == "" {
		return "", &AuthError{Err: lead.Retryable(0, "token endpoint gave no access token", 0)}
	}
	if crm.Recording(ctx) {
		// A preview's token is the documented example: kept for the
		// preview's next requests only, never in t or the store.
		crm.PreviewKeep(ctx, previewKey, nt.Access)
		return nt.Access, nil
	}
	if nt.Refresh == "" {
		nt.Refresh = t.tok.Refresh // not rotated: the old one stays valid
	}
	t.tok = nt
	t.saveLocked()
	return nt.Access, nil
}

func (t *Tokens) saveLocked() {
	t.mu.Lock()
	store, key := t.store, t.key
	t.mu.Unlock()
	if store == nil {
		return
	}
	raw, _ := json.Marshal(record{Seed: t.seed, Token: t.tok})
	if err := store.SaveToken(key, string(raw)); err != nil {
		// The token still works from memory; only a restart would lose it.
		t.log.Warn("saving the renewed token failed; it is kept in memory only", zap.String("key", key), zap.Error(err))
	}
}

// AuthError is a failure to obtain a token (as opposed to the CRM refusing
// a request): callers that tolerate a refused optional call still stop here.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return "auth: " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// answer is a token endpoint's success body (RFC 6749 section 5.1).
type answer struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    json.Number `json:"expires_in"` // seconds; a string from some servers
}

// Exchange posts a grant as a form to a token endpoint and returns the new
// token. describe extracts the server's error message from a body when its
// format is not the standard {"error","error_description"}; it may be nil.
// Network errors, 429 and 5xx are retryable; other refusals are permanent.
func Exchange(ctx context.Context, client *http.Client, tokenURL string, form url.Values, describe func([]byte) string) (Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, lead.Permanent(0, "token request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := crm.Do(client, req)
	if err != nil {
		return Token{}, err
	}
	var ans answer
	parseErr := json.Unmarshal(resp.Body, &ans)
	msg := ErrorMessage(resp.Body)
	if msg == "" && describe != nil {
		msg = describe(resp.Body)
	}
	if resp.Status >= 200 && resp.Status < 300 {
		if parseErr == nil && ans.AccessToken != "" {
			tok := Token{Access: ans.AccessToken, Refresh: ans.RefreshToken}
			if secs, err := ans.ExpiresIn.Int64(); err == nil && secs > 0 {
				tok.Expiry = time.Now().Add(time.Duration(secs) * time.Second)
			}
			return tok, nil
		}
		if msg != "" { // a 200 carrying a refusal
			return Token{}, lead.Permanent(resp.Status, "token endpoint: "+msg)
		}
		// No excerpt: a half-readable token answer may hold a secret.
		return Token{}, &lead.SendError{Status: resp.Status, Msg: "token endpoint: unreadable answer", Err: parseErr}
	}
	if msg == "" {
		msg = crm.Excerpt(resp.Body)
	}
	return Token{}, crm.Classify(resp, "token endpoint: "+msg)
}

// ErrorMessage reads an OAuth error body: {"error","error_description"}, or
// the {"error","message","hint"} some PHP OAuth servers send. "" if neither.
func ErrorMessage(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
		Hint        string `json:"hint"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	parts := []string{e.Error}
	for _, s := range []string{e.Description, e.Message, e.Hint} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// MemoryStore is a crm.TokenStore in memory: for tests, and for callers with
// no durable store.
type MemoryStore struct {
	mu   sync.Mutex
	m    map[string]string
	Fail error // when set, every call fails with it
}

// LoadToken implements crm.TokenStore.
func (s *MemoryStore) LoadToken(key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return "", s.Fail
	}
	return s.m[key], nil
}

// SaveToken implements crm.TokenStore.
func (s *MemoryStore) SaveToken(key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[key] = value
	return nil
}

// Stored decodes what the store holds under key (for tests).
func (s *MemoryStore) Stored(key string) (Token, error) {
	raw, err := s.LoadToken(key)
	if err != nil || raw == "" {
		return Token{}, errors.Join(err, errors.New("nothing stored under "+key))
	}
	var rec record
	err = json.Unmarshal([]byte(raw), &rec)
	return rec.Token, err
}

var _ crm.TokenStore = (*MemoryStore)(nil)
