package queue

import (
	"context"
	"crypto/rand"

	"github.com/nutsdb/nutsdb"
)

// Secret returns the store's random key of that name (32 bytes), created
// on first use and kept in the store: the marker cookie's HMAC key lives
// here, so it survives restarts, is shared by reloads (they share the open
// store) and goes with the store's folder. It is never listed, exported or
// logged.
func (s *Store) Secret(name string) ([]byte, error) {
	key := []byte("secret/" + name)
	var out []byte
	err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
		v, err := tx.Get(bMeta, key)
		if err == nil && len(v) == 32 {
			out = append([]byte(nil), v...)
			return nil
		}
		if err != nil && !isNotFound(err) {
			return err
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		out = b
		return tx.Put(bMeta, key, b, nutsdb.Persistent)
	})
	return out, err
}
