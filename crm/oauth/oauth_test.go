package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

// counting returns a grant that issues t1, t2, ... with no refresh token
// (as a server without rotation does) and counts its calls.
func counting(n *atomic.Int32) Grant {
	return func(context.Context, Token) (Token, error) {
		return Token{Access: fmt.Sprintf("t%d", n.Add(1))}, nil
	}
}

func stored(t *testing.T, seed string, tok Token) *MemoryStore {
	t.Helper()
	raw, _ := json.Marshal(record{Seed: seed, Token: tok})
	s := &MemoryStore{}
	if err := s.SaveToken("k", string(raw)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoredTokenOnlyForSameCredentials(t *testing.T) {
	ctx := context.Background()
	store := stored(t, Seed("a"), Token{Access: "from-store", Refresh: "r-store"})
	var n atomic.Int32

	same := New(Token{Access: "from-config"}, Seed("a"), counting(&n), nil)
	same.SetStore("k", store)
	if got, err := same.Get(ctx); err != nil || got != "from-store" {
		t.Errorf("same credentials: %q, %v", got, err)
	}

	// The config now holds other credentials: the stored token is theirs, not ours.
	changed := New(Token{Access: "from-config"}, Seed("b"), counting(&n), nil)
	changed.SetStore("k", store)
	if got, err := changed.Get(ctx); err != nil || got != "from-config" {
		t.Errorf("changed credentials: %q, %v", got, err)
	}
	if n.Load() != 0 {
		t.Errorf("%d grants, want none", n.Load())
	}
}

func TestRenewOnlyTheRejectedToken(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int32
	tk := New(Token{Refresh: "r0"}, "s", counting(&n), nil)
	store := &MemoryStore{}
	tk.SetStore("k", store)
	if got, _ := tk.Get(ctx); got != "t1" {
		t.Fatalf("Get = %q", got)
	}
	// Another Send was rejected with a token already replaced: no new grant.
	if got, _ := tk.Renew(ctx, "stale"); got != "t1" || n.Load() != 1 {
		t.Errorf("Renew(stale) = %q after %d grants", got, n.Load())
	}
	if got, _ := tk.Renew(ctx, "t1"); got != "t2" || n.Load() != 2 {
		t.Errorf("Renew(t1) = %q after %d grants", got, n.Load())
	}
	// The grant gave no refresh token: the old one is kept, and stored.
	if tok, err := store.Stored("k"); err != nil || tok.Access != "t2" || tok.Refresh != "r0" {
		t.Errorf("stored %+v, %v", tok, err)
	}
}

func TestExpiredTokenRenewedBeforeUse(t *testing.T) {
	var n atomic.Int32
	tk := New(Token{Access: "old", Expiry: time.Now().Add(Skew / 2)}, "s", counting(&n), nil)
	if got, _ := tk.Get(context.Background()); got != "t1" {
		t.Errorf("Get = %q, want a renewed token", got)
	}
	fresh := New(Token{Access: "fresh", Expiry: time.Now().Add(2 * Skew)}, "s", counting(&n), nil)
	if got, _ := fresh.Get(context.Background()); got != "fresh" {
		t.Errorf("Get = %q, want the unexpired token", got)
	}
}

func TestWithoutGrant(t *testing.T) {
	ctx := context.Background()
	tk := New(Token{Access: "static"}, "s", nil, nil)
	if got, err := tk.Get(ctx); got != "static" || err != nil {
		t.Errorf("Get = %q, %v", got, err)
	}
	if _, err := tk.Renew(ctx, "static"); !lead.IsPermanent(err) {
		t.Errorf("Renew: %v", err)
	}
	calls := 0
	resp, err := tk.Do(ctx, func(string) (*crm.Response, error) {
		calls++
		return &crm.Response{Status: 401}, nil
	}, func(r *crm.Response) bool { return r.Status == 401 })
	if err != nil || resp.Status != 401 || calls != 1 {
		t.Errorf("Do: %v, %v after %d calls; want the 401 back for the caller to classify", resp, err, calls)
	}
	if _, err := New(Token{}, "s", nil, nil).Get(ctx); !lead.IsPermanent(err) {
		t.Errorf("no token at all: %v", err)
	}
}

// A Send waiting behind a slow renewal gives up with its context.
func TestWaitHonoursContext(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	tk := New(Token{}, "s", func(context.Context, Token) (Token, error) {
		close(entered)
		<-release
		return Token{Access: "late"}, nil
	}, nil)
	done := make(chan string)
	go func() {
		got, _ := tk.Get(context.Background())
		done <- got
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tk.Get(ctx)
	if err == nil || lead.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("waiting Get: %v", err)
	}
	close(release)
	if got := <-done; got != "late" {
		t.Errorf("renewing Get = %q", got)
	}
}

func TestFailingStore(t *testing.T) {
	var n atomic.Int32
	tk := New(Token{Refresh: "r"}, "s", counting(&n), nil)
	tk.SetStore("k", &MemoryStore{Fail: errors.New("disk full")})
	ctx := context.Background()
	if got, err := tk.Get(ctx); got != "t1" || err != nil {
		t.Errorf("Get = %q, %v", got, err)
	}
	if got, err := tk.Get(ctx); got != "t1" || err != nil || n.Load() != 1 {
		t.Errorf("second Get = %q, %v after %d grants; the token must live on in memory", got, err, n.Load())
	}
}

func TestExchange(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		body      string
		permanent bool
		wantErr   string // "" for success
		expiry    bool
	}{
		{"standard", 200, `{"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"bearer"}`, false, "", true},
		{"expires_in as string", 200, `{"access_token":"a","expires_in":"3600"}`, false, "", true},
		{"no expires_in", 200, `{"access_token":"a","instance_url":"https://x"}`, false, "", false},
		{"refusal in a 200", 200, `{"error":"invalid_grant","error_description":"expired access/refresh token"}`, true, "HTTP 200: token endpoint: invalid_grant: expired access/refresh token", false},
		{"league style", 401, `{"error":"invalid_credentials","message":"The user credentials were incorrect.","hint":""}`, true, "HTTP 401: token endpoint: invalid_credentials: The user credentials were incorrect.", false},
		{"envelope via describe", 422, `{"meta":{"status":422},"described":"bad login"}`, true, "token endpoint: bad login", false},
		{"unavailable", 503, `<h1>down</h1>`, false, "HTTP 503: token endpoint: down", false},
		{"unreadable", 200, `{"access_token": 12345}`, false, "token endpoint: unreadable answer", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var form url.Values
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type %q", ct)
				}
				b, _ := io.ReadAll(r.Body)
				form, _ = url.ParseQuery(string(b))
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			describe := func(b []byte) string {
				var x struct{ Described string }
				json.Unmarshal(b, &x)
				return x.Described
			}
			tok, err := Exchange(context.Background(), crm.NewClient(5*time.Second), srv.URL, url.Values{"grant_type": {"password"}, "username": {"u"}}, describe)
			if form.Get("grant_type") != "password" || form.Get("username") != "u" {
				t.Errorf("form sent: %v", form)
			}
			if c.wantErr == "" {
				if err != nil || tok.Access != "a" || tok.Expiry.IsZero() == c.expiry {
					t.Errorf("got %+v, %v", tok, err)
				}
				return
			}
			if err == nil || lead.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("got %v (permanent=%v), want %q permanent=%v", err, lead.IsPermanent(err), c.wantErr, c.permanent)
			}
			if strings.Contains(err.Error(), "12345") {
				t.Error("an unreadable token answer was echoed into the error")
			}
		})
	}
}
