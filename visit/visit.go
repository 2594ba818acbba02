// Package visit holds the visit record leadproxy keeps for every visitor it
// sees arrive: the first landing URL, the referrer, the UTM tags and click
// ids, and the source class derived from them (source.go). The proxy
// records a visit on the first navigation without a visit cookie
// (Recorder), sets a first-party cookie in Roistat's roistat_visit format
// (cookie.go), and keeps the record in a bounded store (Store; DB is the
// nutsdb one). No IP address and no user agent are kept.
package visit

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Bounds of one record, so a visit stays under about 3 KB.
const (
	MaxURL   = 1024 // landing and referrer, cut on a rune boundary
	MaxValue = 200  // one UTM tag or click id
)

// UTMKeys are the tags read from the landing URL (utm_<key>), in order.
var UTMKeys = []string{"source", "medium", "campaign", "term", "content"}

// ClickKeys are the ad networks' click ids read from the landing URL.
var ClickKeys = []string{"yclid", "gclid", "fbclid"}

// Visit is one visitor's arrival.
type Visit struct {
	ID       string            `json:"id"`
	At       time.Time         `json:"at"`
	Site     string            `json:"site,omitempty"`
	Landing  string            `json:"landing,omitempty"`
	Referrer string            `json:"referrer,omitempty"`
	UTM      map[string]string `json:"utm,omitempty"`    // source, medium, campaign, term, content
	Clicks   map[string]string `json:"clicks,omitempty"` // yclid, gclid, fbclid
	Source   string            `json:"source"`           // the class: ads, organic, social, referral, direct, email
}

// FromRequest builds the visit of a navigation: the landing URL as the
// visitor asked for it, the Referer, the tags of its query and the source.
func FromRequest(r *http.Request, id string, now time.Time) *Visit {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := strings.ToLower(r.Host)
	v := &Visit{
		ID:       id,
		At:       now.UTC(),
		Site:     siteOf(host),
		Landing:  Clamp(scheme+"://"+host+r.URL.RequestURI(), MaxURL),
		Referrer: Clamp(r.Referer(), MaxURL),
	}
	v.UTM, v.Clicks = Tags(r.URL.Query())
	v.Source = Classify(v.Site, v.Referrer, v.UTM, v.Clicks)
	return v
}

// Tags reads the UTM tags and click ids of a landing URL's query.
func Tags(q url.Values) (utm, clicks map[string]string) {
	for _, k := range UTMKeys {
		if s := strings.TrimSpace(q.Get("utm_" + k)); s != "" {
			utm = put(utm, k, Clamp(s, MaxValue))
		}
	}
	for _, k := range ClickKeys {
		if s := strings.TrimSpace(q.Get(k)); s != "" {
			clicks = put(clicks, k, Clamp(s, MaxValue))
		}
	}
	return utm, clicks
}

func put(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

func siteOf(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// Clamp cuts s to at most n bytes on a rune boundary.
func Clamp(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
