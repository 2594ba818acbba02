package uon

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> uon {
//		key      <api key>
//		source   <source name>
//		timezone <IANA zone>
//		base_url | rate | timeout ...
//	}
func (u *UON) Spec() crm.Spec {
	return crm.Spec{Type: "uon", Common: &u.Common, Options: []crm.Option{
		{Name: "key", Kind: crm.SecretText, Target: &u.Key, Into: &u.key, Required: true, Doc: "the U-ON API key"},
		{Name: "source", Target: &u.Source, Default: "U-ON's own"},
		{Name: "timezone", Target: &u.Timezone, Default: "Europe/Moscow"},
		{Name: "base_url", Default: DefaultBaseURL},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (u *UON) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return u.Spec().Parse(d) }
