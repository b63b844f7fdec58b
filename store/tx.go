package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Tx is one transaction; read-only inside View.
type Tx struct {
	txn     *badger.Txn
	s       *Store
	counts  map[string]Counts            // counters written by this transaction (current_counts.go)
	changed map[countsAt]map[string]bool // index paths it changed, for settleCounts
	pending map[string]int64             // pending counts it moved, by sandbox
}

// get returns the value at k, or ok=false when it is absent.
func (tx *Tx) get(k []byte) (v []byte, ok bool, err error) {
	item, err := tx.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, translate(err)
	}
	v, err = item.ValueCopy(nil)
	if err != nil {
		return nil, false, translate(err)
	}
	return v, true, nil
}

func (tx *Tx) set(k, v []byte) error { return translate(tx.txn.Set(k, v)) }

func (tx *Tx) del(k []byte) error { return translate(tx.txn.Delete(k)) }

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
	return tx.scanCtx(context.Background(), prefix, values, fn)
}

// ctxEvery is how many keys a scan reads between checks of its context.
const ctxEvery = 1024

// scanCtx is scan that ends with ctx's error once ctx is done.
func (tx *Tx) scanCtx(ctx context.Context, prefix []byte, values bool, fn func(k, v []byte) error) error {
	it := tx.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: values, PrefetchSize: 64})
	defer it.Close()
	n := 0
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if n++; n%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		var v []byte
		if values {
			var err error
			if v, err = item.ValueCopy(nil); err != nil {
				return translate(err)
			}
		}
		if err := fn(item.Key(), v); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
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

// next increments the named persistent counter and returns its new value.
func (tx *Tx) next(name string) (uint64, error) {
	k := []byte(pCounter + name)
	v, ok, err := tx.get(k)
	if err != nil {
		return 0, err
	}
	var n uint64
	if ok {
		if len(v) != 8 {
			return 0, fmt.Errorf("store: cannot decode counter %s: %d bytes", name, len(v))
		}
		n = binary.BigEndian.Uint64(v)
	}
	n++
	return n, tx.set(k, binary.BigEndian.AppendUint64(nil, n))
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
