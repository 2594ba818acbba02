package lead

import "testing"

// IsPhone is true exactly for what NormalizePhone accepted.
func TestIsPhone(t *testing.T) {
	for raw, want := range map[string]bool{
		"8 (999) 123-45-67":                       true,
		"+44 20 7946 0958":                        true,
		"+7 999 ... <img src=x onerror=alert(1)>": false,
		"+7 999 123 45 67 <img>":                  false,
		"12":                                      false,
		"abc":                                     false,
		"":                                        false,
	} {
		if got := IsPhone(NormalizePhone(raw, "RU")); got != want {
			t.Errorf("IsPhone(NormalizePhone(%q)) = %v (normalised %q)", raw, got, NormalizePhone(raw, "RU"))
		}
	}
}
