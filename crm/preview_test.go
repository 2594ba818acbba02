package crm

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A preview records what Do would send, answers it, and masks every
// secret: configured ones anywhere, Authorization credentials, and
// secret-named headers, form fields and query parameters.
func TestRecordMasks(t *testing.T) {
	answered := 0
	answer := func(req *http.Request, body []byte) *Response {
		answered++
		if req.URL.Path == "/none" {
			return nil
		}
		return JSONAnswer(`{"id":1}`)
	}
	send := func(ctx context.Context) error {
		if !Recording(ctx) {
			t.Error("not recording inside Record")
		}
		req, _ := NewRequest(ctx, http.MethodPost, "https://crm.example/k-SECRET1/add?api_key=q1&x=1", "application/x-www-form-urlencoded",
			[]byte("name=Ivan&password=p%40ss&note=has+k-SECRET1"), http.Header{"Authorization": {"Bearer tok-XYZ"}, "X-Api-Key": {"abc"}, "Accept": {"tok-XYZ"}})
		if resp, err := Do(http.DefaultClient, req); err != nil || string(resp.Body) != `{"id":1}` {
			t.Errorf("answer %v, %v", resp, err)
		}
		req, _ = NewRequest(ctx, http.MethodGet, "https://crm.example/none", "", nil, nil)
		_, err := Do(http.DefaultClient, req)
		return err
	}
	reqs, err := Record(context.Background(), answer, []string{"k-SECRET1", ""}, send)
	if err == nil || !strings.Contains(err.Error(), "no documented answer for GET /none") {
		t.Errorf("err %v", err)
	}
	if len(reqs) != 2 || answered != 2 {
		t.Fatalf("%d requests, %d answered", len(reqs), answered)
	}
	r := reqs[0]
	if r.URL != "https://crm.example/***/add?api_key=***&x=1" {
		t.Errorf("url %s", r.URL)
	}
	if r.Body != "name=Ivan&password=***&note=has+***" {
		t.Errorf("body %s", r.Body)
	}
	for k, want := range map[string]string{"Authorization": "Bearer ***", "X-Api-Key": "***", "Accept": "***", "User-Agent": "leadproxy/1"} {
		if got := r.Header[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if Recording(context.Background()) {
		t.Error("recording outside Record")
	}
}

// A preview keeps at most MaxPreviewRequests requests and MaxPreviewBody
// bytes of each body, and says what it cut.
func TestRecordBounds(t *testing.T) {
	big := strings.Repeat("я", MaxPreviewBody) // 2 bytes a rune: twice the bound
	reqs, err := Record(context.Background(), func(*http.Request, []byte) *Response { return JSONAnswer("{}") }, nil,
		func(ctx context.Context) error {
			for range MaxPreviewRequests + 5 {
				req, _ := NewRequest(ctx, http.MethodPost, "https://crm.example/add", ContentJSON, []byte(big), nil)
				if _, err := Do(http.DefaultClient, req); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil || len(reqs) != MaxPreviewRequests {
		t.Fatalf("%d requests kept, %v", len(reqs), err)
	}
	body := reqs[0].Body
	if !strings.HasPrefix(body, big[:MaxPreviewBody]) || !strings.HasSuffix(body, fmt.Sprintf("… (%d more bytes not shown)", len(big)-MaxPreviewBody)) {
		t.Errorf("cut body: %d bytes, ends %q", len(body), body[len(body)-40:])
	}
}
