package visit

import (
	"net/http/httptest"
	"testing"
	"time"
)

// The page path's share of visit recording (bench/visits.sh measures it
// end to end): a known visit is ReadID and Confirm; a new one FromRequest,
// NewID and Seen.

func BenchmarkKnownVisit(b *testing.B) {
	rec := NewRecorder(openBenchDB(b), nil)
	defer rec.Close()
	r := httptest.NewRequest("GET", "http://shop.example/catalog/sofas?page=2", nil)
	r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; _ym_uid=1700000000123456789; roistat_visit=117721528023645566; PHPSESSID=abcdef0123456789")
	rec.Seen(&Visit{ID: NewID(time.Now()), At: time.Now()}) // one waiting: Confirm takes its lock path
	b.ReportAllocs()
	for b.Loop() {
		if id := ReadID(r); id != "" {
			rec.Confirm(id)
		}
	}
}

func BenchmarkNewVisit(b *testing.B) {
	rec := NewRecorder(openBenchDB(b), nil)
	defer rec.Close()
	r := httptest.NewRequest("GET", "http://shop.example/landing?utm_source=yandex&utm_medium=cpc&utm_campaign=spring&yclid=123456789", nil)
	r.Header.Set("Referer", "https://yandex.ru/search/?text=sofa")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		v := FromRequest(r, NewID(now), now)
		SetCookie(w.Header(), v.ID, DefaultRetention, false)
		w.Header().Del("Set-Cookie")
		rec.Seen(v)
	}
}

func openBenchDB(b *testing.B) *DB {
	d, err := OpenDB(DBOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}
