package store

import (
	"context"
	"errors"
	"fmt"
)

// forIndexBatched is forIndex in a read-only transaction on PostgreSQL:
// the records of a batch of index keys are read in one scanRanges, one
// round trip instead of one per record (a review queue's first page of
// 50 rows: 4 queries instead of 52). Nothing can change a record between
// the index's read and its own in a read-only transaction. Batches grow
// as scan's pages do, so a caller that stops early reads little ahead.
func (tx *Tx) forIndexBatched(ctx context.Context, prefix, from []byte, fn func(*Record) error, missing func(k []byte, id uint64)) error {
	var keys [][]byte // index keys of the batch
	batch := 16
	deliver := func() error {
		recs, err := tx.indexedRecords(ctx, prefix, keys, missing)
		if err != nil {
			return err
		}
		keys, batch = keys[:0], min(4*batch, pgPage)
		for _, r := range recs {
			if r == nil {
				continue // missing, and passed to missing
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	err := tx.scanFrom(ctx, prefix, from, false, func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		if len(keys) < batch {
			return nil
		}
		return deliver()
	})
	if err == nil && len(keys) > 0 {
		if err = deliver(); errors.Is(err, ErrStop) {
			err = nil
		}
	}
	return err
}

// indexedRecords reads the records that the index keys (under prefix) name,
// in their order, in one scanRanges: each range is one record's key. A
// record that does not exist is an error, or with missing set is passed
// to it and left nil.
func (tx *Tx) indexedRecords(ctx context.Context, prefix []byte, keys [][]byte, missing func(k []byte, id uint64)) ([]*Record, error) {
	rs := make([]keyRange, len(keys))
	for i, k := range keys {
		id, ok := tailUint64(k[len(prefix):])
		if !ok {
			return nil, fmt.Errorf("store: malformed index key %q", k)
		}
		rs[i] = keyRange{prefix: key(pRec, id), limit: 1}
	}
	recs := make([]*Record, len(keys))
	err := tx.scanRanges(ctx, rs, true, func(i int, k, v []byte) error {
		if len(k) != len(rs[i].prefix) {
			return nil // a longer key under the record's: not the record
		}
		r, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("store: index %q: record %x: %w", keys[i], k, err)
		}
		id, _ := tailUint64(k)
		if err := checkRecordID(id, r); err != nil {
			return err
		}
		recs[i] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, r := range recs {
		if r == nil {
			id, _ := tailUint64(keys[i][len(prefix):])
			if missing != nil {
				missing(keys[i], id)
				continue
			}
			return nil, fmt.Errorf("store: index %q: record %d: %w", keys[i], id, ErrNotFound)
		}
	}
	return recs, nil
}
