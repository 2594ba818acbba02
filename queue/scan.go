package queue

import (
	"bytes"

	"github.com/nutsdb/nutsdb"
)

// eachKey calls fn for the keys of bucket from `from` (nil: the first key)
// in order, or from `from` downwards when reverse (nil: the last key; a
// `from` itself is skipped, as a cursor), until fn returns false. It sees
// committed state only, not the transaction's own pending writes.
func eachKey(tx *nutsdb.Tx, bucket string, from []byte, reverse bool, fn func(k []byte) bool) {
	it := nutsdb.NewIterator(tx, bucket, nutsdb.IteratorOptions{Reverse: reverse})
	if it == nil {
		return
	}
	defer it.Release()
	ok := it.Valid()
	if from != nil {
		// Seek lands on the first key >= from in both directions.
		ok = it.Seek(from)
		if reverse {
			if !ok {
				ok = it.Rewind() // every key is below from: start at the last
			}
			for ok && bytes.Compare(it.Key(), from) >= 0 {
				ok = it.Next()
			}
		}
	}
	for ; ok; ok = it.Next() {
		if !fn(it.Key()) {
			return
		}
	}
}

// scanKeys returns copies of the keys in [from, to) (nil bounds are open),
// at most limit of them (0: no limit).
func scanKeys(tx *nutsdb.Tx, bucket string, from, to []byte, limit int) [][]byte {
	var keys [][]byte
	eachKey(tx, bucket, from, false, func(k []byte) bool {
		if to != nil && bytes.Compare(k, to) >= 0 {
			return false
		}
		keys = append(keys, bytes.Clone(k))
		return limit <= 0 || len(keys) < limit
	})
	return keys
}

// countKeys counts the keys of bucket (they live in RAM: no disk reads).
func countKeys(tx *nutsdb.Tx, bucket string) int {
	n := 0
	eachKey(tx, bucket, nil, false, func([]byte) bool { n++; return true })
	return n
}
