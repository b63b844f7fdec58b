package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
)

// The current-state index: per sandbox and path, the newest record in
// effect (a copy of it, current_value.go), versioned by the generation
// that made it so. A change
// of the state at generation G writes versions at G+1 (in as many
// transactions as it needs) before one transaction makes G+1 current, so
// readers at G never see half of it and a crash leaves only versions above
// the current generation, which the next change deletes first.
//
//	cs:SANDBOX\0 PATH\0 ^GEN   the record in effect (current_value.go); empty: none
//
// ^GEN is the bitwise complement, so a path's newest version comes first.
// Writing a version drops the versions of that path older than the one a
// reader at gen-1 sees: at most two versions of a path stay.
const pCurrent = "cs:"

func currentKey(sandbox, path string, gen uint64) []byte {
	return key(pCurrent, sandbox, path, ^gen)
}

func currentPathPrefix(sandbox, path string) []byte { return key(pCurrent, sandbox, path) }

// PutCurrent records that from generation gen on, the record in effect at
// path is id (0: none), and drops the versions no reader needs any more.
func (tx *Tx) PutCurrent(sandbox, path string, gen, id uint64) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	if gen == 0 {
		return fmt.Errorf("store: current-state version at generation 0")
	}
	if err := tx.logChange(sandbox, path, gen, id); err != nil {
		return err
	}
	val, err := tx.currentValue(sandbox, path, id)
	if err != nil {
		return err
	}
	tx.noteCurrent(sandbox, path, gen)
	prefix := currentPathPrefix(sandbox, path)
	var stale [][]byte
	keptOlder := false
	err = tx.scan(prefix, false, func(k, _ []byte) error {
		g, ok := tailUint64(k)
		if !ok || len(k) != len(prefix)+8 {
			return fmt.Errorf("store: malformed current-state key %q", k)
		}
		g = ^g
		switch {
		case g >= gen:
		case !keptOlder:
			keptOlder = true // what readers at gen-1 see
		default:
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := tx.del(k); err != nil {
			return err
		}
	}
	return tx.set(currentKey(sandbox, path, gen), val)
}

// PutCurrentNew is PutCurrent for a path that has no version yet (an
// index being built after DropCurrent), given the record r in effect: it
// skips the search for versions to drop, an iterator that in a read-write
// transaction sorts every write pending, which made building an index
// quadratic in its batches, and the lookup of the record. It leaves the
// counters alone (settling them per path costs the same iterators): the
// builder sets them (SetCounts) once the index is complete.
func (tx *Tx) PutCurrentNew(sandbox string, gen uint64, r *Record) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	if gen == 0 {
		return fmt.Errorf("store: current-state version at generation 0")
	}
	if r.Sandbox != sandbox {
		return fmt.Errorf("store: record %d of %s in the current-state index of %s", r.ID, r.Sandbox, sandbox)
	}
	val, err := copyValue(r)
	if err != nil {
		return err
	}
	return tx.set(currentKey(sandbox, r.Path, gen), val)
}

// DeleteCurrentVersion removes the version of path written at gen (a
// staged version taken back before it became current).
func (tx *Tx) DeleteCurrentVersion(sandbox, path string, gen uint64) error {
	tx.noteCurrent(sandbox, path, gen)
	return tx.del(currentKey(sandbox, path, gen))
}

// CurrentAt returns the id of the record in effect at path for a reader at
// generation gen (0, false when none).
func (tx *Tx) CurrentAt(sandbox, path string, gen uint64) (uint64, bool, error) {
	var id uint64
	var ok bool
	err := tx.scanFrom(context.Background(), currentPathPrefix(sandbox, path), currentKey(sandbox, path, gen), true, func(_, v []byte) error {
		var err error
		id, ok, err = decodeCurrent(v)
		if err != nil {
			return err
		}
		return ErrStop
	})
	return id, ok, err
}

// ForEachCurrentAt calls fn, in path order, for every path that has a
// record in effect for a reader at generation gen.
func (tx *Tx) ForEachCurrentAt(ctx context.Context, sandbox string, gen uint64, fn func(path string, id uint64) error) error {
	return tx.eachCurrentValue(ctx, sandbox, gen, func(p string, v []byte) error {
		id, ok, err := decodeCurrent(v)
		if err != nil || !ok {
			return err
		}
		return fn(p, id)
	})
}

// ForEachCurrentRecordAt is ForEachCurrentAt with the records themselves,
// read from the index's copies: one range scan, no lookup per path (a
// value written by older code, a bare id, is looked up).
func (tx *Tx) ForEachCurrentRecordAt(ctx context.Context, sandbox string, gen uint64, fn func(*Record) error) error {
	return tx.eachCurrentValue(ctx, sandbox, gen, func(p string, v []byte) error {
		r, err := tx.currentRecord(sandbox, p, v)
		if err != nil || r == nil {
			return err
		}
		return fn(r)
	})
}

// eachCurrentValue calls fn, in path order, with the value of every path's
// version that a reader at gen sees (empty: no record in effect).
func (tx *Tx) eachCurrentValue(ctx context.Context, sandbox string, gen uint64, fn func(path string, v []byte) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	prefix := key(pCurrent, sandbox)
	var done []byte // the path already answered, as its key prefix
	return tx.scanCtx(ctx, prefix, true, func(k, v []byte) error {
		if len(k) < len(prefix)+9 {
			return fmt.Errorf("store: malformed current-state key %q", k)
		}
		pathKey := k[:len(k)-8]
		if done != nil && bytes.Equal(pathKey, done) {
			return nil
		}
		g, _ := tailUint64(k)
		if ^g > gen {
			return nil // a version not yet current
		}
		done = append(done[:0], pathKey...)
		return fn(string(pathKey[len(prefix):len(pathKey)-1]), v)
	})
}

// DropCurrentAbove deletes the versions of sandbox's index above gen (left
// by a change that never became current) and returns how many, then the
// change log's entries above gen, which those versions' writes logged: a
// change that becomes current later logs its own paths only.
func (s *Store) DropCurrentAbove(ctx context.Context, sandbox string, gen uint64) (int, error) {
	n, err := s.dropCurrent(ctx, sandbox, func(g uint64) bool { return g > gen })
	if err != nil || gen == math.MaxUint64 {
		return n, err
	}
	_, err = s.dropChangesFrom(ctx, sandbox, gen+1)
	return n, err
}

// DropCurrent deletes sandbox's whole index.
func (s *Store) DropCurrent(ctx context.Context, sandbox string) (int, error) {
	return s.dropCurrent(ctx, sandbox, func(uint64) bool { return true })
}

// dropCurrent deletes the versions whose generation drop selects, in
// transactions of a bounded size.
func (s *Store) dropCurrent(ctx context.Context, sandbox string, drop func(uint64) bool) (int, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return 0, err
	}
	if err := s.Update(func(tx *Tx) error {
		return tx.scan(key(pCounts, sandbox), false, func(k, _ []byte) error {
			if g, ok := tailUint64(k); ok && drop(^g) {
				return tx.del(append([]byte(nil), k...))
			}
			return nil
		})
	}); err != nil {
		return 0, err
	}
	return s.deleteWhere(ctx, key(pCurrent, sandbox), nil, func(k []byte) (del, stop bool) {
		g, ok := tailUint64(k)
		return ok && drop(^g), false
	})
}

// deleteWhere deletes the keys under prefix, from from on, that pick
// selects, until it says stop, in transactions of a bounded size (each
// chunk found by a read-only scan from from again), and returns how many.
func (s *Store) deleteWhere(ctx context.Context, prefix, from []byte, pick func(k []byte) (del, stop bool)) (int, error) {
	const chunk = 10000
	total := 0
	for {
		var ks [][]byte
		err := s.View(func(tx *Tx) error {
			return tx.scanFrom(ctx, prefix, from, false, func(k, _ []byte) error {
				del, stop := pick(k)
				if stop {
					return ErrStop
				}
				if del {
					ks = append(ks, append([]byte(nil), k...))
					if len(ks) == chunk {
						return ErrStop
					}
				}
				return nil
			})
		})
		if err != nil || len(ks) == 0 {
			return total, err
		}
		if err := s.deleteKeys(ks); err != nil {
			return total, err
		}
		total += len(ks)
		if len(ks) < chunk {
			return total, nil
		}
	}
}

// deleteKeys deletes ks in one transaction (a chunk of a bounded delete).
func (s *Store) deleteKeys(ks [][]byte) error {
	return s.Update(func(tx *Tx) error {
		for _, k := range ks {
			if err := tx.del(k); err != nil {
				return err
			}
		}
		return nil
	})
}
