package crm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/lead"
)

// IDArg reads the one argument of the current option as a positive numeric
// id (pipeline, manager, status...). what names the id in the error, like
// "an amoCRM id".
func IDArg[T ~int | ~int64](d *caddyfile.Dispenser, dst *T, what string) error {
	opt, s := d.Val(), ""
	if err := SingleArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || int64(T(n)) != n {
		return d.Errf("%s: %q is not %s (a positive number)", opt, s, what)
	}
	*dst = T(n)
	return nil
}

// UTMKeys are the utm parameters the capture script records on a visit.
var UTMKeys = []string{"source", "medium", "campaign", "term", "content"}

// CheckUTMKey accepts the utm keys the capture script records.
func CheckUTMKey(key string) error {
	for _, k := range UTMKeys {
		if k == key {
			return nil
		}
	}
	return fmt.Errorf("%q is not a utm key (want %s)", key, strings.Join(UTMKeys, ", "))
}

// PlausibleEmail accepts a bare address with a dotted domain: what CRMs'
// validators take. Destinations put anything else into the comment, so a
// typo in the visitor's email does not make the whole lead fail.
func PlausibleEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return false
	}
	_, domain, _ := strings.Cut(s, "@")
	return strings.Contains(strings.Trim(domain, "."), ".")
}

// JSONText reads a JSON string or number as text; other JSON as a short
// excerpt. CRMs put error messages in either.
func JSONText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return Excerpt(raw)
}

// Redact replaces every secret (as given, query-escaped and path-escaped)
// in err's message with ***, keeping whether it is permanent and its
// Retry-After. CRMs that take the key in the URL need it: net/http puts the
// URL into its errors.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			clean = strings.ReplaceAll(clean, form, "***")
		}
	}
	if clean == msg {
		return err
	}
	out := &lead.SendError{Msg: clean}
	var se *lead.SendError
	if errors.As(err, &se) {
		out.Permanent, out.RetryAfter = se.Permanent, se.RetryAfter
	}
	return out
}
