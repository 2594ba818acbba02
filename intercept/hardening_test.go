package intercept

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestParseBodyRepeatedNameBounded: a body that repeats one name (found by
// hand beside FuzzParseBody: 640 KB of "a=1\n" took two minutes of CPU and
// kept a 480 KB value) joins into one value no longer than MaxFieldLen, in
// memory proportional to the body, not to its square.
func TestParseBodyRepeatedNameBounded(t *testing.T) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for mp.Len() < 1<<20 {
		mw.WriteField("a", "v")
	}
	mw.Close()
	cases := []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", strings.Repeat("a=1&", 1<<18)},
		{"text/plain", strings.Repeat("a=1\n", 1<<18)},
		{mw.FormDataContentType(), mp.String()},
	}
	for _, c := range cases {
		t.Run(strings.Split(c.ct, ";")[0], func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := ParseBody(c.ct, strings.NewReader(c.body), "", "")
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if len(f) != 1 || f[0].Name != "a" || len(f[0].Value) > MaxFieldLen {
				t.Fatalf("%d fields, first value %d bytes", len(f), len(f[0].Value))
			}
			// Quadratic joining allocated hundreds of gigabytes here.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Fatalf("parsing a %d-byte body allocated %d MB", len(c.body), alloc>>20)
			}
		})
	}
}

// TestParseBodyManyFields: past net/url's 10000-parameter limit (Go 1.26)
// url.ParseQuery returned nothing; the first MaxFields fields are kept, in
// order, and bad escapes skip only their own pair.
func TestParseBodyManyFields(t *testing.T) {
	var b strings.Builder
	b.WriteString("bad=%zz&")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "k%d=v%d&", i, i)
	}
	f, err := ParseBody("application/x-www-form-urlencoded", strings.NewReader(b.String()), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != MaxFields || f[0] != (Field{"k0", "v0"}) || f[MaxFields-1].Name != fmt.Sprintf("k%d", MaxFields-1) {
		t.Fatalf("%d fields, first %v", len(f), f[0])
	}
	if _, err := ParseBody("application/x-www-form-urlencoded", strings.NewReader("a=%zz"), "", ""); err == nil {
		t.Fatal("a body of only bad pairs parsed without an error")
	}
}

// TestReadBodyDiskFull: the temporary file for a large body hits a full
// disk (RLIMIT_FSIZE in a child process: EFBIG, as ENOSPC would). The body
// is not captured, and the replay to the upstream still has every byte.
// Before the fix the bytes in the failed write, or all the in-memory part
// when the first write failed, were dropped from the replay.
func TestReadBodyDiskFull(t *testing.T) {
	if os.Getenv("LEADPROXY_DISKFULL_CHILD") == "1" {
		diskFullChild(t)
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("RLIMIT_FSIZE child: linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadBodyDiskFull$", "-test.v")
	cmd.Env = append(os.Environ(), "LEADPROXY_DISKFULL_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("replayed intact")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func diskFullChild(t *testing.T) {
	const memMax, max = 64 << 10, 1 << 20
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	// Limits in bytes of any one file: the first write (memMax+1) fails at
	// 1000, a later one mid-spool at 300 KB.
	for _, limit := range []uint64{1000, 300 << 10} {
		var old syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old)
		lim := syscall.Rlimit{Cur: limit, Max: old.Max} // the soft limit: it can be raised again
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal("setrlimit:", err)
		}
		b, err := ReadBody(iotestHalfReader{bytes.NewReader(data)}, int64(len(data)), memMax, max, t.TempDir())
		syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		if err == nil || b.Complete() {
			t.Fatalf("limit %d: err %v, complete %v: the disk was not full", limit, err, b.Complete())
		}
		rc := b.Replay(io.NopCloser(nil))
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("limit %d: replay has %d of %d bytes (err %v)", limit, len(got), len(data), err)
		}
	}
	t.Log("replayed intact")
}

// iotestHalfReader returns at most 10000 bytes a read, as a network body does.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	if len(p) > 10000 {
		p = p[:10000]
	}
	return h.r.Read(p)
}

// TestRuleRejectsEmptyLabels: `extra "" ...` and `crm "" ...` were
// accepted (FuzzCaddyfileHandler probes) and became nameless CRM fields;
// they are config errors now, reported with the form's line.
func TestRuleRejectsEmptyLabels(t *testing.T) {
	src := Source{Kind: "static", Value: "x"}
	for _, r := range []*Rule{
		{Title: "A", Submit: ".a", Extra: []Labeled{{Label: " ", Source: src}}},
		{Title: "A", Submit: ".a", CRM: []Labeled{{Label: "", Source: src}}},
	} {
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
