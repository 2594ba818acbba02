package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadproxy/leadproxy/lead"
)

// The test vector of the Standard Webhooks reference library.
func TestSignVector(t *testing.T) {
	key, err := DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestDecodeSecretErrors(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_YWJj"} {
		if _, err := DecodeSecret(s); err == nil {
			t.Errorf("DecodeSecret(%q): no error", s)
		}
	}
}

func TestSendClassifies(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := DecodeSecret(secret)
	cases := []struct {
		status    int
		body      string
		wantErr   bool
		permanent bool
		crmID     string
	}{
		{200, `{"id": 42}`, false, false, "42"},
		{204, ``, false, false, ""},
		{400, `bad`, true, true, ""},
		{410, `gone`, true, true, ""},
		{408, ``, true, false, ""},
		{429, ``, true, false, ""},
		{500, ``, true, false, ""},
		{503, ``, true, false, ""},
		{302, ``, true, false, ""},
	}
	for _, c := range cases {
		var got *http.Request
		var gotBody []byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r
			gotBody, _ = io.ReadAll(r.Body)
			if c.status == 302 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(c.status)
			io.WriteString(w, c.body)
		}))
		w := &Webhook{URL: srv.URL, Secret: secret}
		if err := w.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		l := &lead.Lead{ID: lead.NewID(time.Now()), CreatedAt: time.Now(), Phone: "+79991234567", Form: "Заявка"}
		id, err := w.Send(context.Background(), l)
		srv.Close()
		if (err != nil) != c.wantErr || (err != nil && lead.IsPermanent(err) != c.permanent) || id != c.crmID {
			t.Errorf("status %d: id=%q err=%v (permanent=%v)", c.status, id, err, lead.IsPermanent(err))
			continue
		}
		if err := Verify(key, got.Header, gotBody, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("status %d: signature does not verify: %v", c.status, err)
		}
		var env Envelope
		if err := json.Unmarshal(gotBody, &env); err != nil || env.Type != "lead.created" || env.Data.Phone != l.Phone {
			t.Errorf("status %d: body %s", c.status, gotBody)
		}
		if got.Header.Get("webhook-id") != "msg_"+l.ID {
			t.Errorf("webhook-id = %q", got.Header.Get("webhook-id"))
		}
	}
}
