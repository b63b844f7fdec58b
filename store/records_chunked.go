package store

import (
	"context"
	"fmt"
)

// DeleteSessionRecordsChunked removes the records (and index entries) of one
// session of a sandbox in transactions of at most chunk records each, and
// returns how many it removed. DeleteSessionRecords does it in the caller's
// one transaction, which badger refuses past about 10 MB (ErrTxnTooBig:
// some 10,000 records, the default file quota of one exception).
//
// It is not atomic. Use it only where a partial deletion is harmless and
// running it again finishes the job: records of a session whose close has
// not committed (not in effect), or a sandbox already marked for removal.
func (s *Store) DeleteSessionRecordsChunked(ctx context.Context, sandbox string, session uint64, chunk int) (int, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return 0, err
	}
	if chunk <= 0 {
		return 0, fmt.Errorf("store: chunk %d: want at least 1", chunk)
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := s.Update(func(tx *Tx) error {
			var ids []uint64
			prefix := key(pRecSess, sandbox, session)
			err := tx.scan(prefix, false, func(k, _ []byte) error {
				id, ok := tailUint64(k[len(prefix):])
				if !ok {
					return fmt.Errorf("store: malformed index key %q", k)
				}
				ids = append(ids, id)
				if len(ids) == chunk {
					return ErrStop
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := tx.DeleteRecord(id); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		total += n
		if err != nil {
			return total, err
		}
		if n < chunk {
			return total, nil
		}
	}
}
