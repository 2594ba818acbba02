package crm

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
)

// AccountKey builds a destination's lead.Accounted key: the account a
// vendor's rate limit counts, so that two destinations on one account (and
// every node of a cluster) share one limit. It is the type, the API's host
// (host:port, lower case) and, where one host serves many accounts, the
// parts that tell them apart (a token, a key, a login). Those parts enter
// only as a short SHA-256 digest: the key is shown and logged, a secret
// must not be.
func AccountKey(typ, host string, parts ...string) string {
	k := typ + ":" + strings.ToLower(host)
	if len(parts) > 0 {
		h := sha256.New()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		k += ":" + hex.EncodeToString(h.Sum(nil)[:8])
	}
	return k
}

// HostOf is the host (with its port, if any) of an absolute URL, or "".
func HostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
