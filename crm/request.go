package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/leadproxy/leadproxy/lead"
)

// ContentJSON is the media type of the JSON bodies destinations send.
const ContentJSON = "application/json"

// JSONBody encodes v as a request body. Its error is permanent: the same
// lead would fail the same way on every attempt.
func JSONBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, lead.Permanent(0, "encode request: "+err.Error())
	}
	return b, nil
}

// NewRequest builds one request to a CRM: body (nil for none) sent as
// contentType, and header's entries set on it (Authorization, Accept, the
// CRM's own). Its error is permanent ("build request: ...").
func NewRequest(ctx context.Context, method, target, contentType string, body []byte, header http.Header) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, lead.Permanent(0, "build request: "+networkCause(err).Error())
	}
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		for i, v := range vs {
			if i == 0 {
				req.Header.Set(k, v)
			} else {
				req.Header.Add(k, v)
			}
		}
	}
	return req, nil
}

// DoJSON sends v (nil: no body) as JSON with header and reads the answer:
// JSONBody, NewRequest and Do in one call, for the destinations that speak
// JSON. Errors are classified as Do's are.
func DoJSON(ctx context.Context, client *http.Client, method, target string, v any, header http.Header) (*Response, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = JSONBody(v); err != nil {
			return nil, err
		}
	}
	req, err := NewRequest(ctx, method, target, ContentJSON, body, header)
	if err != nil {
		return nil, err
	}
	return Do(client, req)
}

// Bearer is the Authorization header of a token, with Accept: JSON: what
// most CRMs take.
func Bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}, "Accept": {ContentJSON}}
}

// Redact replaces every secret (as given, query-escaped and path-escaped)
// in err's message with ***, keeping whether it is permanent and its
// Retry-After. CRMs that take the key in the URL need it: net/http puts the
// URL into its errors.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			clean = strings.ReplaceAll(clean, form, "***")
		}
	}
	if clean == msg {
		return err
	}
	out := &lead.SendError{Msg: clean}
	var se *lead.SendError
	if errors.As(err, &se) {
		out.Permanent, out.RetryAfter = se.Permanent, se.RetryAfter
	}
	return out
}
