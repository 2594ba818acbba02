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
func NormalizePhone(raw, region string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	if region == "" {
		region = DefaultRegion
	}
	num, err := phonenumbers.Parse(raw, region)
	if err != nil || !phonenumbers.IsPossibleNumber(num) {
		return raw
	}
	return phonenumbers.Format(num, phonenumbers.E164)
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
