// Package testpages makes the HTML pages the injection tests and the bench
// share, and compresses them with the brotli and zstd commands as sites
// precompress their files. Test-only.
package testpages

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Rows is a page of about n bytes: a small head, a form, then rows of
// Cyrillic text with a hex number each.
func Rows(n int) []byte {
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html>\n<html lang=\"ru\">\n<head>\n<meta charset=\"utf-8\">\n<title>Страница</title>\n</head>\n<body>\n")
	b.WriteString(`<form id="f" action="/contact" method="post"><input name="phone"><button>Отправить</button></form>` + "\n")
	for i := 0; b.Len() < n-20; i++ {
		fmt.Fprintf(&b, "<p class=\"row-%d\">Строка %d: съешь же ещё этих мягких французских булок %x</p>\n", i%7, i, i*2654435761)
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()
}

// Compress runs the brotli or zstd command at level on page, from a file
// (the commands size their parameters to it; zstd from a pipe does not
// know the size).
func Compress(t testing.TB, coding string, level int, page []byte) []byte {
	t.Helper()
	name, args := "brotli", []string{"-q", strconv.Itoa(level), "-c"}
	if coding == "zstd" {
		name, args = "zstd", []string{"-q", "-" + strconv.Itoa(level), "-c"}
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("the %s command is needed: apt-get install -y brotli zstd", name)
	}
	file := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(args, file)...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}
