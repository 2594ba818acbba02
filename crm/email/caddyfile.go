package email

import (
	"fmt"
	"net"
	"net/mail"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/leadtext"
)

func checkServer(v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("%q: want <host>:<port>, like smtp.yandex.ru:465", v)
	}
	return v, nil
}

func checkAddress(v string) (string, error) {
	if _, err := mail.ParseAddress(v); err != nil {
		return "", fmt.Errorf("%q is not an email address", v)
	}
	return v, nil
}

func checkTemplate(v string) (string, error) { _, err := leadtext.Parse(v); return v, err }

// Spec declares the options of
//
//	destination <name> email {
//		server   smtp.example.com:465
//		tls      implicit | starttls
//		username alerts@example.com
//		password {env.SMTP_PASSWORD}
//		from     "Заявки <alerts@example.com>"
//		to       sales@example.com [<address>...]
//		subject  <template>
//		template <template>
//		ca_file  <pem>
//		rate | timeout ...
//	}
func (e *Email) Spec() crm.Spec {
	return crm.Spec{Type: "email", Common: &e.Common, Options: []crm.Option{
		{Name: "server", Target: &e.Server, Required: true, Check: checkServer, Doc: "the SMTP server, <host>:<port>"},
		{Name: "tls", Target: &e.TLS, Default: "implicit on port 465, else starttls", Doc: "implicit or starttls",
			Check: func(v string) (string, error) {
				if v != "implicit" && v != "starttls" {
					return "", fmt.Errorf("want implicit or starttls, got %q", v)
				}
				return v, nil
			}},
		{Name: "username", Kind: crm.SecretText, Target: &e.Username, Into: &e.username, Default: "no auth", Doc: "the SMTP login"},
		{Name: "password", Kind: crm.SecretText, Target: &e.Password, Into: &e.password, Default: "none",
			Doc: "the SMTP password; use a placeholder: password {env.SMTP_PASSWORD}"},
		{Name: "from", Target: &e.From, Required: true, Check: checkAddress, Doc: "the sender, an address the server lets you send from"},
		{Name: "to", Kind: crm.List, Target: &e.To, Required: true, Check: checkAddress, Doc: "recipients, one or more"},
		{Name: "subject", Target: &e.Subject, Default: DefaultSubject, Check: checkTemplate, Doc: "the subject, in the alert template syntax (one line)"},
		{Name: "template", Target: &e.Template, Default: "the default template", Check: checkTemplate, Doc: "the body, in the alert template syntax"},
		{Name: "ca_file", Target: &e.CAFile, Default: "the system's roots", Doc: "a PEM file of CA certificates to trust for the server (a self-hosted server)"},
		{Name: "base_url", Default: "not used", Doc: "not used by email; the server option gives the address"},
		{Name: "rate", Default: "1/1s", Doc: "<n>/<duration>"},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (e *Email) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return e.Spec().Parse(d) }
