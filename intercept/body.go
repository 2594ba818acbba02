package intercept

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
)

// Limits on what is parsed out of a body.
const (
	MaxFields   = 200 // fields kept per submission
	MaxFieldLen = 8192
	MaxJSONDept = 32
)

// Field is one submitted name and value.
type Field struct {
	Name, Value string
}

// Fields are a submission's fields in the order they came, excluded ones
// (passwords, card data, CSRF tokens, files) never added.
type Fields []Field

// Add appends a field unless it is excluded, empty-named, or over the limits.
// A repeated name (checkboxes) joins its values with ", ".
func (f *Fields) Add(name, value string) {
	name, value = noNUL(name), noNUL(value)
	name = strings.TrimSpace(clamp(name, 256))
	i := slices.IndexFunc(*f, func(x Field) bool { return x.Name == name })
	// Full: only repeats of kept names join, and the costly checks below
	// are skipped for a body of a hundred thousand new names.
	if name == "" || (i < 0 && len(*f) >= MaxFields) || Excluded(name) || SensitiveValue(value) {
		return
	}
	value = clamp(value, MaxFieldLen)
	if i < 0 {
		*f = append(*f, Field{name, value})
		return
	}
	// Joined values obey MaxFieldLen too: a body repeating one name must
	// not grow one value (quadratically) to the size of the body.
	if x := &(*f)[i]; value != "" && len(x.Value) < MaxFieldLen {
		if x.Value != "" {
			value = ", " + value
		}
		x.Value = clamp(x.Value+value, MaxFieldLen)
	}
}

// noNUL removes NUL bytes: no CRM wants them, and C-string code on the
// way (a CRM's PHP, a shell) cuts the value there.
func noNUL(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// Get returns the value of the first field named name (case-insensitive).
func (f Fields) Get(name string) (string, bool) {
	for _, x := range f {
		if strings.EqualFold(x.Name, name) {
			return x.Value, true
		}
	}
	return "", false
}

// Map returns the fields as a map.
func (f Fields) Map() map[string]string {
	if len(f) == 0 {
		return nil
	}
	m := make(map[string]string, len(f))
	for _, x := range f {
		m[x.Name] = x.Value
	}
	return m
}

var excludedName = regexp.MustCompile(`(?i)(^|[^a-z])(pass(word|wd)?|pwd|csrf|xsrf|_token|authenticity_token|__requestverificationtoken|_wpnonce|nonce|cvv2?|cvc2?|card.?(number|num|no)|cc.?(num|number|csc|exp)|credit.?card|security.?code|exp(iry|iration)?.?(date|month|year))($|[^a-z])|(^|[^a-z])(api.?key|secret|token|pin)$`)

// Excluded reports whether a field name is one that is never captured:
// passwords, card data, CSRF tokens.
func Excluded(name string) bool { return excluded.get(name) }

var excluded = newNameMemo(excludedName.MatchString)

var cardLike = regexp.MustCompile(`^[0-9][0-9 -]{11,22}[0-9]$`)

// SensitiveValue reports a value that looks like a payment card number
// (13–19 digits passing Luhn), whatever the field is called.
func SensitiveValue(v string) bool {
	if len(v) < 13 || len(v) > 25 || !cardLike.MatchString(v) {
		return false
	}
	digits := make([]int, 0, 19)
	for _, c := range v {
		if c >= '0' && c <= '9' {
			digits = append(digits, int(c-'0'))
		}
	}
	if len(digits) < 13 || len(digits) > 19 {
		return false
	}
	sum := 0
	for i := range digits {
		d := digits[len(digits)-1-i]
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// ErrUnsupportedBody is returned for content types that carry no form.
var ErrUnsupportedBody = errors.New("unsupported content type")

// ParseBody extracts the fields of a form post: urlencoded, multipart (file
// parts skipped, read as a stream) or JSON (nested keys joined with dots).
// charset is the page's charset from the marker cookie, if known; values
// that are not valid UTF-8 are decoded with it, else with fallback.
func ParseBody(contentType string, body io.Reader, charset, fallback string) (Fields, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		if contentType == "" {
			return nil, ErrUnsupportedBody
		}
		return nil, fmt.Errorf("content type %q: %w", contentType, err)
	}
	if cs := params["charset"]; cs != "" && charset == "" {
		charset = cs
	}
	dec := newDecoder(charset, fallback)
	var f Fields
	switch {
	case mt == "application/x-www-form-urlencoded":
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		return parseURLEncoded(string(raw), dec)
	case mt == "multipart/form-data":
		boundary := params["boundary"]
		if boundary == "" {
			return nil, errors.New("multipart: no boundary")
		}
		mr := multipart.NewReader(body, boundary)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return f, nil
			}
			if err != nil {
				return f, fmt.Errorf("multipart: %w", err)
			}
			if p.FileName() != "" || p.FormName() == "" {
				io.Copy(io.Discard, p)
				continue
			}
			v, err := io.ReadAll(io.LimitReader(p, MaxFieldLen+1))
			if err != nil {
				return f, fmt.Errorf("multipart: %w", err)
			}
			io.Copy(io.Discard, p)
			f.Add(dec(p.FormName()), dec(string(v)))
		}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		d := json.NewDecoder(body)
		d.UseNumber()
		v, deep, err := readJSON(d, 0)
		if err == nil {
			if _, err = d.Token(); err == io.EOF {
				err = nil
			} else if err == nil {
				err = errors.New("data after the value")
			}
		}
		if err != nil {
			// Malformed or cut short: no lead from half a body, as before.
			return nil, fmt.Errorf("json: %w", err)
		}
		err = flattenJSON(&f, "", v, 0)
		if err == nil && deep {
			err = fmt.Errorf("nested deeper than %d, deeper values skipped", MaxJSONDept)
		}
		if err != nil {
			return f, fmt.Errorf("json: %w", err)
		}
		return f, nil
	case mt == "text/plain":
		// A form with enctype=text/plain: name=value lines.
		raw, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), "="); ok {
				f.Add(dec(k), dec(v))
			}
		}
		return f, nil
	}
	return nil, ErrUnsupportedBody
}

// parseURLEncoded reads name=value pairs in their order. Not url.ParseQuery:
// it loses the order, and past 10000 pairs it returns nothing at all where
// the first MaxFields fields are wanted. A pair with a bad escape is
// skipped, as ParseQuery skips it.
func parseURLEncoded(raw string, dec func(string) string) (Fields, error) {
	var f Fields
	var firstErr error
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err := errors.Join(err1, err2); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("urlencoded: %w", err)
			}
			continue
		}
		f.Add(dec(k), dec(v))
	}
	if len(f) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return f, nil
}

// readJSON reads one value with d's tokenizer, which has no nesting limit
// (json.Unmarshal refuses a body nested 10,000 deep as a whole): objects
// and arrays nested past MaxJSONDept are read through and left out, deep
// reports it.
func readJSON(d *json.Decoder, depth int) (v any, deep bool, err error) {
	t, err := d.Token()
	if err != nil {
		return nil, false, err
	}
	delim, ok := t.(json.Delim)
	if !ok {
		return t, false, nil
	}
	if depth >= MaxJSONDept {
		return skipped{}, true, skipJSON(d)
	}
	var m map[string]any
	var a []any
	if delim == '{' {
		m = map[string]any{}
	}
	for d.More() {
		k := ""
		if m != nil {
			kt, err := d.Token()
			if err != nil {
				return m, deep, err
			}
			k, _ = kt.(string)
		}
		x, dp, err := readJSON(d, depth+1)
		deep = deep || dp
		if _, skip := x.(skipped); !skip {
			if m != nil {
				m[k] = x
			} else {
				a = append(a, x)
			}
		}
		if err != nil {
			if m != nil {
				return m, deep, err
			}
			return a, deep, err
		}
	}
	_, err = d.Token() // the closing delimiter
	if m != nil {
		return m, deep, err
	}
	return a, deep, err
}

// skipped stands for a value nested too deep to keep.
type skipped struct{}

// skipJSON reads to the end of the object or array whose opening delimiter
// was just read, without recursion.
func skipJSON(d *json.Decoder) error {
	for open := 1; open > 0; {
		t, err := d.Token()
		if err != nil {
			return err
		}
		if delim, ok := t.(json.Delim); ok {
			if delim == '{' || delim == '[' {
				open++
			} else {
				open--
			}
		}
	}
	return nil
}

func flattenJSON(f *Fields, prefix string, v any, depth int) error {
	if depth > MaxJSONDept {
		return fmt.Errorf("json: nested deeper than %d", MaxJSONDept)
	}
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := flattenJSON(f, join(k), x[k], depth+1); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if len(*f) >= MaxFields {
				return nil
			}
			if err := flattenJSON(f, join(strconv.Itoa(i)), e, depth+1); err != nil {
				return err
			}
		}
	case nil:
		f.Add(prefix, "")
	case skipped:
	case string:
		f.Add(prefix, x)
	default:
		f.Add(prefix, fmt.Sprint(x))
	}
	return nil
}

// newDecoder returns a function turning submitted bytes into UTF-8: valid
// CheckCharset reports whether name is a charset label browsers know
// ("windows-1251", "koi8-r", "cp1251"), so a typo fails at config load.
func CheckCharset(name string) error {
	if _, err := htmlindex.Get(name); err != nil {
		return fmt.Errorf("charset %q is not a known charset label (like windows-1251 or koi8-r)", name)
	}
	return nil
}

// UTF-8 stays as it is unless the page's charset says otherwise; other
// bytes are decoded with the page's charset or the fallback
// (windows-1251 by default, the commonest legacy charset of our users).
func newDecoder(charset, fallback string) func(string) string {
	cs := strings.ToLower(strings.TrimSpace(charset))
	if cs == "" || cs == "utf-8" || cs == "utf8" {
		cs = ""
	}
	if fallback == "" {
		fallback = "windows-1251"
	}
	decodeWith := func(name, s string) (string, bool) {
		enc, err := htmlindex.Get(name)
		if err != nil {
			return "", false
		}
		out, err := enc.NewDecoder().String(s)
		return out, err == nil
	}
	return func(s string) string {
		if cs != "" && !isASCII(s) {
			if out, ok := decodeWith(cs, s); ok {
				return out
			}
		}
		if utf8.ValidString(s) {
			return s
		}
		if out, ok := decodeWith(fallback, s); ok {
			return out
		}
		return strings.ToValidUTF8(s, "\uFFFD")
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// BodyCopy is a request body read ahead so it can be parsed and then
// replayed to the upstream byte for byte. Bodies up to memMax stay in
// memory; larger ones (multipart uploads) go to a temporary file.
type BodyCopy struct {
	mem      []byte
	file     *os.File
	size     int64
	complete bool      // the whole body was read (not over max)
	rest     io.Reader // what was not read, when over max
}

// ReadBody reads body up to max bytes. When it is longer, Complete is false
// and Replay streams what was read followed by the rest of body. length is
// the declared Content-Length (-1: unknown), only a hint for the first
// buffer: a body longer or shorter than declared is read as it is.
func ReadBody(body io.Reader, length, memMax, max int64, tmpDir string) (*BodyCopy, error) {
	b := &BodyCopy{}
	w, err := readMem(body, length, min(memMax, max)+1)
	n := int64(len(w))
	b.size = n
	if err != nil {
		b.mem = w
		b.rest = body
		return b, err
	}
	if n <= min(memMax, max) {
		b.mem = w
		b.complete = true
		return b, nil
	}
	if memMax >= max {
		b.mem = w
		b.rest = body
		return b, nil
	}
	f, err := os.CreateTemp(tmpDir, "leadproxy-body-*")
	if err != nil {
		b.mem = w
		b.rest = body
		return b, err
	}
	os.Remove(f.Name()) // unlinked: gone with the last close, even on a crash
	if _, err := f.Write(w); err != nil {
		// Disk full or read-only: what was read is still in memory.
		f.Close()
		b.mem = w
		b.rest = body
		return b, err
	}
	b.file = f
	unwritten, err := b.spool(io.LimitReader(body, max+1-n))
	if err != nil {
		// Replay what the file holds, then what it refused, then the rest:
		// the upstream loses no byte when the disk fills mid-body.
		b.rest = io.MultiReader(bytes.NewReader(unwritten), body)
		return b, err
	}
	if b.size > max {
		// Too big to capture: replay from the file then the rest.
		b.rest = body
		return b, nil
	}
	b.complete = true
	return b, nil
}

// readMem reads up to limit bytes of body into memory: at EOF it returns
// what it read and nil. The first buffer fits a declared length (a form
// post is a few hundred bytes), else 4 KiB; it grows by doubling.
func readMem(body io.Reader, length, limit int64) ([]byte, error) {
	size := int64(4096)
	if length >= 0 && length < size {
		size = length + 1 // one more byte to see the end without growing
	}
	buf := make([]byte, 0, min(size, limit))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := body.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// spool appends src to the file, counting in size what the file holds. On
// a write error it returns the bytes read but not written.
func (b *BodyCopy) spool(src io.Reader) (unwritten []byte, err error) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := b.file.Write(buf[:n])
			b.size += int64(w)
			if werr != nil {
				return buf[w:n], werr
			}
		}
		if rerr == io.EOF {
			return nil, nil
		}
		if rerr != nil {
			return nil, rerr
		}
	}
}

// Complete reports whether the whole body was read (and may be parsed).
func (b *BodyCopy) Complete() bool { return b.complete }

// Size is the number of bytes read ahead.
func (b *BodyCopy) Size() int64 { return b.size }

// Reader returns the read-ahead bytes from the start.
func (b *BodyCopy) Reader() io.Reader {
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.size)
	}
	return bytes.NewReader(b.mem)
}

// Replay returns the body for the upstream: the read-ahead bytes, then
// whatever was not read. Closing it releases the temporary file.
func (b *BodyCopy) Replay(orig io.Closer) io.ReadCloser {
	r := b.Reader()
	if b.rest != nil {
		r = io.MultiReader(r, b.rest)
	}
	return &replay{Reader: r, b: b, orig: orig}
}

// Close releases the temporary file, if any.
func (b *BodyCopy) Close() error {
	if b.file != nil {
		err := b.file.Close()
		b.file = nil
		return err
	}
	return nil
}

type replay struct {
	io.Reader
	b    *BodyCopy
	orig io.Closer
}

func (r *replay) Close() error {
	r.b.Close()
	if r.orig != nil {
		return r.orig.Close()
	}
	return nil
}
