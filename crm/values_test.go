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
