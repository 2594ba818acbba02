package intercept

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

// FuzzReadBody: however the body arrives (read sizes, a client that drops
// mid-body) and whatever the limits, the replay to the upstream is the body
// byte for byte, Complete says whether it fitted, and a complete read-ahead
// is the whole body, whatever Content-Length declared. With noTmp the temporary folder is missing, as on a
// broken disk.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte("name=x&phone=1"), uint16(4), uint16(16), uint8(3), uint16(0), false)
	f.Add(bytes.Repeat([]byte("0123456789"), 300), uint16(100), uint16(1000), uint8(7), uint16(0), false)
	f.Add(bytes.Repeat([]byte{0, 0xff}, 700), uint16(100), uint16(2000), uint8(64), uint16(900), true)
	f.Add([]byte{}, uint16(0), uint16(0), uint8(0), uint16(0), false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, memMax, max uint16, chunk uint8, failAt uint16, noTmp bool) {
		tmp := dir
		if noTmp {
			tmp = filepath.Join(dir, "missing")
		}
		src := &hostileReader{data: data, chunk: int(chunk%64) + 1, failAt: int(failAt)}
		want := data
		if src.failAt > 0 && src.failAt < len(data) {
			want = data[:src.failAt]
		}
		// The declared length is only a hint: absent, right, or wrong
		// either way, the body read is the body sent.
		declared := []int64{-1, int64(len(data)), int64(len(data) / 2), int64(len(data))*2 + 1}[chunk%4]
		b, err := ReadBody(src, declared, int64(memMax), int64(max), tmp)
		if err == nil && src.failAt == 0 && !noTmp && b.Complete() != (len(data) <= int(max)) {
			t.Fatalf("%d bytes, max %d: complete=%v", len(data), max, b.Complete())
		}
		if b.Complete() {
			got, _ := io.ReadAll(b.Reader())
			if !bytes.Equal(got, data) {
				t.Fatalf("complete read-ahead has %d of %d bytes", len(got), len(data))
			}
		}
		rc := b.Replay(io.NopCloser(nil))
		got, rerr := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("replay has %d bytes, want %d (read err %v, replay err %v)", len(got), len(want), err, rerr)
		}
		// A dropped body must reach the upstream as an error, never as a
		// shorter body that looks whole; a whole one with none.
		dropped := src.failAt > 0 && src.failAt < len(data)
		if dropped != (rerr != nil) || !dropped && err != nil && !noTmp {
			t.Fatalf("errors: read %v, replay %v, drop at %d of %d", err, rerr, src.failAt, len(data))
		}
	})
}

var errDropped = errors.New("client dropped")

// hostileReader returns at most chunk bytes a read and fails after failAt
// bytes (0: never).
type hostileReader struct {
	data   []byte
	off    int
	chunk  int
	failAt int
}

func (h *hostileReader) Read(p []byte) (int, error) {
	if h.failAt > 0 && h.failAt < len(h.data) && h.off >= h.failAt {
		return 0, errDropped
	}
	if h.off >= len(h.data) {
		return 0, io.EOF
	}
	n := min(len(p), h.chunk, len(h.data)-h.off)
	if h.failAt > 0 && h.failAt < len(h.data) {
		n = min(n, h.failAt-h.off)
	}
	copy(p, h.data[h.off:h.off+n])
	h.off += n
	return n, nil
}
