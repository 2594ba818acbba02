package visit

import (
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// CookieName is Roistat's visit cookie: a site's PHP that sends
// $_COOKIE['roistat_visit'] as the API's roistat parameter keeps working.
const CookieName = "roistat_visit"

// An id is a decimal number, as Roistat's are: Unix milliseconds shifted
// left 16 bits, plus a per-process sequence, so ids sort by time (the
// store's keys and retention rely on it) and fit a signed 64-bit integer.
const seqBits = 16

var seq atomic.Uint64

func init() {
	var b [8]byte
	rand.Read(b[:])
	seq.Store(binary.LittleEndian.Uint64(b[:]))
}

// NewID returns a new visit id for now.
func NewID(now time.Time) string {
	n := uint64(now.UnixMilli())<<seqBits | seq.Add(1)&(1<<seqBits-1)
	return strconv.FormatUint(n, 10)
}

// ValidID reports whether s has a visit id's form: 1 to 19 decimal digits
// (Roistat's own ids included).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// idTime returns when one of our ids was made; ok is false for an id not
// made by NewID (too small to carry a time: Roistat's own, say).
func idTime(id string) (n uint64, at time.Time, ok bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n>>seqBits < 1e12 || n>>seqBits > 1e14 {
		return 0, time.Time{}, false
	}
	return n, time.UnixMilli(int64(n >> seqBits)), true
}

// ReadID returns the roistat_visit cookie's value when it is a valid id,
// else "". It reads the Cookie headers without parsing every cookie, as
// it runs on every request.
func ReadID(r *http.Request) string {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if v, ok := strings.CutPrefix(part, CookieName+"="); ok {
				v = strings.Trim(v, `"`)
				if ValidID(v) {
					return v
				}
				return ""
			}
		}
	}
	return ""
}

// SetCookie adds the visit cookie to a response: host-only, Path=/,
// SameSite=Lax, Secure on https, readable by the page's scripts (as
// Roistat's is, which sites read in JavaScript too).
func SetCookie(h http.Header, id string, maxAge time.Duration, secure bool) {
	c := &http.Cookie{Name: CookieName, Value: id, Path: "/", MaxAge: int(maxAge / time.Second),
		SameSite: http.SameSiteLaxMode, Secure: secure}
	h.Add("Set-Cookie", c.String())
}
