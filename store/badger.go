package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// badgerBackend is the embedded driver: one badger database in a directory.
type badgerBackend struct {
	db  *badger.DB
	dir string
}

func (b *badgerBackend) update(fn func(kvTx) error) error {
	txn := b.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(badgerTx{txn, b.db}); err != nil {
		return err
	}
	return txn.Commit()
}

// updateLocked is update: badger's transactions detect every conflict
// of what they read with what committed since, and one process at a
// time writes.
func (b *badgerBackend) updateLocked(_ []byte, fn func(kvTx) error) error { return b.update(fn) }

func (b *badgerBackend) view(fn func(kvTx) error) error {
	txn := b.db.NewTransaction(false)
	defer txn.Discard()
	return fn(badgerTx{txn, b.db})
}

func (b *badgerBackend) close() error  { return b.db.Close() }
func (b *badgerBackend) where() string { return b.dir }

// badgerTx is one badger transaction.
type badgerTx struct {
	txn *badger.Txn
	db  *badger.DB
}

// before reads in a new read transaction: Store.Update runs one
// read-write transaction at a time and badger allows one process, so
// nothing committed since this transaction began.
func (t badgerTx) before(fn func(kvTx) error) error {
	txn := t.db.NewTransaction(false)
	defer txn.Discard()
	return fn(badgerTx{txn, t.db})
}

func (t badgerTx) get(k []byte) ([]byte, bool, error) {
	item, err := t.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func (t badgerTx) set(k, v []byte) error { return t.txn.Set(k, v) }
func (t badgerTx) del(k []byte) error    { return t.txn.Delete(k) }

func (t badgerTx) scan(_ context.Context, prefix, from []byte, values bool, fn func(k, v []byte) error) error {
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: values, PrefetchSize: 64})
	defer it.Close()
	start := prefix
	if bytes.Compare(from, prefix) > 0 {
		start = from
	}
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		var v []byte
		if values {
			var err error
			if v, err = item.ValueCopy(nil); err != nil {
				return err
			}
		}
		if err := fn(item.Key(), v); err != nil {
			return err
		}
	}
	return nil
}

// next keeps the counter in the key c:NAME (8 bytes, big-endian): no gaps.
func (t badgerTx) next(name string) (uint64, error) {
	k := []byte(pCounter + name)
	v, ok, err := t.get(k)
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
	return n, t.set(k, binary.BigEndian.AppendUint64(nil, n))
}

func (t badgerTx) scanRanges(ctx context.Context, rs []keyRange, values bool, fn func(i int, k, v []byte) error) error {
	return scanRangesEach(ctx, t, rs, values, fn)
}

// nextN is n calls of next: one key, read and written in memory.
func (t badgerTx) nextN(name string, n int) ([]uint64, error) {
	out := make([]uint64, 0, n)
	for range n {
		id, err := t.next(name)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}
