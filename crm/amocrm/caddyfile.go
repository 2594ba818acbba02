package amocrm

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> amocrm {
//		base_url            https://<subdomain>.amocrm.ru
//		token               {env.AMOCRM_TOKEN}
//		pipeline_id         <id>
//		status_id           <id>
//		responsible_user_id <id>
//		tags                <tag>...
//		rate | timeout ...
//	}
func (a *AmoCRM) Spec() crm.Spec {
	return crm.Spec{Type: "amocrm", Common: &a.Common, IDName: "an amoCRM id", Options: []crm.Option{
		{Name: "base_url", Required: true, Doc: "https://<subdomain>.amocrm.ru or https://<subdomain>.kommo.com"},
		{Name: "token", Kind: crm.SecretText, Target: &a.Token, Into: &a.token, Required: true, Doc: "a long-lived token of a private integration"},
		{Name: "pipeline_id", Kind: crm.ID, Target: &a.PipelineID, Default: "the main pipeline"},
		{Name: "status_id", Kind: crm.ID, Target: &a.StatusID, Default: "the pipeline's first"},
		{Name: "responsible_user_id", Kind: crm.ID, Target: &a.ResponsibleUserID, Default: "the token's user"},
		{Name: "tags", Kind: crm.List, Target: &a.Tags, Default: "none"},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (a *AmoCRM) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return a.Spec().Parse(d) }
