package megaplan

import (
	"errors"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
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
func (m *Megaplan) Spec() crm.Spec {
	return crm.Spec{Type: "megaplan", Common: &m.Common, IDName: "a Megaplan id", Options: []crm.Option{
		{Name: "base_url", Required: true, Doc: "https://<account>.megaplan.ru"},
		{Name: "token", Kind: crm.SecretText, Target: &m.Token, Into: &m.token, Doc: "a long-lived API token; or login and password"},
		{Name: "login", Kind: crm.SecretText, Target: &m.Login, Into: &m.login, Doc: "the user deals are created as"},
		{Name: "password", Kind: crm.SecretText, Target: &m.Password, Into: &m.password},
		{Name: "program", Kind: crm.ID, Target: &m.Program, Required: true, Doc: "the id of the deal scheme"},
		{Name: "manager", Kind: crm.ID, Target: &m.Manager, Default: "Megaplan's default"},
		{Name: "currency", Target: &m.Currency, Default: "the account's main currency"},
		{Name: "utm_field", Kind: crm.Pairs, Target: &m.UTMFields, Default: "none", Shape: "<utm key> <deal field>", Check: checkUTMKey},
	}, Check: func(has func(string) bool) error {
		switch {
		case has("login") && !has("password"):
			return errors.New("login needs password")
		case has("password") && !has("login"):
			return errors.New("password needs login")
		case !has("token") && !has("login"):
			return errors.New("token or login + password is required")
		}
		return nil
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (m *Megaplan) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return m.Spec().Parse(d) }

func checkUTMKey(k string) (string, error) { return k, crm.CheckUTMKey(k) }
