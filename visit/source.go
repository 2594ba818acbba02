package visit

import (
	"net/url"
	"strings"
)

// Source classes, as the report groups them. The rules, in order (the
// first that applies wins), are documented in docs/visits.md.
const (
	SourceAds      = "ads"
	SourceOrganic  = "organic"
	SourceSocial   = "social"
	SourceReferral = "referral"
	SourceDirect   = "direct"
	SourceEmail    = "email"
)

// Sources lists the classes.
var Sources = []string{SourceAds, SourceOrganic, SourceSocial, SourceReferral, SourceDirect, SourceEmail}

var (
	emailMediums  = set("email", "e-mail", "newsletter", "mail", "mailing", "рассылка")
	adMediums     = set("cpc", "ppc", "cpm", "cpa", "cpv", "cpp", "paid", "paidsearch", "paid_search", "paid-search", "paid_social", "paidsocial", "display", "banner", "ads", "ad", "retargeting", "remarketing", "context", "search_ads")
	socialMediums = set("social", "sm", "smm", "social-network", "social_network", "social-media", "social_media")
	organicMedium = set("organic", "seo")
)

// Referrer hosts by class: a host matches an entry equal to it or ending in
// "." + entry; entries ending in "." match any top-level domain (google.).
var (
	searchHosts = []string{"google.", "yandex.", "ya.ru", "bing.com", "duckduckgo.com", "yahoo.com", "search.yahoo.com",
		"go.mail.ru", "nova.rambler.ru", "baidu.com", "ecosia.org", "search.brave.com", "startpage.com", "qwant.com", "sogou.com", "naver.com", "seznam.cz"}
	socialHosts = []string{"vk.com", "vk.ru", "m.vk.com", "ok.ru", "facebook.com", "fb.com", "l.facebook.com", "instagram.com",
		"t.me", "telegram.org", "web.telegram.org", "twitter.com", "x.com", "t.co", "linkedin.com", "lnkd.in", "youtube.com",
		"tiktok.com", "dzen.ru", "zen.yandex.ru", "pinterest.", "reddit.com", "threads.net", "whatsapp.com", "wa.me", "my.mail.ru"}
	mailHosts = []string{"mail.google.com", "e.mail.ru", "mail.yandex.ru", "mail.yandex.com", "outlook.live.com", "outlook.office.com", "mail.rambler.ru", "mail.yahoo.com"}
)

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// Classify derives the source class from the landing's tags and the
// referrer. site is the visited host: a referrer on it is internal (direct).
func Classify(site, referrer string, utm, clicks map[string]string) string {
	medium := strings.ToLower(utm["medium"])
	switch {
	case emailMediums[medium]:
		return SourceEmail
	case len(clicks) > 0 || adMediums[medium]:
		return SourceAds
	case socialMediums[medium]:
		return SourceSocial
	case organicMedium[medium]:
		return SourceOrganic
	case utm["source"] != "" || medium != "":
		// Tagged but with a medium of the site's own: by the tagged source.
		if c := hostClass(strings.ToLower(utm["source"])); c != "" && c != SourceOrganic {
			return c
		}
		return SourceReferral
	}
	host := referrerHost(referrer)
	if host == "" || host == site || strings.TrimPrefix(host, "www.") == strings.TrimPrefix(site, "www.") {
		return SourceDirect
	}
	if c := hostClass(host); c != "" {
		return c
	}
	return SourceReferral
}

// hostClass is the class of a referrer host (or a utm_source naming one).
func hostClass(host string) string {
	switch {
	case host == "":
		return ""
	case matchHost(host, mailHosts):
		return SourceEmail
	case matchHost(host, socialHosts):
		return SourceSocial
	case matchHost(host, searchHosts):
		return SourceOrganic
	}
	return ""
}

func matchHost(host string, list []string) bool {
	for _, e := range list {
		if strings.HasSuffix(e, ".") {
			// google. matches google.com, www.google.co.uk, google.ru
			if strings.HasPrefix(host, e) || strings.Contains(host, "."+e) {
				return true
			}
			continue
		}
		if host == e || strings.HasSuffix(host, "."+e) {
			return true
		}
	}
	return false
}

func referrerHost(ref string) string {
	if ref == "" {
		return ""
	}
	u, err := url.Parse(ref)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}
