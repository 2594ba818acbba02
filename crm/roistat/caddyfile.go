package roistat

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> roistat {
//		key   <integration key>
//		param <name> <value>
//		base_url | rate | timeout ...
//	}
func (r *Roistat) Spec() crm.Spec {
	return crm.Spec{Type: "roistat", Common: &r.Common, Options: []crm.Option{
		{Name: "key", Kind: crm.SecretText, Target: &r.Key, Into: &r.key, Required: true, Doc: "the project's key for CRM integration"},
		{Name: "param", Kind: crm.Pairs, Target: &r.Params, Default: "none", Shape: "<name> <value>",
			Check: func(k string) (string, error) { return k, checkParam(k) }},
		{Name: "base_url", Default: DefaultBaseURL},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (r *Roistat) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return r.Spec().Parse(d) }
