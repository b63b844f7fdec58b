package store

import "github.com/spillway/spillway/internal/change"

// Entries settleCounts need not read. StageRecords reads every version of
// the paths it stages (pathVersions) before writing any: the entry a
// reader at gen saw before the transaction is among them. Its own write
// is the entry after. For a top path whose entry is a file, a symlink or
// a delete on both sides, neither a replacing ancestor above it, its
// subtree counts nothing on either side (StateFilter leaves everything
// under it out), so settleChanged reads neither the entry nor the
// subtree: for a close that rewrites documents, two of the three ranges
// it read per path.
//
// The counters then differ from a recount in one case: an index value
// under such a path that names, by bare id, a record of a path outside
// it. StateFilter places a record by its own path, so the recount counts
// it, and the skipped read does not see it. spillway writes a bare id
// only for a record of another path handed to PutCurrent, which no
// command does; a row another host forged can. check's recount reports
// the difference. (A top's own entry of another path is not skipped.)

// noteBefore keeps the entry of path that pathVersions read (v), as the
// ledger held it before this transaction, unless this transaction had
// already changed one of path's versions (the read then included its own
// write) or kept the entry earlier (which stays right).
func (tx *Tx) noteBefore(sandbox string, gen uint64, path string, v pathVers) {
	k := countsAt{sandbox, gen}
	if _, ok := tx.before[k][path]; ok {
		return
	}
	for c, paths := range tx.changed {
		if c.sandbox == sandbox && paths[path] {
			return
		}
	}
	if tx.before == nil {
		tx.before = map[countsAt]map[string][]byte{}
	}
	if tx.before[k] == nil {
		tx.before[k] = map[string][]byte{}
	}
	var e []byte // nil: no version at or below gen
	if v.hasEntry {
		e = append([]byte{}, v.entry...)
	}
	tx.before[k][path] = e
}

// knownEntry is a top's entry on both sides, each nil when there is none.
type knownEntry struct {
	before, now []byte
}

// knownEntries returns the tops of k whose entries this transaction knows
// on both sides: kept by noteBefore, and written at k.gen by itself (a
// version taken back since is read as before).
func (tx *Tx) knownEntries(k countsAt, tops []string) (map[string]knownEntry, error) {
	kept := tx.before[k]
	if len(kept) == 0 {
		return nil, nil
	}
	// One round trip for all, should the transaction have sent its
	// writes already (a driver whose reads cost none does nothing).
	var keys [][]byte
	for _, p := range tops {
		if _, ok := kept[p]; ok {
			keys = append(keys, currentKey(k.sandbox, p, k.gen))
		}
	}
	if err := tx.b.readAhead(keys); err != nil {
		return nil, translate(err)
	}
	out := map[string]knownEntry{}
	for _, p := range tops {
		b, ok := kept[p]
		if !ok {
			continue
		}
		now, ok, err := tx.get(currentKey(k.sandbox, p, k.gen))
		if err != nil {
			return nil, err
		}
		if ok {
			out[p] = knownEntry{before: b, now: now}
		}
	}
	return out, nil
}

// blocks says whether r leaves out everything under it (StateFilter): a
// delete, a file or a symlink.
func blocks(r *Record) bool {
	return r != nil && (r.Kind == change.KindDelete || r.Type != change.TypeDir)
}

// hidesSubtree says whether the state leaves out everything under r's
// path, given the records of its ancestors, root first (nil: none):
// StateFilter's entry for r blocks and no ancestor replaced it.
func hidesSubtree(ancestors []*Record, r *Record, opened Seen) bool {
	if !blocks(r) {
		return false
	}
	f := StateFilter{Seen: opened}
	for _, a := range ancestors {
		if a != nil {
			f.Keep(a)
		}
	}
	f.Keep(r)
	e := f.stack[len(f.stack)-1]
	return e.blocks && !e.replaced
}
