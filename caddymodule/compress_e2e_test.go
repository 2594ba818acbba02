package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/leadproxy/leadproxy/internal/testpages"
)

// compressSites: leadproxy with and without encode, and the same two
// sites without leadproxy, in front of one upstream.
const compressSites = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_LPENC}} {
	encode gzip zstd
	leadproxy
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_LP}} {
	leadproxy
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_PLAINENC}} {
	encode gzip zstd
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_PLAIN}} {
	reverse_proxy {{UPSTREAM}}
}
`

// e2eAllowance is what an injected page may weigh more than the same site's
// without leadproxy: the tag deflated alone (45 bytes) and 8 (the splice's
// empty blocks, one encoder's best against another's).
const e2eAllowance = 45 + 8

// TestCompressE2ENeverMoreBytes: an upstream that compresses when asked
// (/gz: gzip, as nginx's gzip on; /all: br, zstd or gzip, the visitor's
// best; /plain: never, so encode compresses) behind sites with and without encode, for visitors accepting
// everything, gzip only or nothing. The visitor gets the coding the site
// without leadproxy gives, the same page plus the tag, and at most
// e2eAllowance bytes more; a page served again (the EncodedCache's hit for
// gzip) comes out the same.
func TestCompressE2ENeverMoreBytes(t *testing.T) {
	page := injPage(60 << 10)
	bodies := map[string][]byte{"": page}
	for _, c := range []string{"gzip", "br", "zstd"} {
		bodies[c] = encodeBody(t, c, page)
	}
	// /pre: files precompressed by the brotli and zstd commands at the
	// nginx modules' default levels (as bench/run.sh's), sent with their
	// Content-Length as a static file server does.
	pre := map[string][]byte{"br": testpages.Compress(t, "br", 6, page), "zstd": testpages.Compress(t, "zstd", 1, page)}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae := r.Header.Get("Accept-Encoding")
		coding := ""
		var prefer []string
		switch r.URL.Path {
		case "/gz":
			prefer = []string{"gzip"}
		case "/all":
			prefer = []string{"br", "zstd", "gzip"}
		case "/pre", "/prezstd":
			prefer = []string{"br", "zstd"}
			if r.URL.Path == "/prezstd" {
				prefer = []string{"zstd"}
			}
		}
		for _, c := range prefer {
			if strings.Contains(ae, c) {
				coding = c
				break
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Vary", "Accept-Encoding")
		body := bodies[coding]
		if coding != "" {
			w.Header().Set("Content-Encoding", coding)
		}
		if strings.HasPrefix(r.URL.Path, "/pre") && coding != "" {
			body = pre[coding]
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		w.Write(body)
	}))
	defer up.Close()
	c := startCaddy(t, compressSites, map[string]string{"UPSTREAM": up.URL})

	get := func(t *testing.T, port, path, ae string) (string, []byte) {
		t.Helper()
		resp, err := noCompress.Do(navigation(t, c.URL(port)+path, ae))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s%s: status %d, %v", port, path, resp.StatusCode, err)
		}
		return resp.Header.Get("Content-Encoding"), body
	}
	var table []string
	for _, path := range []string{"/gz", "/all", "/plain", "/pre", "/prezstd"} {
		for _, enc := range []bool{true, false} {
			for _, ae := range []string{"gzip, deflate, br, zstd", "gzip", ""} {
				lp, plain := "PORT_LP", "PORT_PLAIN"
				if enc {
					lp, plain = "PORT_LPENC", "PORT_PLAINENC"
				}
				name := fmt.Sprintf("%s encode=%v accept=%q", path, enc, ae)
				t.Run(name, func(t *testing.T) {
					pce, pbody := get(t, plain, path, ae)
					lce, lbody := get(t, lp, path, ae)
					// A zstd page may go out as br, smaller, to a visitor who
					// accepts br (intercept/reencode.go).
					if lce != pce && !(pce == "zstd" && lce == "br" && strings.Contains(ae, "br")) {
						t.Fatalf("Content-Encoding %q, without leadproxy %q", lce, pce)
					}
					if !bytes.Equal(untag(t, decodeBody(t, lce, lbody), injTag), decodeBody(t, pce, pbody)) {
						t.Fatal("the page without the tag differs from the site's")
					}
					if len(lbody) > len(pbody)+e2eAllowance {
						t.Fatalf("%d bytes, without leadproxy %d (+%d)", len(lbody), len(pbody), len(lbody)-len(pbody))
					}
					// Served again: the upstream's encoded page from the
					// EncodedCache, the same bytes. (encode's own output may
					// differ with where Caddy flushed it: /plain compares the
					// page and the size.)
					ace, again := get(t, lp, path, ae)
					switch {
					case !upstreamIdentity(path, ae) && !bytes.Equal(again, lbody):
						t.Fatal("served again, the page came out different")
					case !bytes.Equal(decodeBody(t, ace, again), decodeBody(t, lce, lbody)) || len(again) > len(pbody)+e2eAllowance:
						t.Fatalf("served again: %d bytes, or another page", len(again))
					}
					table = append(table, fmt.Sprintf("%-45s %-5s %7d %7d %+4d", name, pce, len(pbody), len(lbody), len(lbody)-len(pbody)))
				})
			}
		}
	}
	t.Logf("case / coding / bytes without leadproxy / with / difference:\n%s", strings.Join(table, "\n"))
}

// upstreamIdentity says whether TestCompressE2ENeverMoreBytes's upstream
// answers path uncompressed to a visitor accepting ae (then encode, if the
// site has it, compresses, and where it flushed may differ between runs).
func upstreamIdentity(path, ae string) bool {
	switch path {
	case "/plain":
		return true
	case "/pre":
		return !strings.Contains(ae, "br") && !strings.Contains(ae, "zstd")
	case "/prezstd":
		return !strings.Contains(ae, "zstd")
	}
	return false
}
