package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
)

// recordIndexKeys lists the index entries of r.
func recordIndexKeys(r *Record) [][]byte {
	ks := [][]byte{
		key(pRecSb, r.Sandbox, r.ID),
		key(pRecPath, r.Sandbox, r.Path, r.ID),
		key(pRecSess, r.Sandbox, r.Session, r.ID),
	}
	if r.Exception != "" {
		ks = append(ks, key(pRecExc, r.Exception, r.ID))
	}
	if r.Status == change.StatusPending {
		ks = append(ks, key(pPend, r.ID), key(pPendSb, r.Sandbox, r.ID))
	}
	return ks
}

// PutRecord inserts or updates a record and keeps its indexes right.
func (tx *Tx) PutRecord(r *Record) error {
	if r.ID == 0 {
		return fmt.Errorf("store: record without id")
	}
	if err := checkName("sandbox", r.Sandbox); err != nil {
		return err
	}
	if strings.IndexByte(r.Path, 0) >= 0 || strings.IndexByte(r.Exception, 0) >= 0 {
		return fmt.Errorf("store: record %d: path or exception contains NUL", r.ID)
	}
	var stale [][]byte
	old, err := tx.GetRecord(r.ID)
	switch {
	case err == nil:
		stale = recordIndexKeys(old)
	case !isNotFound(err):
		return err
	}
	tx.movePending(old, r)
	if err := tx.put(key(pRec, r.ID), r); err != nil {
		return err
	}
	if err := tx.refreshCopies(old, r); err != nil {
		return err
	}
	fresh := recordIndexKeys(r)
	for _, k := range stale {
		if !containsKey(fresh, k) {
			if err := tx.del(k); err != nil {
				return err
			}
		}
	}
	for _, k := range fresh {
		if !containsKey(stale, k) {
			if err := tx.set(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func containsKey(ks [][]byte, k []byte) bool {
	for _, x := range ks {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// GetRecord returns record id.
func (tx *Tx) GetRecord(id uint64) (*Record, error) {
	v, ok, err := tx.get(key(pRec, id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("record %d: %w", id, ErrNotFound)
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", id, err)
	}
	if err := checkRecordID(id, r); err != nil {
		return nil, err
	}
	return r, nil
}

// checkRecordID refuses a record read under key r:ID whose value names
// another id. spillway never writes one, but any host of a shared ledger
// can: callers decide, link and write back by the value's id, so a row
// shown as one record would make a decision apply to another.
func checkRecordID(id uint64, r *Record) error {
	if r.ID != id {
		return errclass.Errorf(errdefs.ErrDataLoss, "store: record row %d names record %d, a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", id, r.ID)
	}
	return nil
}

// DeleteRecord removes record id and its index entries.
func (tx *Tx) DeleteRecord(id uint64) error {
	r, err := tx.GetRecord(id)
	if err != nil {
		return err
	}
	for _, k := range recordIndexKeys(r) {
		if err := tx.del(k); err != nil {
			return err
		}
	}
	tx.movePending(r, nil)
	return tx.del(key(pRec, id))
}

// forIndex calls fn with the record of every index key under prefix, in key
// order (the id is the key's last 8 bytes).
func (tx *Tx) forIndex(ctx context.Context, prefix []byte, fn func(*Record) error) error {
	return tx.forIndexFrom(ctx, prefix, nil, fn, nil)
}

// forIndexFrom is forIndex from the index key from on (nil: the start).
// An entry whose record does not exist is an error, or with missing set
// is passed to it (its key and id) and skipped.
func (tx *Tx) forIndexFrom(ctx context.Context, prefix, from []byte, fn func(*Record) error, missing func(k []byte, id uint64)) error {
	if tx.batchReads {
		return tx.forIndexBatched(ctx, prefix, from, fn, missing)
	}
	return tx.scanFrom(ctx, prefix, from, false, func(k, _ []byte) error {
		id, ok := tailUint64(k[len(prefix):])
		if !ok {
			return fmt.Errorf("store: malformed index key %q", k)
		}
		r, err := tx.GetRecord(id)
		if missing != nil && isNotFound(err) {
			missing(k, id)
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: index %q: %w", k, err)
		}
		return fn(r)
	})
}

// ForEachRecord calls fn for the records of one sandbox ("" = all), by
// ascending id. fn may return ErrStop.
func (tx *Tx) ForEachRecord(ctx context.Context, sandbox string, fn func(*Record) error) error {
	if sandbox != "" {
		return tx.forIndex(ctx, key(pRecSb, sandbox), fn)
	}
	return tx.scanCtx(ctx, []byte(pRec), true, func(k, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("record key %x: %w", k, err)
		}
		id, ok := tailUint64(k)
		if !ok || len(k) != len(pRec)+8 {
			return fmt.Errorf("store: malformed record key %q", k)
		}
		if err := checkRecordID(id, r); err != nil {
			return err
		}
		return fn(r)
	})
}

// ForEachPending calls fn for the pending records of one sandbox ("" = all),
// by ascending id. Only the pending index is read. fn may return ErrStop.
func (tx *Tx) ForEachPending(ctx context.Context, sandbox string, fn func(*Record) error) error {
	return tx.ForEachPendingAfter(ctx, sandbox, 0, fn)
}

// ForEachPendingAfter is ForEachPending from the first id above after (0:
// from the first): a page deep in the review queue reads its own index
// entries only, not every one before it.
func (tx *Tx) ForEachPendingAfter(ctx context.Context, sandbox string, after uint64, fn func(*Record) error) error {
	return tx.ForEachPendingMissing(ctx, sandbox, after, fn, nil)
}

// ForEachPendingMissing is ForEachPendingAfter passing to missing (when
// not nil) the id of each entry that names no record. Such an entry is
// skipped by every pending walk: spillway never writes one, but a host
// that writes a shared ledger can, and one row must not take the review
// queue down for every reviewer. check lists them (DanglingPending).
func (tx *Tx) ForEachPendingMissing(ctx context.Context, sandbox string, after uint64, fn func(*Record) error, missing func(id uint64)) error {
	prefix := []byte(pPend)
	if sandbox != "" {
		prefix = key(pPendSb, sandbox)
	}
	from, ok := keyAfter(prefix, after)
	if !ok {
		return nil
	}
	return tx.forIndexFrom(ctx, prefix, from, fn, func(_ []byte, id uint64) {
		if missing != nil {
			missing(id)
		}
	})
}

// DanglingPending calls fn for each entry of the pending indexes that
// names a record that does not exist: of the index of all sandboxes
// (sandbox "") and of each sandbox's, as its key names it. It reads the
// index keys and whether each record's key is there, not the records: a
// batch of keys a round trip on PostgreSQL.
func (tx *Tx) DanglingPending(ctx context.Context, fn func(sandbox string, id uint64) error) error {
	type entry struct {
		sandbox string
		id      uint64
	}
	var found, batch []entry
	flush := func() error {
		rs := make([]keyRange, len(batch))
		for i, e := range batch {
			rs[i] = keyRange{prefix: key(pRec, e.id), limit: 1}
		}
		there := make([]bool, len(batch))
		err := tx.scanRanges(ctx, rs, false, func(i int, k, _ []byte) error {
			there[i] = there[i] || len(k) == len(rs[i].prefix) // not a longer key under it
			return nil
		})
		for i, e := range batch {
			if !there[i] {
				found = append(found, e)
			}
		}
		batch = batch[:0]
		return err
	}
	for _, prefix := range []string{pPend, pPendSb} {
		err := tx.scanFrom(ctx, []byte(prefix), nil, false, func(k, _ []byte) error {
			id, ok := tailUint64(k[len(prefix):])
			if !ok {
				return fmt.Errorf("store: malformed index key %q", k)
			}
			sb := ""
			if prefix == pPendSb {
				rest := k[len(prefix):]
				sb = string(rest[:max(bytes.IndexByte(rest, 0), 0)])
			}
			if batch = append(batch, entry{sb, id}); len(batch) == pgPage {
				return flush()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = flush()
		}
		if err != nil {
			return err
		}
	}
	for _, f := range found {
		if err := fn(f.sandbox, f.id); err != nil {
			return err
		}
	}
	return nil
}

// ForEachExceptionRecord calls fn for the records an exception let through
// (or refused), by ascending id. fn may return ErrStop.
func (tx *Tx) ForEachExceptionRecord(ctx context.Context, exceptionID string, fn func(*Record) error) error {
	if err := checkName("exception", exceptionID); err != nil {
		return err
	}
	return tx.forIndex(ctx, key(pRecExc, exceptionID), fn)
}

// PathHistory returns every record of one path of a sandbox, by ascending id.
func (tx *Tx) PathHistory(sandbox, path string) ([]*Record, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return nil, err
	}
	var out []*Record
	collect := func(r *Record) error {
		out = append(out, r)
		return nil
	}
	ctx, prefix := context.Background(), key(pRecPath, sandbox, path)
	if _, pg := tx.b.(*pgTx); pg {
		// Batched in any transaction, not only a view's: collect changes
		// no record while the walk reads ahead, and a decision on a
		// document of 1,000 versions (refreshCurrent) would otherwise
		// make 1,000 round trips.
		err := tx.forIndexBatched(ctx, prefix, nil, collect, nil)
		return out, err
	}
	err := tx.forIndex(ctx, prefix, collect)
	return out, err
}

// DeleteSessionRecords removes the records (and index entries) of one
// session of a sandbox and returns how many it removed.
func (tx *Tx) DeleteSessionRecords(sandbox string, session uint64) (int, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return 0, err
	}
	var ids []uint64
	err := tx.forIndex(context.Background(), key(pRecSess, sandbox, session), func(r *Record) error {
		ids = append(ids, r.ID)
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := tx.DeleteRecord(id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// ForEachSessionRecord calls fn for each record of one session of a
// sandbox, by ascending id.
func (tx *Tx) ForEachSessionRecord(ctx context.Context, sandbox string, session uint64, fn func(*Record) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	return tx.forIndex(ctx, key(pRecSess, sandbox, session), fn)
}
