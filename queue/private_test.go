package queue

import (
	"os"
	"strings"
	"testing"
)

// Every file of the store is the owner's alone, those nutsdb makes later
// (a new data file when a segment fills) included.
func TestStoreFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, func(o *Options) { o.SegmentSize = 64 << 10 })
	for i := range 40 {
		l := testLead(i)
		l.Comment = strings.Repeat("x", 4<<10)
		mustAdd(t, s, l, "amo")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := 0
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".dat") {
			data++
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if data < 2 {
		t.Fatalf("%d data files: the segment never rolled over, the test checks nothing new", data)
	}
}
