package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
)

// The change log: per sandbox and generation, the paths whose version in
// the current-state index changed at that generation, with the record id
// in effect before (what a reader at GEN-1 saw). PutCurrent writes it, so
// every change of the index is logged in the transaction that makes it.
// An incremental persisted layer reads the paths that changed since the
// layer it builds on (ForEachChange) instead of the whole state.
//
//	cl:SANDBOX\0 GEN PATH\0   uvarint record id before; empty: none
const pChangeLog = "cl:"

func changeKey(sandbox string, gen uint64, path string) []byte {
	return key(pChangeLog, sandbox, gen, path)
}

// logChange records that path's version at gen is id. A version equal to
// the one a reader at gen-1 sees is no change: its entry is removed.
func (tx *Tx) logChange(sandbox, path string, gen, id uint64) error {
	prev, _, err := tx.CurrentAt(sandbox, path, gen-1)
	if err != nil {
		return err
	}
	k := changeKey(sandbox, gen, path)
	if prev == id {
		return tx.del(k)
	}
	var val []byte
	if prev != 0 {
		val = binary.AppendUvarint(nil, prev)
	}
	return tx.set(k, val)
}

// ForEachChange calls fn, in generation then path order, for every logged
// change of sandbox's index at a generation in [from, to], with the record
// id in effect before it (0: none).
func (tx *Tx) ForEachChange(ctx context.Context, sandbox string, from, to uint64, fn func(gen uint64, path string, prev uint64) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	prefix := key(pChangeLog, sandbox)
	start := changeKey(sandbox, from, "")
	start = start[:len(start)-1] // GEN without a path
	return tx.scanFrom(ctx, prefix, start, true, func(k, v []byte) error {
		if len(k) < len(prefix)+9 || k[len(k)-1] != 0 {
			return fmt.Errorf("store: malformed change-log key %q", k)
		}
		gen := binary.BigEndian.Uint64(k[len(prefix):])
		if gen > to {
			return ErrStop
		}
		var prev uint64
		if len(v) > 0 {
			var n int
			if prev, n = binary.Uvarint(v); n != len(v) || prev == 0 {
				return fmt.Errorf("store: malformed change-log value %x", v)
			}
		}
		return fn(gen, string(k[len(prefix)+8:len(k)-1]), prev)
	})
}

// DropChanges deletes sandbox's change-log entries at generations up to
// gen (math.MaxUint64: all), in transactions of a bounded size, and
// returns how many.
func (s *Store) DropChanges(ctx context.Context, sandbox string, gen uint64) (int, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return 0, err
	}
	prefix := key(pChangeLog, sandbox)
	return s.deleteWhere(ctx, prefix, nil, func(k []byte) (del, stop bool) {
		if len(k) < len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) > gen {
			return false, true
		}
		return true, false
	})
}

// dropChangesFrom deletes sandbox's change-log entries at generations from
// gen on, in transactions of a bounded size, and returns how many.
func (s *Store) dropChangesFrom(ctx context.Context, sandbox string, gen uint64) (int, error) {
	start := changeKey(sandbox, gen, "")
	start = start[:len(start)-1] // GEN without a path
	return s.deleteWhere(ctx, key(pChangeLog, sandbox), start, func([]byte) (del, stop bool) { return true, false })
}

// AllGenerations, given to DropChanges, drops the whole log.
const AllGenerations = math.MaxUint64

// ForEachCurrentUnder is ForEachCurrentAt for the paths strictly below
// dir only, with the versions in effect for a reader at gen.
func (tx *Tx) ForEachCurrentUnder(ctx context.Context, sandbox, dir string, gen uint64, fn func(path string, id uint64) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	base := key(pCurrent, sandbox)
	prefix := append(append([]byte(nil), base...), dir+"/"...)
	var done []byte
	return tx.scanCtx(ctx, prefix, true, func(k, v []byte) error {
		if len(k) < len(base)+9 {
			return fmt.Errorf("store: malformed current-state key %q", k)
		}
		pathKey := k[:len(k)-8]
		if done != nil && string(pathKey) == string(done) {
			return nil
		}
		g, _ := tailUint64(k)
		if ^g > gen {
			return nil
		}
		done = append(done[:0], pathKey...)
		id, ok, err := decodeCurrent(v)
		if err != nil || !ok {
			return err
		}
		return fn(string(pathKey[len(base):len(pathKey)-1]), id)
	})
}
