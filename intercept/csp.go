package intercept

// CSP nonce parsing: the nonce the injected tag needs, from a
// Content-Security-Policy header or <meta http-equiv>.

import "strings"

// cspNonce finds the nonce our script needs under the given policies: the
// first 'nonce-…' of the directive that governs script elements.
func cspNonce(headers []string) string {
	for _, header := range headers {
		for _, policy := range strings.Split(header, ",") {
			if n := policyNonce(policy); n != "" {
				return n
			}
		}
	}
	return ""
}

func policyNonce(policy string) string {
	// script-src-elem governs <script src>, then script-src, then default-src;
	// a repeated directive is ignored, as browsers do.
	order := [...]string{"script-src-elem", "script-src", "default-src"}
	var sources [len(order)][]string
	var seen [len(order)]bool
	for _, d := range strings.Split(policy, ";") {
		fields := strings.Fields(d)
		if len(fields) == 0 {
			continue
		}
		for i, name := range order {
			if !seen[i] && strings.EqualFold(fields[0], name) {
				sources[i], seen[i] = fields[1:], true
			}
		}
	}
	const prefix = "'nonce-"
	for i := range order {
		if !seen[i] {
			continue
		}
		for _, s := range sources[i] {
			if len(s) > len(prefix)+1 && strings.EqualFold(s[:len(prefix)], prefix) && s[len(s)-1] == '\'' {
				if v := s[len(prefix) : len(s)-1]; isBase64Value(v) {
					return v
				}
			}
		}
		return "" // the governing directive has no nonce
	}
	return ""
}

// isBase64Value is CSP's base64-value grammar (base64 or base64url).
func isBase64Value(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '+' || c == '/' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return s != ""
}
