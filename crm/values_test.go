package crm

import (
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

// Keys echoed by a server (raw or escaped) are scrubbed and the error keeps
// its classification.
func TestRedact(t *testing.T) {
	for _, in := range []error{
		lead.Permanent(401, "bad key a+b/c=="),
		lead.Retryable(503, "GET /leads/add?key=a%2Bb%2Fc%3D%3D failed", time.Second),
		lead.Retryable(0, "Post /api/a+b%2Fc==/lead: EOF", 0),
	} {
		out := Redact(in, "a+b/c==")
		if strings.Contains(out.Error(), "a+b") || strings.Contains(out.Error(), "a%2Bb") || !strings.Contains(out.Error(), "***") {
			t.Errorf("Redact(%v) = %v", in, out)
		}
		if lead.IsPermanent(out) != lead.IsPermanent(in) || lead.RetryAfterOf(out) != lead.RetryAfterOf(in) {
			t.Errorf("Redact changed the classification of %v", in)
		}
	}
	if err := Redact(nil, "k"); err != nil {
		t.Fatal(err)
	}
}

func TestPlausibleEmail(t *testing.T) {
	for s, want := range map[string]bool{
		"ivan@example.ru": true, "a.b+c@mail.co.uk": true,
		"ivan@localhost": false, "Ivan <ivan@example.ru>": false, "ivan@": false, "": false, "ivan example.ru": false,
	} {
		if PlausibleEmail(s) != want {
			t.Errorf("PlausibleEmail(%q) = %v", s, !want)
		}
	}
}

func TestCheckUTMKey(t *testing.T) {
	if CheckUTMKey("campaign") != nil || CheckUTMKey("utm_campaign") == nil {
		t.Fatal("utm keys are the bare names")
	}
}

// One reading of a typed amount for every destination: "10 000" is ten
// thousand in MoySklad as in amoCRM.
func TestParseAmount(t *testing.T) {
	for s, want := range map[string]float64{
		"10000": 10000, "10 000": 10000, "10\u00a0000": 10000, "10\u202f000": 10000, "10'000": 10000,
		"1 500,50": 1500.5, "1500.50": 1500.5, " 7 ": 7, "0": 0, "1e3": 1000,
	} {
		if got, ok := ParseAmount(s); !ok || got != want {
			t.Errorf("ParseAmount(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "-5", "abc", "Inf", "NaN", "0x10", "1_000", "1.2.3", "1e300"} {
		if got, ok := ParseAmount(s); ok {
			t.Errorf("ParseAmount(%q) = %v, want refused", s, got)
		}
	}
	if got, ok := ParseNumber("-2,5"); !ok || got != -2.5 {
		t.Errorf("ParseNumber(-2,5) = %v, %v", got, ok)
	}
}

func TestParseID(t *testing.T) {
	for s, want := range map[string]int64{"1": 1, " 42 ": 42, "9223372036854775807": 1<<63 - 1} {
		if got, ok := ParseID(s); !ok || got != want {
			t.Errorf("ParseID(%q) = %v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "0", "-1", "1.5", "1e3", "x", "9223372036854775808"} {
		if _, ok := ParseID(s); ok {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

func TestSplitListAndFirstNonEmpty(t *testing.T) {
	if got := strings.Join(SplitList("a, b,,a", " c ,b"), "|"); got != "a|b|c" {
		t.Errorf("SplitList = %q", got)
	}
	if SplitList(" , ") != nil {
		t.Error("an empty list is nil")
	}
	if got := FirstNonEmpty("", "  ", "x", "y"); got != "x" {
		t.Errorf("FirstNonEmpty = %q", got)
	}
	if FirstNonEmpty() != "" || FirstNonEmpty(" ") != "" {
		t.Error("no value: empty")
	}
}
