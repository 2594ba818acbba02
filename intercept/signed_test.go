package intercept

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testSigner(t testing.TB) *MarkerSigner {
	s, err := NewMarkerSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMarkerExpiry(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 59, 59, 0, time.UTC)
	if got, want := MarkerExpiry(at), time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("expiry of a token served at %s: %s, want %s", at, got, want)
	}
	// Every token served lives at least the TTL, at most an hour more.
	for _, d := range []time.Duration{0, time.Second, 30 * time.Minute, time.Hour - time.Nanosecond} {
		now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC).Add(d)
		if life := MarkerExpiry(now).Sub(now); life <= MarkerTokenTTL || life > MarkerTokenTTL+markerTokenStep {
			t.Errorf("served at %s: lives %s", now, life)
		}
	}
}

func TestMarkerSignature(t *testing.T) {
	s := testSigner(t)
	now := time.Unix(1.8e9, 0)
	tok := s.Token("example.com", "r1", MarkerExpiry(now))
	if len(tok) > MaxMarkerToken {
		t.Fatalf("token of %d bytes", len(tok))
	}
	m := &Marker{V: 1, Rule: "r1", SID: "abcdefgh12345678", Action: "/send", Token: tok}
	if err := s.Verify(m, "Example.com", now); err != nil {
		t.Fatalf("a token the signer gave: %v", err)
	}
	// The path is not signed (the server cannot know where a form posts):
	// the handler checks it against the request's.
	if err := s.Verify(&Marker{Rule: "r1", Action: "/elsewhere", Token: tok}, "example.com", now); err != nil {
		t.Fatalf("another path: %v", err)
	}
	exp, mac, _ := strings.Cut(tok, ".")
	n, _ := strconv.ParseInt(exp, 36, 64)
	other, _ := NewMarkerSigner([]byte("another key, 32 bytes long......"))
	cases := []struct {
		name, rule, token, site string
		at                      time.Time
		want                    error
	}{
		{"unsigned", "r1", "", "example.com", now, ErrMarkerUnsigned},
		{"another rule", "r2", tok, "example.com", now, ErrMarkerForged},
		{"another site", "r1", tok, "evil.example", now, ErrMarkerForged},
		{"another key", "r1", other.Token("example.com", "r1", MarkerExpiry(now)), "example.com", now, ErrMarkerForged},
		{"expiry pushed", "r1", strconv.FormatInt(n+3600, 36) + "." + mac, "example.com", now, ErrMarkerForged},
		{"expiry padded", "r1", "0" + tok, "example.com", now, ErrMarkerForged},
		{"mac cut", "r1", tok[:len(tok)-1], "example.com", now, ErrMarkerForged},
		{"no dot", "r1", "abc", "example.com", now, ErrMarkerForged},
		{"negative expiry", "r1", "-1." + mac, "example.com", now, ErrMarkerForged},
		{"stale", "r1", tok, "example.com", MarkerExpiry(now), ErrMarkerStale},
		{"stale by a second", "r1", s.Token("example.com", "r1", now.Add(-time.Second)), "example.com", now, ErrMarkerStale},
		{"expiry far ahead", "r1", s.Token("example.com", "r1", now.Add(48*time.Hour)), "example.com", now, ErrMarkerStale},
	}
	for _, c := range cases {
		if err := s.Verify(&Marker{Rule: c.rule, Token: c.token}, c.site, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A node whose clock runs a few minutes ahead, at the turn of the hour.
	ahead := s.Token("example.com", "r1", MarkerExpiry(now.Truncate(time.Hour).Add(time.Hour+time.Second)))
	if err := s.Verify(&Marker{Rule: "r1", Token: ahead}, "example.com", now.Truncate(time.Hour).Add(time.Hour-2*time.Minute)); err != nil {
		t.Errorf("a token from a node 2 minutes ahead: %v", err)
	}
	var nilSigner *MarkerSigner
	if nilSigner.Verify(m, "example.com", now) == nil || nilSigner.Token("example.com", "r1", now) != "" {
		t.Error("a nil signer (no store) signs or verifies")
	}
	if _, err := NewMarkerSigner([]byte("short")); err == nil {
		t.Error("a 5-byte key accepted")
	}
}

// FuzzVerifyMarker: any cookie value, parsed and verified, never panics,
// and only the token the signer made for that site and rule verifies.
func FuzzVerifyMarker(f *testing.F) {
	s := testSigner(f)
	now := time.Unix(1.8e9, 0)
	good := s.Token("example.com", "r1", MarkerExpiry(now))
	f.Add(mustEncode(Marker{V: 1, Rule: "r1", SID: "abcdefgh12345678", Action: "/send", Token: good}))
	f.Add(mustEncode(Marker{V: 1, Rule: "r2", SID: "abcdefgh12345678", Action: "", Token: good}))
	f.Add(mustEncode(Marker{V: 1, Rule: "r1", SID: "abcdefgh12345678", Token: "1." + strings.Repeat("A", 22)}))
	f.Add(mustEncode(Marker{V: 1, Rule: "r1", SID: "abcdefgh12345678", Token: strings.Repeat("z", 70)}))
	f.Add("e30")
	f.Fuzz(func(t *testing.T, v string) {
		m, err := ParseMarker(v)
		if err != nil {
			return
		}
		if len(m.Token) > MaxMarkerToken {
			t.Fatalf("token of %d bytes accepted", len(m.Token))
		}
		if s.Verify(m, "example.com", now) == nil && !(m.Rule == "r1" && m.Token == good) {
			t.Fatalf("verified a marker the signer never made: %+v", m)
		}
	})
}
