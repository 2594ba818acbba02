package intercept

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// isTestTag accepts our tag, with or without a nonce.
var isTestTag = regexp.MustCompile(`^<script src="/_leadproxy/c\.js" defer( nonce="[A-Za-z0-9+/_=-]+")?></script>$`).Match

// FuzzInject: whatever the page and however it is cut into writes, the
// output is the input, or the input with exactly one tag inserted, and the
// cut does not change which.
func FuzzInject(f *testing.F) {
	seeds := []string{
		"", "<html><head></head>", "<!DOCTYPE html><title>x</title>", "<div>frag</div>",
		"<html><script>'<head>'</script><head>", "\ufeff<!--[if IE]><html><![endif]--><head/>",
		"<html><head><script src=/_leadproxy/c.js></script>", "<html><![CDATA[<head>]]>",
		"<html><head><meta http-equiv=content-security-policy content=\"script-src 'nonce-a'\"><script nonce=a>",
		"<html><textarea><head>", "<html><plaintext><head>", "<html><head", "<!DOCTYPE html><!-- open",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(1))
	}
	if files, err := filepath.Glob("testdata/inject/*"); err == nil {
		for _, name := range files {
			if page, err := os.ReadFile(name); err == nil {
				f.Add(page, uint8(7))
			}
		}
	}
	f.Fuzz(func(t *testing.T, page []byte, cut uint8) {
		whole, r1, err := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
		if err != nil {
			t.Fatal(err)
		}
		resp := htmlResponse(string(page))
		resp.chunk = int(cut%64) + 1
		pieces, r2, err := run(t, getPage(), InjectConfig{}, resp)
		if err != nil {
			t.Fatal(err)
		}
		if r1 != r2 || !bytes.Equal(whole.body.Bytes(), pieces.body.Bytes()) {
			t.Fatalf("writes of %d changed the outcome: %q vs %q", resp.chunk, r1, r2)
		}
		// The same page gzip-encoded, through the decoder and re-encoder.
		resp.body = encode(t, "gzip", page)
		resp.header["Content-Encoding"] = "gzip"
		encoded, r3, err := run(t, getPage(), InjectConfig{}, resp)
		if err != nil || r3 != r1 {
			t.Fatalf("gzip: result %q, plain %q, err %v", r3, r1, err)
		}
		if r1 == "injected" {
			if got, err := decode("gzip", encoded.body.Bytes()); err != nil || !bytes.Equal(got, whole.body.Bytes()) {
				t.Fatalf("gzip: decoded output differs (err %v)", err)
			}
		} else if !bytes.Equal(encoded.body.Bytes(), resp.body) {
			t.Fatalf("gzip: %s but the encoded bytes changed", r1)
		}
		// Twice more through an EncodedCache: the remembered splice gives
		// the same bytes as a fresh one.
		cache := NewEncodedCache()
		for i := 0; i < 2; i++ {
			again, r4, err := run(t, getPage(), InjectConfig{Encoded: cache}, resp)
			if err != nil || r4 != r1 || !bytes.Equal(again.body.Bytes(), encoded.body.Bytes()) {
				t.Fatalf("gzip through the cache (%d): %q, %v, same %v", i, r4, err, bytes.Equal(again.body.Bytes(), encoded.body.Bytes()))
			}
		}
		// br and zstd, held and re-encoded (reencode.go), twice through an
		// EncodedCache: the page with the tag within the upstream's bytes
		// plus the tag, or the upstream's bytes as they came.
		for _, coding := range []string{"br", "zstd"} {
			resp.body = encode(t, coding, page)
			resp.header["Content-Encoding"] = coding
			cache := NewEncodedCache()
			for i := 0; i < 2; i++ {
				got, r, err := run(t, getPage(), InjectConfig{Encoded: cache}, resp)
				out := got.body.Bytes()
				switch {
				case err != nil:
					t.Fatalf("%s (%d): %v", coding, i, err)
				case r == InjectResultHeavier && r1 == InjectResultInjected || r == r1 && r != InjectResultInjected:
					if !bytes.Equal(out, resp.body) {
						t.Fatalf("%s (%d): %s but the encoded bytes changed", coding, i, r)
					}
				case r != r1:
					t.Fatalf("%s (%d): result %q, plain %q", coding, i, r, r1)
				default:
					if d, err := decode(coding, out); err != nil || !bytes.Equal(d, whole.body.Bytes()) {
						t.Fatalf("%s (%d): decoded output differs (err %v)", coding, i, err)
					}
					if len(out) > len(resp.body)+len(whole.body.Bytes())-len(page) {
						t.Fatalf("%s (%d): %d bytes from the upstream's %d", coding, i, len(out), len(resp.body))
					}
				}
				cache.wait()
			}
		}

		out := whole.body.Bytes()
		if r1 != "injected" {
			if !bytes.Equal(out, page) {
				t.Fatalf("%s: page changed", r1)
			}
			return
		}
		if insertedWhere(page, out, len(out)-len(page), isTestTag) < 0 {
			t.Fatalf("output is not the page plus one tag:\n%q\n%q", page, out)
		}
	})
}
