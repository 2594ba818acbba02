package salesforce

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// UnmarshalCaddyfile parses
//
//	destination <name> salesforce {
//		base_url         https://<MyDomain>.my.salesforce.com
//		token            <access token>      # or:
//		client_id        <consumer key>
//		client_secret    <consumer secret>
//		refresh_token    <refresh token>
//		token_url        https://login.salesforce.com/services/oauth2/token
//		api_version      67.0
//		lead_source      Web
//		external_id      <Field__c>
//		allow_duplicates on|off
//		utm_field        <source|medium|campaign|term|content> <Field__c>
//		rate | timeout ...
//	}
func (s *Salesforce) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // type name
	if d.NextArg() {
		return d.Errf("salesforce: unexpected argument %q; options go in the block", d.Val())
	}
	for d.NextBlock(0) {
		if ok, err := s.UnmarshalOption(d); ok {
			if err != nil {
				return err
			}
			continue
		}
		var err error
		switch d.Val() {
		case "token":
			err = crm.SingleArg(d, &s.Token)
		case "client_id":
			err = crm.SingleArg(d, &s.ClientID)
		case "client_secret":
			err = crm.SingleArg(d, &s.ClientSecret)
		case "refresh_token":
			err = crm.SingleArg(d, &s.RefreshToken)
		case "token_url":
			err = crm.SingleArg(d, &s.TokenURL)
		case "api_version":
			err = crm.SingleArg(d, &s.APIVersion)
		case "lead_source":
			err = crm.SingleArg(d, &s.LeadSource)
		case "external_id":
			err = crm.SingleArg(d, &s.ExternalID)
		case "allow_duplicates":
			var v string
			if err = crm.SingleArg(d, &v); err == nil {
				if v != "on" && v != "off" {
					return d.Errf("allow_duplicates: want on or off, got %q", v)
				}
				allow := v == "on"
				s.AllowDuplicates = &allow
			}
		case "utm_field":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("utm_field: want <utm key> <Lead field>")
			}
			if err := crm.CheckUTMKey(args[0]); err != nil {
				return d.Errf("utm_field: %v", err)
			}
			if s.UTMFields == nil {
				s.UTMFields = map[string]string{}
			}
			s.UTMFields[args[0]] = args[1]
		default:
			return d.Errf("salesforce: unknown option %q (want base_url, token, client_id, client_secret, refresh_token, token_url, api_version, lead_source, external_id, allow_duplicates, utm_field, rate, timeout)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
