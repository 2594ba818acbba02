package crmtest

import "strings"

// Block is the Caddyfile block of a destination type from a fake's lines
// (its Caddyfile()) and extra lines; an extra line replaces the fake's line
// of the same option, as an option may be given once. Pairs options
// (field, header, param, utm_field) are kept from both.
func Block(typ, fake, extra string) string {
	override := map[string]bool{}
	for _, l := range strings.Split(extra, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			override[f[0]] = true
		}
	}
	var b strings.Builder
	b.WriteString(typ + " {\n")
	for _, l := range strings.Split(fake, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || (override[f[0]] && len(f) == 2) {
			continue // a pairs line has three fields: it adds, not replaces
		}
		b.WriteString(l + "\n")
	}
	b.WriteString(extra + "\n}")
	return b.String()
}
