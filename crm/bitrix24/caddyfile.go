package bitrix24

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// UnmarshalCaddyfile parses
//
//	destination <name> bitrix24 [<webhook_url>] {
//		webhook_url https://<portal>/rest/<user>/<code>/
//		entity      lead|deal
//		field       <NAME> <value>    # any number
//		base_url | rate | timeout ...
//	}
func (b *Bitrix24) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // type name
	if d.NextArg() {
		b.WebhookURL = d.Val()
	}
	for d.NextBlock(0) {
		if ok, err := b.UnmarshalOption(d); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch d.Val() {
		case "webhook_url":
			if err := crm.SingleArg(d, &b.WebhookURL); err != nil {
				return err
			}
		case "entity":
			if err := crm.SingleArg(d, &b.Entity); err != nil {
				return err
			}
			e := strings.ToLower(b.Entity)
			if e != EntityLead && e != EntityDeal {
				return d.Errf("entity: %q: want lead or deal", b.Entity)
			}
			b.Entity = e
		case "field":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("field: want <NAME> <value>, like field CATEGORY_ID 3")
			}
			name := strings.ToUpper(args[0])
			if !fieldName.MatchString(name) {
				return d.Errf("field: %q is not a Bitrix24 field name (like UF_CRM_1425989455 or CATEGORY_ID)", args[0])
			}
			if b.Fields == nil {
				b.Fields = map[string]string{}
			}
			b.Fields[name] = args[1]
		default:
			return d.Errf("bitrix24: unknown option %q (want webhook_url, entity, field, base_url, rate, timeout)", d.Val())
		}
	}
	return nil
}
