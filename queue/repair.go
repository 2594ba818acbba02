package queue

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"
	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"
)

// repairTails makes the data files readable again after a write that
// failed half-way (disk full, the power cut mid-write). nutsdb appends each
// transaction with one write; when the write fails it keeps its offset and
// writes the next transaction there, so the part of the failed one that did
// reach the disk stays behind the last good entry. There nutsdb's recovery
// stops with an error or panics on the garbage header, and the store never
// opens again. Such bytes were never acknowledged: when nothing committed
// follows the last entry that parses and passes its checksum, everything
// after it is cut. Damage with committed entries behind it is left for
// nutsdb.Open to report (the folder may hold undelivered leads), and so is
// a folder locked by another process.
func repairTails(dir string, log *zap.Logger) error {
	lock := flock.New(filepath.Join(dir, nutsdb.FLockName))
	if ok, err := lock.TryLock(); err != nil || !ok {
		return nil
	}
	defer lock.Unlock()
	names, _ := filepath.Glob(filepath.Join(dir, "*"+nutsdb.DataSuffix))
	for _, name := range names {
		if _, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(name), nutsdb.DataSuffix)); err != nil {
			continue
		}
		if err := repairTail(name, log); err != nil {
			return err
		}
	}
	return nil
}

func repairTail(name string, log *zap.Logger) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	size := int64(len(data))
	end := validEnd(data)
	data = bytes.TrimRight(data, "\x00")
	if int(end) >= len(data) || !tornTail(data, int(end)) {
		return nil
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// Cut, then grow back: the tail becomes a hole of zeros, which takes
	// no space on a disk that may still be full.
	if err := f.Truncate(end); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	log.Warn("lead store: cut what a failed write left behind the last good entry (disk full or a crash mid-write); nothing acknowledged was in it",
		zap.String("file", name), zap.Int64("at", end))
	return nil
}

// validEnd returns the offset after the last whole entry of a nutsdb data
// file.
func validEnd(data []byte) int64 {
	off := 0
	for {
		next, _, ok := nextEntry(data, off)
		if !ok {
			return int64(off)
		}
		off = next
	}
}

// tornTail reports whether no committed entry starts anywhere after off:
// the bytes there are what a failed write left (a transaction's last entry
// carries its commit, and a failed write never has its last entry whole).
func tornTail(data []byte, off int) bool {
	for p := off + 1; p < len(data); p++ {
		if _, status, ok := nextEntry(data, p); ok && status == uint64(nutsdb.Committed) {
			return false
		}
	}
	return true
}

// nextEntry parses the entry at off in the format of nutsdb's Entry.Encode:
// crc32 (over the rest of the entry), nine uvarints (timestamp, key size,
// value size, flag, ttl, status, ds, tx id, bucket id), key, value. It
// returns where the next one starts and the entry's status, or false at
// zeros (nutsdb's end) and at anything that is not a whole entry with its
// checksum.
func nextEntry(data []byte, off int) (next int, status uint64, ok bool) {
	if len(data)-off < nutsdb.MinEntryHeaderSize {
		return off, 0, false
	}
	crc := binary.LittleEndian.Uint32(data[off:])
	i := off + 4
	var f [9]uint64
	for k := range f {
		v, n := binary.Uvarint(data[i:min(len(data), i+binary.MaxVarintLen64)])
		if n <= 0 {
			return off, 0, false
		}
		f[k], i = v, i+n
	}
	ts, ksz, vsz := f[0], f[1], f[2]
	if crc == 0 && ts == 0 && ksz == 0 && vsz == 0 {
		return off, 0, false
	}
	if ksz > uint64(len(data)) || vsz > uint64(len(data)) || i+int(ksz+vsz) > len(data) {
		return off, 0, false
	}
	next = i + int(ksz+vsz)
	if crc32.ChecksumIEEE(data[off+4:next]) != crc {
		return off, 0, false
	}
	return next, f[5], true
}
