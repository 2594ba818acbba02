package intercept

import (
	"strings"
	"testing"
	"unsafe"
)

// A remembered name must not keep the request body it was cut from alive.
func TestNameMemoClonesKeys(t *testing.T) {
	calls := 0
	m := newNameMemo(func(s string) int { calls++; return len(s) })
	body := "phone=1&" + strings.Repeat("x", 1<<20)
	name := body[:5] // as url.ParseQuery returns a name with nothing to unescape
	if m.get(name) != 5 || m.get(name) != 5 || calls != 1 {
		t.Fatalf("calls = %d, want one computation for two gets", calls)
	}
	for k := range m.seen {
		if unsafe.StringData(k) == unsafe.StringData(body) {
			t.Fatal("the remembered key points into the body")
		}
	}
	long := strings.Repeat("n", memoMaxKey+1)
	m.get(long)
	m.get(long)
	if calls != 3 || m.len() != 1 {
		t.Errorf("a name over %d bytes: calls %d, %d names remembered; want it computed each time, not kept", memoMaxKey, calls, m.len())
	}
}
