package store

import (
	"bytes"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// badgerWrites is what a read-write badger transaction has written, for
// its scans. An iterator of a read-write badger.Txn sorts all the
// transaction's pending writes when it is created, and the close stages
// its records in transactions of thousands of writes with a scan or two
// per record (PutCurrent, the change log): persisting 3,000 files spent
// 76% of the close sorting. Scans of a read-write transaction read a
// read-only transaction instead — Store.Update runs one read-write
// transaction at a time and badger admits one process, so it sees what
// this one began with (as before does) — merged with the pending writes
// in the scan's range only.
type badgerWrites struct {
	pending map[string][]byte // the last write of each key; nil: deleted
	keys    []string          // pending's keys, sorted
	ro      *badger.Txn       // opened at the first scan
}

// put notes a write of k (v nil: a delete).
func (w *badgerWrites) put(k []byte, v []byte) {
	if _, ok := w.pending[string(k)]; !ok {
		i, _ := slices.BinarySearch(w.keys, string(k))
		w.keys = slices.Insert(w.keys, i, string(k))
	}
	w.pending[string(k)] = v
}

func (w *badgerWrites) discard() {
	if w.ro != nil {
		w.ro.Discard()
	}
}

// scan is kvTx.scan over the committed state merged with the pending
// writes: a pending value replaces or adds its key, a delete hides it.
// Writes fn makes during the scan are not seen by it (as badger's own
// iterators do not see them).
func (w *badgerWrites) scan(db *badger.DB, prefix, from []byte, values bool, fn func(k, v []byte) error) error {
	if w.ro == nil {
		w.ro = db.NewTransaction(false)
	}
	start := prefix
	if bytes.Compare(from, prefix) > 0 {
		start = from
	}
	over := w.pendingFrom(prefix, start)
	it := w.ro.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Seek(start)
	for {
		valid := it.ValidForPrefix(prefix)
		var ik []byte
		if valid {
			ik = it.Item().Key()
		}
		if len(over) > 0 && (!valid || over[0].k <= string(ik)) {
			p := over[0]
			over = over[1:]
			if valid && p.k == string(ik) {
				it.Next() // replaced or deleted
			}
			if p.v == nil {
				continue
			}
			var v []byte
			if values {
				v = p.v
			}
			if err := fn([]byte(p.k), v); err != nil {
				return err
			}
			continue
		}
		if !valid {
			return nil
		}
		item := it.Item()
		var ferr error
		if !values {
			ferr = fn(ik, nil)
		} else if err := item.Value(func(v []byte) error { ferr = fn(ik, v); return nil }); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
		it.Next()
	}
}

// pendingFrom returns the pending writes with prefix from start on, in
// key order.
func (w *badgerWrites) pendingFrom(prefix, start []byte) []pendingKV {
	var out []pendingKV
	i, _ := slices.BinarySearch(w.keys, string(start))
	for _, k := range w.keys[i:] {
		if !strings.HasPrefix(k, string(prefix)) {
			break
		}
		out = append(out, pendingKV{k, w.pending[k]})
	}
	return out
}
