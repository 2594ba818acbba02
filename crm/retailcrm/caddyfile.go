package retailcrm

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> retailcrm {
//		base_url https://<account>.retailcrm.ru
//		api_key  <key>
//		site     <store code>
//		rate | timeout ...
//	}
func (r *RetailCRM) Spec() crm.Spec {
	return crm.Spec{Type: "retailcrm", Common: &r.Common, Options: []crm.Option{
		{Name: "base_url", Required: true, Doc: "https://<account>.retailcrm.ru"},
		{Name: "api_key", Kind: crm.SecretText, Target: &r.APIKey, Into: &r.apiKey, Required: true, Doc: "an API key with the order create and read scopes"},
		{Name: "site", Kind: crm.SecretText, Target: &r.Site, Into: &r.site, Required: true, Doc: "the store's symbolic code"},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (r *RetailCRM) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return r.Spec().Parse(d) }
