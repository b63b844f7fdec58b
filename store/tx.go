package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Tx is one transaction; read-only inside View.
type Tx struct {
	b       kvTx
	s       *Store
	counts  map[string]Counts            // counters written by this transaction (current_counts.go)
	changed map[countsAt]map[string]bool // index paths it changed, for settleCounts
	// before: entries of changed paths as the ledger held them before this
	// transaction, read along by StageRecords (current_counts_known.go)
	before  map[countsAt]map[string][]byte
	pending map[string]int64 // pending counts it moved, by sandbox
	// batchReads: a read-only transaction on PostgreSQL, whose index
	// walks read their records in batches (records_view.go).
	batchReads bool
	// opened caches SessionOpened.
	opened map[sessionKey]time.Time
	// inEffect caches PathInEffect until the transaction writes (writes
	// counts them).
	inEffect map[pathKey][]*Record
	writes   uint64
	cachedAt uint64
}

type pathKey struct{ sandbox, path string }

type sessionKey struct {
	sandbox string
	n       uint64
}

// SessionOpened says when session n of sandbox was opened (zero: no such
// session, or it cannot be read), once per transaction (an OpenedFunc).
func (tx *Tx) SessionOpened(sandbox string, n uint64) time.Time {
	k := sessionKey{sandbox, n}
	if t, ok := tx.opened[k]; ok {
		return t
	}
	var t time.Time
	if se, err := tx.GetSession(sandbox, n); err == nil {
		t = se.Opened
	}
	if tx.opened == nil {
		tx.opened = map[sessionKey]time.Time{}
	}
	tx.opened[k] = t
	return t
}

// get returns the value at k, or ok=false when it is absent.
func (tx *Tx) get(k []byte) (v []byte, ok bool, err error) {
	v, ok, err = tx.b.get(k)
	return v, ok, translate(err)
}

func (tx *Tx) set(k, v []byte) error { tx.writes++; return translate(tx.b.set(k, v)) }

// create is set for a key that holds an id this transaction drew
// (kvTx.create).
func (tx *Tx) create(k, v []byte) error { tx.writes++; return translate(tx.b.create(k, v)) }

func (tx *Tx) del(k []byte) error { tx.writes++; return translate(tx.b.del(k)) }

// put encodes v and stores it at k.
func (tx *Tx) put(k []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	return tx.set(k, b)
}

// scan calls fn for every key with prefix, in key order; with values it also
// passes the value (valid only during the call). fn returning ErrStop ends the
// scan without error.
func (tx *Tx) scan(prefix []byte, values bool, fn func(k, v []byte) error) error {
	return tx.scanFrom(context.Background(), prefix, nil, values, fn)
}

// ctxEvery is how many keys a scan reads between checks of its context.
const ctxEvery = 1024

// scanCtx is scan that ends with ctx's error once ctx is done.
func (tx *Tx) scanCtx(ctx context.Context, prefix []byte, values bool, fn func(k, v []byte) error) error {
	return tx.scanFrom(ctx, prefix, nil, values, fn)
}

// scanFrom is scanCtx starting at the first key not before from (nil: the
// start of prefix).
func (tx *Tx) scanFrom(ctx context.Context, prefix, from []byte, values bool, fn func(k, v []byte) error) error {
	n := 0
	err := tx.b.scan(ctx, prefix, from, values, func(k, v []byte) error {
		if n++; n%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return fn(k, v)
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return translate(err)
}

// GetMeta returns a free-form meta value.
func (tx *Tx) GetMeta(k string) (string, bool, error) {
	v, ok, err := tx.get([]byte(pMeta + k))
	return string(v), ok, err
}

// PutMeta sets a free-form meta value.
func (tx *Tx) PutMeta(k, val string) error { return tx.set([]byte(pMeta+k), []byte(val)) }

// DeleteMeta removes a meta value.
func (tx *Tx) DeleteMeta(k string) error { return tx.del([]byte(pMeta + k)) }

// next increments the named persistent counter and returns its new value
// (badger: c:NAME, no gaps; PostgreSQL: a sequence, gaps possible).
func (tx *Tx) next(name string) (uint64, error) {
	n, err := tx.b.next(name)
	return n, translate(err)
}

// NextExceptionID returns a new exception id: "ex1", "ex2", …
func (tx *Tx) NextExceptionID() (string, error) {
	n, err := tx.next("exception")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("ex%d", n), nil
}

// NextRecordID returns a new record id: 1, 2, …
func (tx *Tx) NextRecordID() (uint64, error) { return tx.next("record") }

// ForEachMeta calls fn, in key order, for each meta value whose key starts
// with prefix (one range scan: not a lookup per key).
func (tx *Tx) ForEachMeta(ctx context.Context, prefix string, fn func(k, v string) error) error {
	return tx.scanCtx(ctx, []byte(pMeta+prefix), true, func(k, v []byte) error {
		return fn(string(k[len(pMeta):]), string(v))
	})
}
