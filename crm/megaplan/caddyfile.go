package megaplan

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// UnmarshalCaddyfile parses
//
//	destination <name> megaplan {
//		base_url  https://<account>.megaplan.ru
//		token     <token>                    # or:
//		login     <user>
//		password  <password>
//		program   <deal scheme id>
//		manager   <employee id>
//		currency  <ISO code>
//		utm_field <source|medium|campaign|term|content> <deal field>
//		rate | timeout ...
//	}
func (m *Megaplan) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // type name
	if d.NextArg() {
		return d.Errf("megaplan: unexpected argument %q; options go in the block", d.Val())
	}
	for d.NextBlock(0) {
		if ok, err := m.UnmarshalOption(d); ok {
			if err != nil {
				return err
			}
			continue
		}
		var err error
		switch d.Val() {
		case "token":
			err = crm.SingleArg(d, &m.Token)
		case "login":
			err = crm.SingleArg(d, &m.Login)
		case "password":
			err = crm.SingleArg(d, &m.Password)
		case "currency":
			err = crm.SingleArg(d, &m.Currency)
		case "program":
			err = crm.IDArg(d, &m.Program, "a Megaplan id")
		case "manager":
			err = crm.IDArg(d, &m.Manager, "a Megaplan id")
		case "utm_field":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("utm_field: want <utm key> <deal field>")
			}
			if err := crm.CheckUTMKey(args[0]); err != nil {
				return d.Errf("utm_field: %v", err)
			}
			if m.UTMFields == nil {
				m.UTMFields = map[string]string{}
			}
			m.UTMFields[args[0]] = args[1]
		default:
			return d.Errf("megaplan: unknown option %q (want base_url, token, login, password, program, manager, currency, utm_field, rate, timeout)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
