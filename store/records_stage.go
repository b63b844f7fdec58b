package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
)

// StageRecords stores recs, new records of sandbox, under ids it draws
// (setting r.ID), with their index entries, and makes each record that
// inIndex selects (nil: every one) the version of its path at gen in the
// current-state index: what NextRecordID, PutRecord and PutCurrent do per
// record, with the reads batched (on PostgreSQL one query draws the ids
// and one reads the versions of every path) and no lookup of a record
// under a new id, which cannot exist.
func (tx *Tx) StageRecords(sandbox string, gen uint64, recs []*Record, inIndex func(*Record) bool) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	if gen == 0 {
		return fmt.Errorf("store: current-state version at generation 0")
	}
	for _, r := range recs {
		if r.Sandbox != sandbox {
			return fmt.Errorf("store: record of %s staged in %s", r.Sandbox, sandbox)
		}
		if strings.IndexByte(r.Path, 0) >= 0 || strings.IndexByte(r.Exception, 0) >= 0 {
			return fmt.Errorf("store: record of %q: path or exception contains NUL", r.Path)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	ids, err := tx.nextN("record", len(recs))
	if err != nil {
		return err
	}
	if len(ids) != len(recs) {
		return fmt.Errorf("store: drew %d record ids for %d records", len(ids), len(recs))
	}
	var indexed []*Record
	var rs []keyRange
	for i, r := range recs {
		r.ID = ids[i]
		if inIndex == nil || inIndex(r) {
			indexed = append(indexed, r)
			rs = append(rs, keyRange{prefix: currentPathPrefix(sandbox, r.Path)})
		}
	}
	vers, err := tx.pathVersions(sandbox, gen, rs)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := tx.putNewRecord(r); err != nil {
			return err
		}
	}
	for i, r := range indexed {
		tx.noteBefore(sandbox, gen, r.Path, vers[i])
	}
	for i, r := range indexed {
		if err := tx.putVersion(sandbox, r, gen, vers[i]); err != nil {
			return err
		}
	}
	return nil
}

// pathVers is what PutCurrent reads of a path's versions before writing
// the one at gen: the record a reader at gen-1 sees, and the versions no
// reader needs once it is written.
type pathVers struct {
	prev  uint64
	stale [][]byte
	atGen bool // the path has a version at gen already
	// entry is the value of the version a reader at gen sees (the first
	// at or below gen), when hasEntry
	entry    []byte
	hasEntry bool
}

// pathVersions reads the versions of the paths of rs (one range each) in
// one batch.
func (tx *Tx) pathVersions(sandbox string, gen uint64, rs []keyRange) ([]pathVers, error) {
	out := make([]pathVers, len(rs))
	kept := make([]bool, len(rs))     // a version older than gen is kept (PutCurrent's keptOlder)
	prevSeen := make([]bool, len(rs)) // the version a reader at gen-1 sees was found
	err := tx.scanRanges(context.Background(), rs, true, func(i int, k, v []byte) error {
		g, ok := tailUint64(k)
		if !ok || len(k) != len(rs[i].prefix)+8 {
			return fmt.Errorf("store: malformed current-state key %q", k)
		}
		g = ^g
		if g <= gen && !out[i].hasEntry {
			out[i].entry, out[i].hasEntry = append([]byte(nil), v...), true
		}
		if g <= gen-1 && !prevSeen[i] {
			prevSeen[i] = true
			id, _, err := decodeCurrent(v)
			if err != nil {
				return err
			}
			out[i].prev = id
		}
		switch {
		case g >= gen:
			out[i].atGen = out[i].atGen || g == gen
		case !kept[i]:
			kept[i] = true
		default:
			out[i].stale = append(out[i].stale, append([]byte(nil), k...))
		}
		return nil
	})
	return out, err
}

// putVersion is PutCurrent(sandbox, r.Path, gen, r.ID) for a record r
// written in this transaction, given what it reads of the path's versions.
func (tx *Tx) putVersion(sandbox string, r *Record, gen uint64, v pathVers) error {
	ck := changeKey(sandbox, gen, r.Path)
	switch {
	case v.prev == r.ID:
		if err := tx.del(ck); err != nil {
			return err
		}
	case v.prev != 0:
		if err := tx.set(ck, binary.AppendUvarint(nil, v.prev)); err != nil {
			return err
		}
	default:
		if err := tx.set(ck, nil); err != nil {
			return err
		}
	}
	val, err := copyValue(r)
	if err != nil {
		return err
	}
	tx.noteCurrent(sandbox, r.Path, gen)
	for _, k := range v.stale {
		if err := tx.del(k); err != nil {
			return err
		}
	}
	if !v.atGen {
		// read absent in this transaction: a plain INSERT on PostgreSQL
		return tx.create(currentKey(sandbox, r.Path, gen), val)
	}
	return tx.set(currentKey(sandbox, r.Path, gen), val)
}
