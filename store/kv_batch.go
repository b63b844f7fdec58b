package store

import (
	"bytes"
	"context"
	"errors"
)

// keyRange is one range of a batched scan (kvTx.scanRanges): the keys with
// prefix that are not before from (nil: the start of prefix), at most
// limit of them (0: all).
type keyRange struct {
	prefix, from []byte
	limit        int
}

// start is the first key the range may hold.
func (r keyRange) start() []byte {
	if bytes.Compare(r.from, r.prefix) > 0 {
		return r.from
	}
	return r.prefix
}

// errRangeFull ends the scan of one range at its limit.
var errRangeFull = errors.New("store: range full")

// scanRangesEach is scanRanges as one scan per range, in range order: the
// badger driver's (an iterator per range costs no round trip), and the
// fallback of PostgreSQL's for ranges it cannot batch.
func scanRangesEach(ctx context.Context, t kvTx, rs []keyRange, values bool, fn func(i int, k, v []byte) error) error {
	for i, r := range rs {
		if err := scanRangeOne(ctx, t, r, i, values, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanRangeOne scans range r (number i) with t.scan, stopping at its limit.
func scanRangeOne(ctx context.Context, t kvTx, r keyRange, i int, values bool, fn func(i int, k, v []byte) error) error {
	n := 0
	err := t.scan(ctx, r.prefix, r.from, values, func(k, v []byte) error {
		if err := fn(i, k, v); err != nil {
			return err
		}
		if n++; r.limit > 0 && n == r.limit {
			return errRangeFull
		}
		return nil
	})
	if errors.Is(err, errRangeFull) {
		return nil
	}
	return err
}

// scanRanges is tx.b.scanRanges with the store's error classes; fn
// returning ErrStop ends the whole scan without error.
func (tx *Tx) scanRanges(ctx context.Context, rs []keyRange, values bool, fn func(i int, k, v []byte) error) error {
	err := tx.b.scanRanges(ctx, rs, values, fn)
	if errors.Is(err, ErrStop) {
		return nil
	}
	return translate(err)
}

// nextN draws n values of the named counter, in increasing order.
func (tx *Tx) nextN(name string, n int) ([]uint64, error) {
	ids, err := tx.b.nextN(name, n)
	return ids, translate(err)
}

// ReadAheadMeta reads the meta values of names in as few round trips as
// the driver can, so that GetMeta answers them without one: for a
// listing that would read one of them per sandbox.
func (tx *Tx) ReadAheadMeta(names []string) error {
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = []byte(pMeta + n)
	}
	return translate(tx.b.readAhead(keys))
}

// ReadAheadPending reads what PendingCount(sb.Name) reads for each of
// sbs in as few round trips as the driver can.
func (tx *Tx) ReadAheadPending(sbs []*Sandbox) error {
	keys := make([][]byte, len(sbs))
	for i, sb := range sbs {
		keys[i] = key(pPending, sb.Name)
	}
	return translate(tx.b.readAhead(keys))
}
