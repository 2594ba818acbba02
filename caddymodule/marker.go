package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/intercept"
)

// Signed markers (docs/capture-protocol.md, "Signed markers"): the script
// is served with a token per rule, signed for the site it is served to;
// a marker captures only with a valid one.

// servedScript is the capture script as served to one site this hour.
type servedScript struct {
	body     []byte
	etag     string
	unsigned bool // no key yet (no store): not to be cached anywhere
}

// scriptCache keeps the script per site for the current token expiry and
// key; a new hour or key starts it afresh. Past maxScriptSites (made-up
// Host headers on a catch-all site) a script is built per request.
type scriptCache struct {
	mu     sync.Mutex
	exp    int64
	signer *intercept.MarkerSigner
	bySite map[string]*servedScript
}

const maxScriptSites = 64

// scriptFor returns the script for site at now.
func (hd *Handler) scriptFor(site string, now time.Time) (*servedScript, error) {
	signer := hd.app.markerSigner()
	exp := intercept.MarkerExpiry(now)
	c := hd.scripts
	c.mu.Lock()
	if c.exp != exp.Unix() || c.signer != signer {
		c.exp, c.signer, c.bySite = exp.Unix(), signer, map[string]*servedScript{}
	}
	s := c.bySite[site]
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	cfg := hd.scriptConfig
	cfg.Token = func(rule string) string { return signer.Token(site, rule, exp) }
	body, etag, err := intercept.BuildScript(cfg)
	if err != nil {
		return nil, err
	}
	s = &servedScript{body: body, etag: etag, unsigned: signer == nil}
	if signer != nil { // without a key (no store yet) build it again next time
		c.mu.Lock()
		if c.exp == exp.Unix() && c.signer == signer && len(c.bySite) < maxScriptSites {
			c.bySite[site] = s
		}
		c.mu.Unlock()
	}
	return s, nil
}

// verifyMarker keeps a marker only when it carries the key's signature of
// this site and its rule, unexpired; any other is counted and captures
// nothing (it is left alone, as a marker for another path is).
func (hd *Handler) verifyMarker(r *http.Request, m *intercept.Marker) *intercept.Marker {
	if m == nil {
		return nil
	}
	err := hd.app.markerSigner().Verify(m, siteOf(r), time.Now())
	switch {
	case err == nil:
		return m
	case errors.Is(err, intercept.ErrMarkerStale):
		countCaptureFailure("marker_stale")
	case errors.Is(err, intercept.ErrMarkerForged):
		countCaptureFailure("marker_forged")
	default:
		countCaptureFailure("marker_unsigned")
	}
	hd.logger.Debug("marker cookie ignored", zap.Error(err))
	return nil
}

// markerSigner signs and checks marker tokens: with marker_key when the
// config gives one, else with the store's key; nil when neither is there
// (no store yet), and then no marker captures.
func (a *App) markerSigner() *intercept.MarkerSigner {
	if a == nil {
		return nil
	}
	if a.signer != nil {
		return a.signer
	}
	if p := a.pooledOrCurrent(); p != nil {
		return p.signer
	}
	return nil
}

// provisionMarkerKey reads marker_key: a placeholder (the config never
// holds the key) resolving to at least 32 bytes.
func (a *App) provisionMarkerKey() error {
	if a.MarkerKey == "" {
		return nil
	}
	if !strings.Contains(a.MarkerKey, "{") {
		return errors.New("marker_key: give the key through a placeholder, like {env.LEADPROXY_MARKER_KEY}, so the config never holds it")
	}
	key, err := crm.ResolveValue(a.MarkerKey)
	if err != nil {
		return fmt.Errorf("marker_key: %v", err)
	}
	if len(key) < 32 {
		return fmt.Errorf("marker_key: %s gives %d bytes, want at least 32 (e.g. openssl rand -base64 32)", a.MarkerKey, len(key))
	}
	a.signer, err = intercept.NewMarkerSigner([]byte(key))
	return err
}
