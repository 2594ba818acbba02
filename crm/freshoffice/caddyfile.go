package freshoffice

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> freshoffice {
//		token     <token>
//		manager   <user id>
//		deal_type <type id>
//		status    <status id>
//		company   <contractor id>
//		timezone  <IANA zone>
//		base_url | rate | timeout ...
//	}
func (f *FreshOffice) Spec() crm.Spec {
	return crm.Spec{Type: "freshoffice", Common: &f.Common, IDName: "a FreshOffice id", Options: []crm.Option{
		{Name: "token", Kind: crm.SecretText, Target: &f.Token, Into: &f.token, Required: true, Doc: "the API 2.0 bearer token"},
		{Name: "manager", Kind: crm.ID, Target: &f.Manager, Required: true, Doc: "the user_id deals are assigned to"},
		{Name: "deal_type", Kind: crm.ID, Target: &f.DealType, Default: "1"},
		{Name: "status", Kind: crm.ID, Target: &f.Status, Default: "1"},
		{Name: "company", Kind: crm.ID, Target: &f.Company, Default: "a contractor per lead"},
		{Name: "timezone", Target: &f.Timezone, Default: "Europe/Moscow"},
		{Name: "base_url", Default: DefaultBaseURL},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (f *FreshOffice) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return f.Spec().Parse(d) }
