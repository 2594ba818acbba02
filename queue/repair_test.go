package queue

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/leadproxy/leadproxy/lead"
)

// TestOpenAfterDiskFull: testdata/diskfull is a store folder as a full disk
// left it (caddymodule's TestHardeningFullStore: a 4 MB tmpfs): three
// acknowledged leads, then the tail of a transaction whose write failed
// with ENOSPC behind them. nutsdb.Open panicked on it ("slice bounds out of
// range" in Entry.ParseMeta); it opens now, with the three leads, and
// takes new ones that survive a reopen.
func TestOpenAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"0.dat", "bucket.Meta"} {
		b, err := os.ReadFile(filepath.Join("testdata", "diskfull", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	s := openStore(t, dir, nil)
	phones := map[string]bool{}
	leads, _, err := s.List(Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leads {
		phones[l.Phone] = true
	}
	for _, p := range []string{"+79990000401", "+79990000402", "+79990000451"} {
		if !phones[p] {
			t.Errorf("acknowledged lead %s lost (have %v)", p, phones)
		}
	}
	added := mustAdd(t, s, testLead(1))
	s.Close()
	s = openStore(t, dir, nil)
	if _, err := s.Get(added.ID); err != nil {
		t.Fatalf("a lead added after the repair: %v", err)
	}
}

// TestOpenCutsFailedWriteTail: whatever a failed write left after the last
// good entry (a garbage header, a half entry with a bad checksum) is cut;
// the entries before it stay, and a folder without such a tail is not
// touched.
func TestOpenCutsFailedWriteTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(last []byte) []byte
	}{
		{"garbage header", func([]byte) []byte {
			return []byte("\xef\xb2\xc6c\x9f\xe4\xb5\xd2\xa1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x014\"\x00")
		}},
		{"half an entry", func(last []byte) []byte { return last[:len(last)/2] }},
		{"an entry with a bad checksum", func(last []byte) []byte {
			b := bytes.Clone(last)
			b[len(b)-1] ^= 0xff
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, nil)
			var ids []string
			for i := 0; i < 3; i++ {
				ids = append(ids, mustAdd(t, s, testLead(i)).ID)
			}
			s.Close()
			data, err := os.ReadFile(filepath.Join(dir, "0.dat"))
			if err != nil {
				t.Fatal(err)
			}
			end := validEnd(data)
			if len(bytes.Trim(data[end:], "\x00")) != 0 {
				t.Fatal("a clean store has a tail")
			}
			// The tail starts where the next write would have; its bytes
			// are those of a real entry (the last one, again).
			f, err := os.OpenFile(filepath.Join(dir, "0.dat"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(tc.tail(lastEntry(data[:end])), end)
			f.Close()

			s = openStore(t, dir, nil)
			for _, id := range ids {
				if _, err := s.Get(id); err != nil {
					t.Fatalf("lead %s: %v", id, err)
				}
			}
			more := mustAdd(t, s, &lead.Lead{Form: "x", Phone: "+79990009999"})
			s.Close()
			s = openStore(t, dir, nil)
			if _, err := s.Get(more.ID); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Add(context.Background(), testLead(9), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// lastEntry returns the bytes of the last entry in data.
func lastEntry(data []byte) []byte {
	start, off := 0, 0
	for {
		next, _, ok := nextEntry(data, off)
		if !ok {
			return data[start:off]
		}
		start, off = off, next
	}
}
