package visit

import "strings"

// crawlerMarks are substrings of the user agents of crawlers, link
// previewers and HTTP libraries (lower case). Most crawlers name
// themselves with "bot", "crawl" or "spider".
var crawlerMarks = []string{
	"bot", "crawl", "spider", "slurp", "mediapartners", "facebookexternalhit", "facebookcatalog",
	"yandex.com/bots", "yandexmetrika", "lighthouse", "pagespeed", "pingdom", "uptime", "monitor",
	"curl/", "wget/", "python-requests", "python-urllib", "aiohttp", "go-http-client", "java/",
	"okhttp", "libwww", "httpclient", "axios/", "node-fetch", "scrapy", "headlesschrome/ptst",
	"preview", "embedly", "vkshare", "whatsapp", "telegram", "skypeuripreview", "discord",
}

// IsBot reports whether a user agent is a crawler's (or missing: browsers
// always send one). Visits of bots are not recorded.
func IsBot(ua string) bool {
	if ua == "" {
		return true
	}
	lower := strings.ToLower(ua)
	for _, m := range crawlerMarks {
		if strings.Contains(lower, m) {
			return true
		}
	}
	return false
}
