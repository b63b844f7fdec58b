package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
)

// A current-state index value holds a copy of the record in effect, so
// that listing a state is one range scan with no lookup per path:
//
//	empty          no record in effect (a tombstone)
//	0x00 RECORD    the record, encoded as records are (record_codec.go)
//	               with its sandbox and path left empty: the key holds them
//	uvarint ID     the id alone: written by code older than the copies, or
//	               for an id with no record (which check reports)
//
// A uvarint id never starts with 0x00 (ids start at 1), so the two forms
// never mix up. The copy changes with the record: PutRecord rewrites the
// copies of a record that changes while it stays in effect (an approval),
// in the same transaction; every other change of a record in effect takes
// it out of effect and writes a new version (PutCurrent) there too.
const currentCopy = 0x00

// currentValue returns the index value for id at sandbox's path: a copy of
// the record, or the bare id when there is no such record there.
func (tx *Tx) currentValue(sandbox, path string, id uint64) ([]byte, error) {
	if id == 0 {
		return nil, nil
	}
	r, err := tx.GetRecord(id)
	if isNotFound(err) {
		return binary.AppendUvarint(nil, id), nil
	}
	if err != nil {
		return nil, err
	}
	if r.Sandbox != sandbox || r.Path != path {
		return binary.AppendUvarint(nil, id), nil
	}
	return copyValue(r)
}

// copyValue encodes r as an index value.
func copyValue(r *Record) ([]byte, error) {
	c := *r
	c.Sandbox, c.Path = "", ""
	b, err := encodeRecord(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte{currentCopy}, b...), nil
}

// decodeCurrent returns the record id an index value names.
func decodeCurrent(v []byte) (uint64, bool, error) {
	if len(v) == 0 {
		return 0, false, nil
	}
	if v[0] == currentCopy {
		if len(v) < 3 || v[1] != recordV2 {
			return 0, false, fmt.Errorf("store: malformed current-state value %x", v)
		}
		id, n := binary.Uvarint(v[2:])
		if n <= 0 || id == 0 {
			return 0, false, fmt.Errorf("store: malformed current-state value %x", v)
		}
		return id, true, nil
	}
	id, n := binary.Uvarint(v)
	if n != len(v) || id == 0 {
		return 0, false, fmt.Errorf("store: malformed current-state value %x", v)
	}
	return id, true, nil
}

// currentRecord returns the record an index value of sandbox's path holds
// (nil for a tombstone), from its copy or, for a bare id, by lookup.
func (tx *Tx) currentRecord(sandbox, path string, v []byte) (*Record, error) {
	if len(v) > 0 && v[0] == currentCopy {
		if len(v) < 2 || v[1] != recordV2 {
			return nil, fmt.Errorf("store: malformed current-state value of %q in %s", path, sandbox)
		}
		r, err := decodeRecordV2(v[2:])
		if err != nil {
			return nil, fmt.Errorf("store: current-state value of %q in %s: %w", path, sandbox, err)
		}
		r.Sandbox, r.Path = sandbox, path
		return r, nil
	}
	id, ok, err := decodeCurrent(v)
	if err != nil || !ok {
		return nil, err
	}
	r, err := tx.GetRecord(id)
	if err != nil {
		return nil, fmt.Errorf("current-state index of %s: %s names record r%d: %w", sandbox, escape.Name(path), id, err)
	}
	return r, nil
}

// mayBeCurrent says whether r can be a record in effect (in the index).
func mayBeCurrent(r *Record) bool {
	return !r.Purged && !r.Pruned && (r.Status == change.StatusApproved || r.Status == change.StatusPending)
}

// refreshCopies rewrites the index copies of r after PutRecord changed it
// from old while it stays a record that may be in effect (an approval of
// a record already in effect). Changes that take a record out of effect
// (reject, purge, prune) come with a new index version written by
// PutCurrent in the same transaction.
func (tx *Tx) refreshCopies(old, r *Record) error {
	if old == nil || !mayBeCurrent(old) || !mayBeCurrent(r) {
		return nil
	}
	was, err := copyValue(old)
	if err != nil {
		return err
	}
	now, err := copyValue(r)
	if err != nil || bytes.Equal(was, now) {
		return err
	}
	var ks [][]byte
	err = tx.scan(currentPathPrefix(r.Sandbox, r.Path), true, func(k, v []byte) error {
		if len(v) > 0 && v[0] == currentCopy {
			if id, ok, err := decodeCurrent(v); err == nil && ok && id == r.ID {
				ks = append(ks, append([]byte(nil), k...))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range ks {
		if err := tx.set(k, now); err != nil {
			return err
		}
	}
	return nil
}

// SameCopy says whether the index copy got holds exactly the record want.
func SameCopy(got, want *Record) bool {
	a, errA := copyValue(got)
	b, errB := copyValue(want)
	return errA == nil && errB == nil && got.Sandbox == want.Sandbox && got.Path == want.Path && bytes.Equal(a, b)
}

// CopyCurrent rewrites the values of sandbox's index that hold a bare id
// (written by older code) as copies of their records, in transactions of
// a bounded size, and returns how many. Interrupted, it resumes: a bare
// id and a copy name the same record, and readers take either.
func (s *Store) CopyCurrent(ctx context.Context, sandbox string) (int, error) {
	if err := checkName("sandbox", sandbox); err != nil {
		return 0, err
	}
	const chunk = 5000
	prefix := key(pCurrent, sandbox)
	from := prefix
	total := 0
	for {
		var ks [][]byte
		err := s.View(func(tx *Tx) error {
			return tx.scanFrom(ctx, prefix, from, true, func(k, v []byte) error {
				if len(v) > 0 && v[0] != currentCopy {
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
		err = s.Update(func(tx *Tx) error {
			for _, k := range ks {
				if len(k) < len(prefix)+9 {
					return fmt.Errorf("store: malformed current-state key %q", k)
				}
				v, ok, err := tx.get(k)
				if err != nil || !ok || len(v) == 0 || v[0] == currentCopy {
					if err != nil {
						return err
					}
					continue // changed since it was read
				}
				id, _, err := decodeCurrent(v)
				if err != nil {
					return err
				}
				nv, err := tx.currentValue(sandbox, string(k[len(prefix):len(k)-9]), id)
				if err != nil {
					return err
				}
				if err := tx.set(k, nv); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(ks)
		if len(ks) < chunk {
			return total, nil
		}
		from = append(ks[len(ks)-1], 0)
	}
}
