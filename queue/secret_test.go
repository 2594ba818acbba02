package queue

import (
	"bytes"
	"testing"
)

// The key is made once and kept: the same after a reopen, another per name.
func TestSecretKeptAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	a, err := s.Secret("marker")
	if err != nil || len(a) != 32 {
		t.Fatalf("secret %x, %v", a, err)
	}
	if b, _ := s.Secret("other"); bytes.Equal(a, b) {
		t.Fatal("two names share a key")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, nil)
	if b, _ := s.Secret("marker"); !bytes.Equal(a, b) {
		t.Fatalf("key changed across reopen: %x then %x", a, b)
	}
}
