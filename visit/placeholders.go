package visit

import "strings"

// Vars are the values of Roistat's placeholders for one lead.
type Vars struct {
	Visit  *Visit // nil: the visit placeholders expand to ""
	Domain string // the site's host
}

// Expand replaces Roistat's placeholders in s: {visit}, {landingPage},
// {referrer}, {source}, {utmSource}, {utmMedium}, {utmCampaign}, {utmTerm},
// {utmContent}, {domain}. Anything else in braces is left as written.
func Expand(s string, vars Vars) string {
	if !strings.Contains(s, "{") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		name := s[i+1 : i+j]
		if k := strings.LastIndexByte(name, '{'); k >= 0 { // "{a{visit}": the inner one
			b.WriteString(s[:i+1+k])
			s = s[i+1+k:]
			continue
		}
		val, ok := vars.value(name)
		b.WriteString(s[:i])
		if ok {
			b.WriteString(val)
		} else {
			b.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

func (vars Vars) value(name string) (string, bool) {
	v := vars.Visit
	if v == nil {
		v = &Visit{}
	}
	switch name {
	case "visit":
		return v.ID, true
	case "landingPage":
		return v.Landing, true
	case "referrer":
		return v.Referrer, true
	case "source":
		return v.Source, true
	case "utmSource":
		return v.UTM["source"], true
	case "utmMedium":
		return v.UTM["medium"], true
	case "utmCampaign":
		return v.UTM["campaign"], true
	case "utmTerm":
		return v.UTM["term"], true
	case "utmContent":
		return v.UTM["content"], true
	case "domain":
		return vars.Domain, true
	}
	return "", false
}
