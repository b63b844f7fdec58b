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
	w := &badgerWrites{pending: map[string][]byte{}}
	defer w.discard()
	if err := fn(badgerTx{txn, b.db, w}); err != nil {
		return err
	}
	return txn.Commit()
}

// updateLocked is update: badger admits one process, and Store.update
// runs that process's read-write transactions one at a time, so nothing
// commits while one runs.
func (b *badgerBackend) updateLocked(_ txLock, fn func(kvTx) error) error {
	return b.update(fn)
}

func (b *badgerBackend) view(fn func(kvTx) error) error {
	txn := b.db.NewTransaction(false)
	defer txn.Discard()
	return fn(badgerTx{txn, b.db, nil})
}

func (b *badgerBackend) close() error  { return b.db.Close() }
func (b *badgerBackend) where() string { return b.dir }

// badgerTx is one badger transaction.
type badgerTx struct {
	txn *badger.Txn
	db  *badger.DB
	w   *badgerWrites // a read-write transaction's writes (badger_scan.go); nil in a view
}

// before reads in a new read transaction: Store.Update runs one
// read-write transaction at a time and badger allows one process, so
// nothing committed since this transaction began.
func (t badgerTx) before(fn func(kvTx) error) error {
	txn := t.db.NewTransaction(false)
	defer txn.Discard()
	return fn(badgerTx{txn, t.db, nil})
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

func (t badgerTx) set(k, v []byte) error {
	if err := t.txn.Set(k, v); err != nil {
		return err
	}
	if v == nil {
		v = []byte{} // nil is a delete in t.w
	}
	t.w.put(k, v)
	return nil
}

func (t badgerTx) create(k, v []byte) error { return t.set(k, v) }

func (t badgerTx) del(k []byte) error {
	if err := t.txn.Delete(k); err != nil {
		return err
	}
	t.w.put(k, nil)
	return nil
}

func (t badgerTx) scan(_ context.Context, prefix, from []byte, values bool, fn func(k, v []byte) error) error {
	if t.w != nil {
		return t.w.scan(t.db, prefix, from, values, fn)
	}
	// No prefetching: badger prefetches each value in a goroutine of its
	// own, and the store's values sit in the LSM tree beside their keys
	// (badger's default value threshold, 1 MiB), so reading them in the
	// loop is cheaper (a scan of 1,000,000 index values spent a third of
	// its time starting and scheduling those goroutines).
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	start := prefix
	if bytes.Compare(from, prefix) > 0 {
		start = from
	}
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		if !values {
			if err := fn(item.Key(), nil); err != nil {
				return err
			}
			continue
		}
		// fn sees the value in place: k and v are valid during the call.
		var ferr error
		if err := item.Value(func(v []byte) error { ferr = fn(item.Key(), v); return nil }); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
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
// readAhead does nothing: badger's reads are local.
func (t badgerTx) readAhead([][]byte) error { return nil }

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
