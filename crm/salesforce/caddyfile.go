package salesforce

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
)

// Spec declares the options of
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
func (s *Salesforce) Spec() crm.Spec {
	return crm.Spec{Type: "salesforce", Common: &s.Common, Options: []crm.Option{
		{Name: "base_url", Required: true, Doc: "the instance URL, https://<MyDomain>.my.salesforce.com"},
		{Name: "token", Kind: crm.SecretText, Target: &s.Token, Into: &s.token, Doc: "an access token; or the refresh flow"},
		{Name: "client_id", Kind: crm.SecretText, Target: &s.ClientID, Into: &s.clientID, Doc: "the connected app's consumer key"},
		{Name: "client_secret", Kind: crm.SecretText, Target: &s.ClientSecret, Into: &s.secret, Doc: "its consumer secret"},
		{Name: "refresh_token", Kind: crm.SecretText, Target: &s.RefreshToken, Into: &s.refresh, Doc: "a refresh token it issued"},
		{Name: "token_url", Kind: crm.SecretText, Target: &s.TokenURL, Into: &s.tokenURL, Default: DefaultTokenURL},
		{Name: "api_version", Target: &s.APIVersion, Default: DefaultAPIVersion},
		{Name: "lead_source", Target: &s.LeadSource, Default: DefaultLeadSource},
		{Name: "external_id", Target: &s.ExternalID, Default: "none, plain create"},
		{Name: "allow_duplicates", Kind: crm.Switch, Target: &s.AllowDuplicates, Default: "on"},
		{Name: "utm_field", Kind: crm.Pairs, Target: &s.UTMFields, Default: "none", Shape: "<utm key> <Lead field>",
			Check: func(k string) (string, error) { return k, crm.CheckUTMKey(k) }},
	}, Check: func(has func(string) bool) error {
		var missing []string
		for _, o := range []string{"client_id", "client_secret", "refresh_token"} {
			if !has(o) {
				missing = append(missing, o)
			}
		}
		switch {
		case len(missing) == 1 || len(missing) == 2:
			return fmt.Errorf("client_id, client_secret and refresh_token go together; missing %s", strings.Join(missing, ", "))
		case len(missing) == 3 && !has("token"):
			return fmt.Errorf("token or client_id + client_secret + refresh_token is required")
		}
		return nil
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (s *Salesforce) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return s.Spec().Parse(d) }
