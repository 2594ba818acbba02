package amocrm

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// UnmarshalCaddyfile parses
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
func (a *AmoCRM) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // type name
	for d.NextBlock(0) {
		if ok, err := a.UnmarshalOption(d); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch d.Val() {
		case "token":
			if err := crm.SingleArg(d, &a.Token); err != nil {
				return err
			}
		case "pipeline_id":
			if err := crm.IDArg(d, &a.PipelineID, "an amoCRM id"); err != nil {
				return err
			}
		case "status_id":
			if err := crm.IDArg(d, &a.StatusID, "an amoCRM id"); err != nil {
				return err
			}
		case "responsible_user_id":
			if err := crm.IDArg(d, &a.ResponsibleUserID, "an amoCRM id"); err != nil {
				return err
			}
		case "tags":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("tags: missing value")
			}
			// "tags a b" and "tags "a, b"" both read as two tags.
			for _, arg := range args {
				a.Tags = append(a.Tags, strings.Split(arg, ",")...)
			}
		default:
			return d.Errf("amocrm: unknown option %q (want base_url, token, pipeline_id, status_id, responsible_user_id, tags, rate, timeout)", d.Val())
		}
	}
	return nil
}
