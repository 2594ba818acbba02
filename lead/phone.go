package lead

import (
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is the region assumed for numbers written without a
// country code ("8 999 123-45-67", "(999) 123-45-67").
const DefaultRegion = "RU"

// NormalizePhone returns raw in E.164 ("+79991234567") when it parses as a
// possible number, else raw trimmed: a lead never loses what the visitor typed.
// An input mask the visitor did not finish is no phone and gives ""
// (UnfinishedPhone).
func NormalizePhone(raw, region string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" || UnfinishedPhone(raw) {
		return ""
	}
	if region == "" {
		region = DefaultRegion
	}
	if region == "RU" {
		if e164, ok := fastRU(raw); ok {
			return e164
		}
	}
	return parsePhone(raw, region)
}

// UnfinishedPhone reports the value of a masked phone input the visitor did
// not complete: the mask's placeholder is still in it ("+7 (999) ___-__-__",
// "_" in every common mask library), or it holds nothing but a pre-filled
// prefix ("+7 (", "8 ") — at most 3 digits and only the characters a mask
// writes. Text with letters is kept as typed.
func UnfinishedPhone(s string) bool {
	if strings.ContainsRune(s, '_') {
		return true
	}
	digits := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case !strings.ContainsRune("+ ()-.", c):
			return false
		}
	}
	return digits <= 3
}

// parsePhone is NormalizePhone through the library alone.
func parsePhone(raw, region string) string {
	num, err := phonenumbers.Parse(raw, region)
	if err != nil || !phonenumbers.IsPossibleNumber(num) {
		return raw
	}
	return phonenumbers.Format(num, phonenumbers.E164)
}

// fastRU normalises the forms nearly every Russian visitor types, the
// library's answer without the library's cost (16–19 µs and 34 allocations
// a number, most of it an extension regexp, against under 0.1 µs and one;
// BenchmarkNormalizePhone): digits with
// spaces, hyphens and parentheses between them, as
//
//	+7 and 10 digits            any national number
//	8 or 7 and 10 digits        a national number starting 3, 4, 8 or 9
//	10 digits                   a national number starting 3, 4 or 9
//
// The starting digits are the ones where the library gives "+7" and the
// national number whatever follows (it reads 810… as the international
// prefix, 7 and a 0, 1, 2, 5 or 6 as a 10-digit number, …).
// TestFastRUAgrees holds it to the library for every 4-digit start of the
// national number; FuzzFastRU for any input. ok is false for anything else,
// which goes to the library.
func fastRU(raw string) (e164 string, ok bool) {
	if len(raw) > 64 { // the library refuses inputs past 250 bytes
		return "", false
	}
	var d [11]byte
	n := 0
	plus := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= '0' && c <= '9':
			if n == len(d) {
				return "", false
			}
			d[n] = c
			n++
		case c == '+' && i == 0:
			plus = true
		case c == ' ' || c == '-' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	var nsn []byte
	switch {
	case plus:
		if n != 11 || d[0] != '7' {
			return "", false
		}
		nsn = d[1:]
	case n == 11 && (d[0] == '8' || d[0] == '7'):
		nsn = d[1:]
		if c := nsn[0]; c != '3' && c != '4' && c != '8' && c != '9' {
			return "", false
		}
	case n == 10:
		nsn = d[:10]
		if c := nsn[0]; c != '3' && c != '4' && c != '9' {
			return "", false
		}
	default:
		return "", false
	}
	var out [12]byte
	out[0], out[1] = '+', '7'
	copy(out[2:], nsn)
	return string(out[:]), true
}

// SplitName splits a full name into first and last name for CRMs that keep
// them apart. "Иван Петров" → ("Иван", "Петров"); a single word is a first
// name; "Петров Иван Сергеевич" keeps the first word as the last name only
// when there are three words (the Russian surname-first order of ФИО).
func SplitName(full string) (first, last string) {
	parts := strings.Fields(full)
	switch len(parts) {
	case 0:
		return "", ""
	case 1:
		return parts[0], ""
	case 3:
		return parts[1] + " " + parts[2], parts[0]
	default:
		return strings.Join(parts[:len(parts)-1], " "), parts[len(parts)-1]
	}
}

// CheckRegion reports whether region is a two-letter country code the phone
// library knows ("RU", "KZ", "US"), so a typo in the config fails at load
// instead of leaving every local number unnormalised.
func CheckRegion(region string) error {
	if !phonenumbers.GetSupportedRegions()[region] {
		return fmt.Errorf("phone_region %q is not a known country code (two capital letters like RU, KZ, BY, US)", region)
	}
	return nil
}

// IsPhone reports whether p is a number NormalizePhone accepted: "+" and 8
// to 15 digits. Anything else (what it kept as typed because
// libphonenumber rejected it) is not a contact.
func IsPhone(p string) bool {
	if len(p) < 9 || len(p) > 16 || p[0] != '+' {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
