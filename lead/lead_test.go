package lead

import (
	"testing"
	"time"
)

func TestNormalizePhone(t *testing.T) {
	cases := map[string]string{
		"+7 (999) 123-45-67": "+79991234567",
		"8 999 123 45 67":    "+79991234567",
		"9991234567":         "+79991234567",
		"+1 415 555 2671":    "+14155552671",
		"not a phone":        "not a phone",
		"  ":                 "",
	}
	for in, want := range cases {
		if got := NormalizePhone(in, ""); got != want {
			t.Errorf("NormalizePhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitName(t *testing.T) {
	cases := []struct{ in, first, last string }{
		{"Иван", "Иван", ""},
		{"Иван Петров", "Иван", "Петров"},
		{"Петров Иван Сергеевич", "Иван Сергеевич", "Петров"},
		{"", "", ""},
	}
	for _, c := range cases {
		f, l := SplitName(c.in)
		if f != c.first || l != c.last {
			t.Errorf("SplitName(%q) = %q,%q", c.in, f, l)
		}
	}
}

func TestNewIDOrdered(t *testing.T) {
	now := time.Now()
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewID(now)
		if id <= prev || len(id) != 26 {
			t.Fatalf("id %q not after %q", id, prev)
		}
		prev = id
	}
}

func TestStatus(t *testing.T) {
	l := &Lead{Deliveries: []Delivery{{Status: StatusDelivered}, {Status: StatusRetrying}}}
	if l.Status() != StatusRetrying {
		t.Fatal(l.Status())
	}
	if (&Lead{}).Status() != StatusSkipped {
		t.Fatal("no deliveries should be skipped")
	}
}
