package bitrix24

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
//
//	destination <name> bitrix24 [<webhook_url>] {
//		webhook_url https://<portal>/rest/<user>/<code>/
//		entity      lead|deal
//		field       <NAME> <value>    # any number
//		base_url | rate | timeout ...
//	}
func (b *Bitrix24) Spec() crm.Spec {
	return crm.Spec{Type: "bitrix24", Common: &b.Common, Options: []crm.Option{
		{Name: "webhook_url", Kind: crm.SecretText, Target: &b.WebhookURL, Into: &b.webhook, Required: true, Inline: true,
			Doc: "https://<portal>/rest/<user>/<code>/"},
		{Name: "entity", Target: &b.Entity, Required: true, Doc: "lead or deal", Check: checkEntity},
		{Name: "field", Kind: crm.Pairs, Target: &b.Fields, Default: "none", Shape: "<NAME> <value>, like field CATEGORY_ID 3", Check: checkField},
		{Name: "base_url", Default: "the webhook's address"},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (b *Bitrix24) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return b.Spec().Parse(d) }

func checkEntity(v string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(v))
	if e != EntityLead && e != EntityDeal {
		return "", fmt.Errorf("%q: want lead or deal", v)
	}
	return e, nil
}

func checkField(k string) (string, error) {
	name := strings.ToUpper(k)
	if !fieldName.MatchString(name) {
		return "", fmt.Errorf("%q is not a Bitrix24 field name (like UF_CRM_1425989455 or CATEGORY_ID)", k)
	}
	return name, nil
}
