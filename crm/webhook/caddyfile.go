package webhook

import (
	"errors"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> webhook [<url>] {
//		url     <url>
//		secret  whsec_...
//		header  <name> <value>
//		base_url | rate | timeout ...
//	}
func (w *Webhook) Spec() crm.Spec {
	return crm.Spec{Type: "webhook", Common: &w.Common, Options: []crm.Option{
		{Name: "url", Kind: crm.SecretText, Target: &w.URL, Into: &w.url, Inline: true, Doc: "the receiver's http(s) URL"},
		{Name: "secret", Kind: crm.SecretText, Target: &w.Secret, Into: &w.secret, Required: true,
			Doc: `"whsec_" + base64 key, as Standard Webhooks receivers verify it; use a placeholder: secret {env.LEADPROXY_WEBHOOK_SECRET}`},
		{Name: "header", Kind: crm.Pairs, Target: &w.Headers, Shape: "<name> <value>", Default: "none"},
	}, Check: func(has func(string) bool) error {
		if !has("url") && !has("base_url") {
			return errors.New("url is required")
		}
		return nil
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (w *Webhook) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return w.Spec().Parse(d) }
