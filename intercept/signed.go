package intercept

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Marker tokens (docs/capture-protocol.md, "Signed markers"). The server
// bakes one token per rule into the capture script it serves; the script
// copies its rule's token into the marker, so the marker is ready when the
// submit leaves, with no request of its own.
const (
	// MarkerTokenTTL is how long a served token stays valid, at least: a
	// page opened now may submit its form for a day.
	MarkerTokenTTL = 24 * time.Hour
	// markerTokenStep is how often the served tokens change: all tokens
	// served in one hour share one expiry (the end of the hour plus the
	// TTL), so the script's bytes, and its ETag, change once an hour.
	markerTokenStep = time.Hour
	// markerClockSlack is how far another node's clock may run ahead
	// (cluster nodes with one key): past the turn of an hour by its clock
	// it serves the next hour's expiry.
	markerClockSlack = 5 * time.Minute
	markerMACLen     = 16 // bytes of HMAC-SHA256 kept: 22 base64url characters
	// MaxMarkerToken bounds the token a marker may carry.
	MaxMarkerToken = 64
)

// MarkerExpiry is the expiry of the tokens served at now.
func MarkerExpiry(now time.Time) time.Time {
	return now.Truncate(markerTokenStep).Add(markerTokenStep + MarkerTokenTTL)
}

// MarkerSigner signs what decides a capture — the site and the rule the
// marker names — so that a marker cannot be made up offline, carried from
// another site or rule, or kept past its expiry. The key is the store's
// (queue.Store.Secret) or the app's marker_key.
type MarkerSigner struct{ key []byte }

// NewMarkerSigner signs with key (at least 32 bytes).
func NewMarkerSigner(key []byte) (*MarkerSigner, error) {
	if len(key) < 32 {
		return nil, errors.New("marker key shorter than 32 bytes")
	}
	return &MarkerSigner{key: append([]byte(nil), key...)}, nil
}

// Token is "<expiry, unix seconds, base 36>.<base64url of the first 16
// bytes of HMAC-SHA256 over "lp-marker-1", site, rule and expiry>". A nil
// signer gives "".
func (s *MarkerSigner) Token(site, rule string, exp time.Time) string {
	if s == nil {
		return ""
	}
	e := strconv.FormatInt(exp.Unix(), 36)
	return e + "." + s.mac(site, rule, e)
}

func (s *MarkerSigner) mac(site, rule, exp string) string {
	h := hmac.New(sha256.New, s.key)
	for _, p := range []string{"lp-marker-1", strings.ToLower(site), rule, exp} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:markerMACLen])
}

// Errors of Verify, as counted in leadproxy_capture_failures_total
// (marker_unsigned, marker_forged, marker_stale).
var (
	ErrMarkerUnsigned = errors.New("marker: not signed")
	ErrMarkerForged   = errors.New("marker: signature does not match")
	ErrMarkerStale    = errors.New("marker: token expired")
)

// Verify checks that m carries a token this signer made for site and m's
// rule, unexpired at now. A nil signer (no store, no key) verifies nothing.
func (s *MarkerSigner) Verify(m *Marker, site string, now time.Time) error {
	if s == nil || m == nil || m.Token == "" {
		return ErrMarkerUnsigned
	}
	e, mac, ok := strings.Cut(m.Token, ".")
	if !ok || len(e) == 0 || len(e) > 13 || len(mac) != base64.RawURLEncoding.EncodedLen(markerMACLen) {
		return ErrMarkerForged
	}
	exp, err := strconv.ParseInt(e, 36, 64)
	// The canonical form only: "0a" and "a" are one expiry, one token.
	if err != nil || strconv.FormatInt(exp, 36) != e {
		return ErrMarkerForged
	}
	if !hmac.Equal([]byte(mac), []byte(s.mac(site, m.Rule, e))) {
		return ErrMarkerForged
	}
	// A later expiry than any this key's servers would give now was not
	// made by Token at MarkerExpiry (a leaked key or a clock far ahead).
	if now.Unix() >= exp || exp > MarkerExpiry(now.Add(markerClockSlack)).Unix() {
		return ErrMarkerStale
	}
	return nil
}
