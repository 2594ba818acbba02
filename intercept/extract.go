package intercept

import (
	"regexp"
	"strings"

	"github.com/leadproxy/leadproxy/lead"
)

// Auto-detection of the main fields by name, for roles with no source.
var autoNames = []struct {
	role string
	re   *regexp.Regexp
}{
	{RoleEmail, regexp.MustCompile(`(?i)e-?mail|(^|[^a-z])mail($|[^a-z])|почта`)},
	{RolePhone, regexp.MustCompile(`(?i)phone|^tel$|^tel[^a-z]|telephone|mobile|телефон|тел\b|^моб`)},
	{RoleName, regexp.MustCompile(`(?i)^(your-?)?name$|^(first|full|last)[-_ ]?name$|^fio$|^fname$|имя|фио|^name[^a-z]|[^a-z]name$`)},
	{RoleComment, regexp.MustCompile(`(?i)message|comment|question|^text$|^msg$|комментари|сообщени|вопрос`)},
}

// AutoRole returns the main role a field name suggests, or "".
// Answers are remembered per name (nameMemo): without that the regexps
// were 4 % of Caddy's CPU under captured-POST load.
func AutoRole(name string) string { return autoRoles.get(name) }

var autoRoles = newNameMemo(func(name string) string {
	key := InnermostKey(name)
	for _, a := range autoNames {
		if a.re.MatchString(key) {
			return a.role
		}
	}
	return ""
})

// InnermostKey is the key a framework's nested field name ends with, the
// one that says what the field is: Rails demo_request[name] and PHP
// data[Lead][phone] give "name" and "phone", contact[0][value] gives
// "contact" (list indices, empty keys and a trailing "value" say nothing).
// A name without brackets is returned as is.
func InnermostKey(name string) string {
	base, rest, ok := strings.Cut(name, "[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return name
	}
	keys := append([]string{base}, strings.Split(strings.TrimSuffix(rest, "]"), "][")...)
	for i := len(keys) - 1; i > 0; i-- {
		k := strings.TrimSpace(keys[i])
		if k != "" && !strings.EqualFold(k, "value") && strings.Trim(k, "0123456789") != "" {
			return k
		}
	}
	return base
}

// Input is what a submission carried: the form's fields (from the body or
// the script's report) and the values computed in the browser (marker
// cookie or report), keyed by role.
type Input struct {
	Fields Fields
	Values map[string]string
	// Types maps field names to input types when the script saw them
	// (type=email, type=tel), for auto-detection.
	Types map[string]string
}

// Extract builds the lead's fields for a rule (nil rule: auto capture).
// It fills Title, Form, Name, Phone (E.164 where it parses), Email,
// Comment, Extra, CRM and Fields; the caller sets the rest.
func Extract(rule *Rule, in Input, region string) *lead.Lead {
	l := &lead.Lead{Fields: in.Fields.Map()}
	if rule != nil {
		l.Form, l.Title = rule.Title, rule.Title
	}
	value := func(role string, s *Source) (string, bool) {
		if s == nil {
			return "", false
		}
		switch s.Kind {
		case SourceStatic:
			return s.Value, true
		case SourceField:
			v, _ := in.Fields.Get(s.Value)
			return v, true
		default: // selector, js: computed in the browser
			return in.Values[role], true
		}
	}
	main := map[string]*string{RoleName: &l.Name, RolePhone: &l.Phone, RoleEmail: &l.Email, RoleComment: &l.Comment}
	var srcs map[string]*Source
	if rule != nil {
		srcs = map[string]*Source{RoleName: rule.Name, RolePhone: rule.Phone, RoleEmail: rule.Email, RoleComment: rule.Comment}
	}
	auto := autoDetect(in)
	for role, dst := range main {
		if v, ok := value(role, srcs[role]); ok {
			*dst = strings.TrimSpace(v)
			continue
		}
		if v, ok := in.Values[role]; ok && v != "" {
			*dst = strings.TrimSpace(v)
			continue
		}
		*dst = auto[role]
	}
	l.Phone = lead.NormalizePhone(l.Phone, region)
	l.Email = strings.TrimSpace(l.Email)
	if rule != nil {
		for _, x := range rule.Extra {
			if v, _ := value("extra:"+x.Label, &x.Source); v != "" {
				if l.Extra == nil {
					l.Extra = map[string]string{}
				}
				l.Extra[x.Label] = v
			}
		}
		for _, x := range rule.CRM {
			if v, _ := value("crm:"+x.Label, &x.Source); v != "" {
				if l.CRM == nil {
					l.CRM = map[string]string{}
				}
				l.CRM[x.Label] = v
			}
		}
	}
	return l
}

// autoDetect picks main fields by input type first, then by name; the
// first field found for a role wins.
func autoDetect(in Input) map[string]string {
	out := map[string]string{}
	for _, f := range in.Fields {
		role := ""
		switch strings.ToLower(in.Types[f.Name]) {
		case "email":
			role = RoleEmail
		case "tel":
			role = RolePhone
		}
		if role == "" {
			role = AutoRole(f.Name)
		}
		if role != "" && out[role] == "" && strings.TrimSpace(f.Value) != "" {
			out[role] = strings.TrimSpace(f.Value)
		}
	}
	return out
}

// HasContact reports whether a lead carries a phone or an email.
func HasContact(l *lead.Lead) bool {
	return lead.IsPhone(l.Phone) || strings.TrimSpace(l.Email) != ""
}

// HasAll reports whether every required field is present and non-empty.
func (f Fields) HasAll(names []string) bool {
	for _, n := range names {
		if v, ok := f.Get(n); !ok || strings.TrimSpace(v) == "" {
			return false
		}
	}
	return true
}
