package moysklad

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> moysklad {
//		token        <token>
//		organization <uuid>
//		store        <uuid>
//		base_url | rate | timeout ...
//	}
func (m *MoySklad) Spec() crm.Spec {
	return crm.Spec{Type: "moysklad", Common: &m.Common, Options: []crm.Option{
		{Name: "token", Kind: crm.SecretText, Target: &m.Token, Into: &m.token, Required: true, Doc: "an access token"},
		{Name: "organization", Kind: crm.SecretText, Target: &m.Organization, Into: &m.organization, Required: true, Doc: "the UUID of the legal entity"},
		{Name: "store", Kind: crm.SecretText, Target: &m.Store, Into: &m.store, Default: "none"},
		{Name: "base_url", Default: DefaultBaseURL},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (m *MoySklad) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return m.Spec().Parse(d) }
