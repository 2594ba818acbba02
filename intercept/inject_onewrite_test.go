package intercept

import (
	"bytes"
	"strings"
	"testing"
)

// TestInjectVerdictIsOneWrite: the bytes held until the verdict go to the
// next writer in a single Write, tag included. Caddy's encode decides
// whether to compress from the first Write alone (its length against
// minimum_length, default 512, when there is no Content-Length); writing
// "<html><head>", the tag and the rest separately left every chunked page
// uncompressed behind `encode` (found by caddymodule's
// TestInjectE2ECompressedUpstream).
func TestInjectVerdictIsOneWrite(t *testing.T) {
	page := "<!DOCTYPE html><html><head>§<title>t</title></head><body>" + strings.Repeat("<p>text</p>\n", 400) + "</body></html>"
	in, want := splitMark(page)
	for _, chunk := range []int{0, 7, 100, 4096} {
		tap, result, err := run(t, getPage(), InjectConfig{}, response{status: 200,
			header: map[string]string{"Content-Type": "text/html"}, body: []byte(in), chunk: chunk})
		if err != nil || result != InjectResultInjected || tap.body.String() != want {
			t.Fatalf("chunk %d: %v %s", chunk, err, result)
		}
		first := tap.writes[0]
		at := bytes.Index(first, []byte(testTag))
		if at < 0 || !bytes.HasPrefix([]byte(want), first) || len(first) == at+len(testTag) {
			t.Fatalf("chunk %d: the first write is not the held bytes with the tag spliced in: %q", chunk, first)
		}
		// A verdict within the first upstream write sends all of it at once.
		firstUp := len(in)
		if chunk > 0 {
			firstUp = min(chunk, len(in))
		}
		if (chunk == 0 || chunk == 4096) && len(first) != firstUp+len(testTag) {
			t.Fatalf("chunk %d: first write %d bytes", chunk, len(first))
		}
	}
}

// TestInjectSpliceBufferNotShared: the splice buffer is reused across
// responses; what one response wrote must not change when the next one
// injects.
func TestInjectSpliceBufferNotShared(t *testing.T) {
	var bodies [][]byte
	for i := range 3 {
		page := "<html><head>§</head><body>" + strings.Repeat(string(rune('a'+i)), 1000) + "</body></html>"
		in, want := splitMark(page)
		tap, _, err := run(t, getPage(), InjectConfig{}, htmlResponse(in))
		if err != nil || tap.body.String() != want {
			t.Fatalf("page %d: %v", i, err)
		}
		bodies = append(bodies, tap.body.Bytes())
	}
	for i, b := range bodies {
		if !bytes.Contains(b, bytes.Repeat([]byte{byte('a' + i)}, 1000)) {
			t.Fatalf("body %d changed after later responses", i)
		}
	}
}
