package intercept

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// upstreamCoding is how a site compresses: its coding and level.
type upstreamCoding struct {
	name   string
	coding string // "", gzip, br, zstd
	common bool   // a setting sites use per request: the output must not be larger
	enc    func(t testing.TB, page []byte) []byte
}

func upstreamCodings() []upstreamCoding {
	var ups []upstreamCoding
	ups = append(ups, upstreamCoding{"identity", "", true, func(_ testing.TB, p []byte) []byte { return p }})
	for level := 1; level <= 9; level++ {
		ups = append(ups,
			upstreamCoding{fmt.Sprintf("gzip-std-%d", level), "gzip", true, func(t testing.TB, p []byte) []byte {
				return gzipWith(t, "std", level, p)
			}},
			upstreamCoding{fmt.Sprintf("gzip-klauspost-%d", level), "gzip", true, func(t testing.TB, p []byte) []byte {
				return gzipWith(t, "klauspost", level, p)
			}})
	}
	// brotli 4 (Cloudflare), 5, 6 (nginx-brotli's default); 11 is what
	// precompressed files use.
	for _, q := range []int{4, 5, 6, 11} {
		ups = append(ups, upstreamCoding{fmt.Sprintf("br-%d", q), "br", q != 11, func(_ testing.TB, p []byte) []byte {
			var b bytes.Buffer
			w := brotli.NewWriterLevel(&b, q)
			w.Write(p)
			w.Close()
			return b.Bytes()
		}})
	}
	// klauspost's levels: SpeedDefault is the zstd library's 3 (what
	// servers use per request); better (about 7) is the level we re-encode
	// at, and best stands for precompressed files (zstd 19 is smaller
	// still): those two are logged, not held to the allowance.
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		ups = append(ups, upstreamCoding{"zstd-" + l.String(), "zstd", l < zstd.SpeedBetterCompression, func(_ testing.TB, p []byte) []byte {
			var b bytes.Buffer
			w, _ := zstd.NewWriter(&b, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1))
			w.Write(p)
			w.Close()
			return b.Bytes()
		}})
	}
	return ups
}

func decodeAny(t testing.TB, coding string, b []byte) []byte {
	t.Helper()
	if coding == "" {
		return b
	}
	out, err := decode(coding, b)
	if err != nil {
		t.Fatalf("%s: %v", coding, err)
	}
	return out
}

// TestCodecLevels: "never more bytes". Whatever the visitor's
// Accept-Encoding, the upstream answers in one of these codings (or
// identity) and the injector works in that coding, so the matrix is the
// upstream's coding and level. On CMS-shaped pages of 30-300 KB, each
// output decodes to the upstream's page with exactly the tag at the
// insertion point (the identity injector's output), and for every setting
// sites use per request it is no larger than the upstream's body plus
// spliceAllowance (the tag deflated alone, 45 bytes for ours, and 8). A br
// or zstd page, at any level, is either that or, when nothing on the
// request path fits (brotli 11 here), the upstream's bytes as they came
// (TestReencodeNeverLarger has the CLI's levels); the gzip levels beyond
// per-request ones are logged.
func TestCodecLevels(t *testing.T) {
	tag := []byte(testTag)
	rnd := rand.New(rand.NewPCG(9, 9))
	for _, size := range []int{30 << 10, 60 << 10, 300 << 10} {
		page := cmsPage(uint64(size)+1, size)
		plain, result, err := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
		if err != nil || result != InjectResultInjected {
			t.Fatalf("identity: %q %v", result, err)
		}
		want := plain.body.Bytes()
		for _, up := range upstreamCodings() {
			if up.name == "br-11" && size > 60<<10 {
				continue // seconds per page
			}
			body := up.enc(t, page)
			resp := response{status: 200, chunk: 1 + rnd.IntN(16<<10), body: body,
				header: map[string]string{"Content-Type": "text/html; charset=utf-8"}}
			if up.coding != "" {
				resp.header["Content-Encoding"] = up.coding
			}
			tap, result, err := run(t, getPage(), InjectConfig{}, resp)
			name := fmt.Sprintf("%d/%s", size, up.name)
			out := tap.body.Bytes()
			if err == nil && result == InjectResultHeavier && up.coding != "" && up.coding != "gzip" && bytes.Equal(out, body) {
				// Nothing on the request path fits (reencode.go): as it came.
				if up.common {
					t.Errorf("%s: a per-request level went out without the tag", name)
				}
				t.Logf("%s (beyond per-request levels): sent as it came", name)
				continue
			}
			if err != nil || result != InjectResultInjected {
				t.Fatalf("%s: %q %v", name, result, err)
			}
			if !bytes.Equal(decodeAny(t, up.coding, out), want) {
				t.Fatalf("%s: decoded output is not the page with the tag", name)
			}
			over := len(out) - len(body)
			switch {
			case up.coding == "" && over != len(tag):
				t.Errorf("%s: identity %d bytes more", name, over)
			case (up.common || up.coding == "br" || up.coding == "zstd") && over > spliceAllowance(tag):
				t.Errorf("%s: %d bytes from the upstream's %d (+%d, allowance %d)", name, len(out), len(body), over, spliceAllowance(tag))
			case !up.common:
				t.Logf("%s (beyond per-request levels): %d bytes from %d (%+.1f%%)", name, len(out), len(body), 100*float64(over)/float64(len(body)))
			}
		}
	}
}
