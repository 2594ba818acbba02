package lead

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// The fast path takes the forms visitors type; if it stopped taking them,
// the agreement tests below would pass without testing anything.
func TestFastRUTakesCommonForms(t *testing.T) {
	for in, want := range map[string]string{
		"+7 (999) 123-45-67": "+79991234567",
		"8 (999) 123-45-67":  "+79991234567",
		"8 800 555-35-35":    "+78005553535",
		"79991234567":        "+79991234567",
		"(999) 123-45-67":    "+79991234567",
		"9991234567":         "+79991234567",
		"+7 495 123 45 67":   "+74951234567",
	} {
		got, ok := fastRU(in)
		if !ok || got != want {
			t.Errorf("fastRU(%q) = %q, %v; want %q, true", in, got, ok, want)
		}
	}
	for _, in := range []string{"+1 415 555 2671", "8 10 1 415 555 2671", "7 012 345 67 89",
		"5123456789", "8-999-123-45-67 доб. 12", "+7 999 123 45 67 8", "8+9991234567"} {
		if got, ok := fastRU(in); ok {
			t.Errorf("fastRU(%q) = %q: should go to the library", in, got)
		}
	}
}

// TestFastRUAgrees compares the fast path with the library for every
// 4-digit start of the national number, in each form the fast path
// takes, with random tails and separators.
func TestFastRUAgrees(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	forms := []string{"+7", "8", "7", ""}
	taken := 0
	for p := 0; p < 10000; p++ {
		for _, form := range forms {
			nsn := fmt.Sprintf("%04d%06d", p, r.Intn(1000000))
			in := spaced(r, form+nsn)
			got, ok := fastRU(in)
			if !ok {
				continue
			}
			taken++
			if want := parsePhone(in, "RU"); got != want {
				t.Fatalf("fastRU(%q) = %q, the library says %q", in, got, want)
			}
		}
	}
	// +7: all 10,000 starts; 8 and 7: 4,000 each; bare: 3,000.
	if taken != 21000 {
		t.Errorf("fast path took %d numbers, want 21000", taken)
	}
}

// spaced writes digits the way forms show them: "+7 (999) 123-45-67",
// "8 999 1234567", or run together.
func spaced(r *rand.Rand, s string) string {
	seps := []string{"", " ", "-", "(", ")", " (", ") ", "  "}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if i+1 < len(s) && r.Intn(4) == 0 {
			b.WriteString(seps[r.Intn(len(seps))])
		}
	}
	return b.String()
}

func FuzzFastRU(f *testing.F) {
	for _, s := range []string{"+7 (999) 123-45-67", "8 800 555-35-35", "9991234567", "(495)1234567",
		"+(7)9991234567", "7-0-1-2-3-4-5-6-7-8-9", "81012345678", ")8(", "+79991234567)", "8 (999)) 123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := fastRU(in)
		if !ok {
			return
		}
		if want := parsePhone(in, "RU"); got != want {
			t.Fatalf("fastRU(%q) = %q, the library says %q", in, got, want)
		}
	})
}

// BenchmarkNormalizePhone: a Russian number through the fast path and
// through the library alone.
//
//	go test ./lead -run '^$' -bench NormalizePhone -benchmem
func BenchmarkNormalizePhone(b *testing.B) {
	const in = "+7 (999) 123-45-67"
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			NormalizePhone(in, "")
		}
	})
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			parsePhone(in, "RU")
		}
	})
}

// Masked inputs: an unfinished mask or a bare pre-filled prefix is no
// phone; a finished mask normalises as typed digits do.
func TestNormalizePhoneMasks(t *testing.T) {
	for in, want := range map[string]string{
		"+7 (___) ___-__-__": "",
		"+7 (999) 123-__-__": "",
		"+7 (":               "",
		"+7":                 "",
		"8 ":                 "",
		"+7 (999) 123-45-67": "+79991234567",
		"8(999)123-45-67":    "+79991234567",
		"+1 (415) 555-2671":  "+14155552671",
		"звоните после 18":   "звоните после 18",
		"112":                "",
	} {
		if got := NormalizePhone(in, "RU"); got != want {
			t.Errorf("NormalizePhone(%q) = %q, want %q", in, got, want)
		}
	}
}
