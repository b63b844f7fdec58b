package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// A rerun of an import finds the progress of the same source root
// (SourceID), whatever the source's digest is now, and compares each
// sandbox's source chain head with the one its copy was made at
// (importProgress.Heads):
//
//   - finished, unchanged: skipped;
//   - finished, changed since: the whole rerun is refused, nothing written
//     (movedOn), as the ledger's copy and the source's now differ and only
//     the user knows which to keep;
//   - finished, then removed from the ledger: copied again (restart), as
//     a new incarnation (Renewed);
//   - finished, then removed from the source: the ledger's copy stays, and
//     its history is imported up to the head it was copied at;
//   - begun, unchanged: continued after the last chunk;
//   - begun, changed: copied again over the earlier copy, keeping the
//     record ids drawn for it (restart, Resync);
//   - begun, then removed from the source: the earlier copy is deleted
//     (abandon).

// SourceID names the progress of the imports of one source root: a hash
// of the host it belongs to and its path.
func SourceID(host, root string) string {
	h := sha256.Sum256([]byte("spillway import\x00" + host + "\x00" + root))
	return "root-" + hex.EncodeToString(h[:])
}

// rerunPlan is what a rerun does about what earlier runs wrote.
type rerunPlan struct {
	restart []string        // sandboxes copied again over an earlier copy
	renew   map[string]bool // of those, the ones whose ledger copy was removed
	abandon []string        // begun sandboxes the source no longer has
}

// findProgress reads this root's import progress (or an older import's,
// keyed by digest) and which sandboxes other unfinished imports copy.
func (im *importer) findProgress() error {
	im.key = SourceID(im.o.SourceHost, im.o.Source)
	im.claims = map[string]string{}
	return im.dst.View(func(tx *Tx) error {
		var err error
		if im.prog, err = getProgress(tx, im.key); err != nil {
			return err
		}
		if im.prog == nil {
			if im.prog, err = getProgress(tx, im.digest); err != nil {
				return err
			}
			if im.prog != nil {
				im.key = im.digest
			}
		}
		return tx.ForEachMeta(im.ctx, metaImportPrefix, func(k, v string) error {
			if k == metaImportPrefix+im.key {
				return nil
			}
			var p importProgress
			if err := json.Unmarshal([]byte(v), &p); err != nil {
				return fmt.Errorf("store: import progress %s: %w", k, err)
			}
			if p.Finished {
				return nil
			}
			from := p.Source
			if p.SourceHost != "" {
				from += " (source host " + p.SourceHost + ")"
			}
			for _, m := range []map[string]uint64{p.RecordsAfter, headSeqs(p.Heads)} {
				for name := range m {
					if !p.done(name) {
						im.claims[name] = from
					}
				}
			}
			return nil
		})
	})
}

func headSeqs(heads map[string]string) map[string]uint64 {
	m := map[string]uint64{}
	for name, h := range heads {
		m[name] = headSeq(h)
	}
	return m
}

// headSeq is the ChainSeq of a head written as CHAINSEQ:HASH.
func headSeq(h string) uint64 {
	s, _, _ := strings.Cut(h, ":")
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// skips says whether the import leaves a source entry out: appended by an
// earlier run (entries of the single chain of older stores, V 0, by Seq;
// chained ones by their chain's ChainSeq), or past the head its sandbox
// was copied at (so a sandbox the source changed or removed after its
// copy keeps the history of the state the ledger has).
func (p *importProgress) skips(e *Event) bool {
	if e.Seq <= p.AuditAfter {
		return true
	}
	if e.V < eventChained {
		return false
	}
	if e.ChainSeq <= p.ChainAfter[e.Sandbox] {
		return true
	}
	h, ok := p.Heads[e.Sandbox]
	return ok && e.Sandbox != "" && e.ChainSeq > headSeq(h)
}

// appended moves the progress past a source entry just appended.
func (p *importProgress) appended(e *Event) {
	if e.V < eventChained {
		p.AuditAfter = e.Seq
		return
	}
	p.ChainAfter[e.Sandbox] = e.ChainSeq
}

// reconcile compares what earlier runs wrote with the source now: it
// refuses a rerun that would leave a finished sandbox behind its source,
// and plans what to copy again or take back. It writes nothing.
func (im *importer) reconcile(sbs []*Sandbox) error {
	im.plan = &rerunPlan{renew: map[string]bool{}}
	p := im.prog
	if p == nil {
		return nil
	}
	in := map[string]bool{}
	for _, sb := range sbs {
		in[sb.Name] = true
	}
	var moved []string
	err := im.dst.View(func(tx *Tx) error {
		for _, name := range p.Done {
			if !in[name] {
				continue // removed from the source since: the ledger's copy stays
			}
			_, err := tx.GetSandbox(name)
			switch {
			case isNotFound(err):
				im.plan.restart = append(im.plan.restart, name)
				im.plan.renew[name] = true
			case err != nil:
				return err
			case p.changed(name, im.heads):
				moved = append(moved, name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(moved) > 0 {
		return im.movedOn(moved)
	}
	var begun []string
	for name := range p.RecordsAfter {
		begun = append(begun, name)
	}
	for name := range p.Heads {
		if _, ok := p.RecordsAfter[name]; !ok {
			begun = append(begun, name)
		}
	}
	sort.Strings(begun)
	for _, name := range begun {
		switch {
		case p.done(name):
		case !in[name]:
			im.plan.abandon = append(im.plan.abandon, name)
		case p.changed(name, im.heads):
			im.plan.restart = append(im.plan.restart, name)
		}
	}
	return nil
}

// changed says whether a sandbox's source chain moved since its copy
// began (progress of older imports, without heads, was found by the
// source's digest: unchanged).
func (p *importProgress) changed(name string, heads map[string]string) bool {
	h, ok := p.Heads[name]
	return ok && h != heads["head:"+name]
}

// movedOn refuses a rerun after the source changed sandboxes the ledger
// already has from it, saying what changed and the two ways on.
func (im *importer) movedOn(names []string) error {
	var what []string
	for _, name := range names {
		was, now := headSeq(im.prog.Heads[name]), headSeq(im.heads["head:"+name])
		var types []string
		err := im.src.ForEachEvent(im.ctx, name, func(e *Event) error {
			if e.ChainSeq > was && !slices.Contains(types, e.Type) {
				types = append(types, e.Type)
			}
			return nil
		})
		if err != nil {
			return err
		}
		state := ""
		err = im.src.View(func(tx *Tx) error {
			sb, err := tx.GetSandbox(name)
			if err == nil && sb.State != StateClosed {
				state = fmt.Sprintf(", and it is %s there now (session %d): close it there first", sb.State, sb.Session)
			}
			return nil
		})
		if err != nil {
			return err
		}
		what = append(what, fmt.Sprintf("%s was copied as it was at entry %d of its audit chain, the source has moved on to entry %d since (%s)%s", name, was, now, strings.Join(types, ", "), state))
	}
	when := "an unfinished import of it"
	if im.prog.Finished {
		when = fmt.Sprintf("its import (bridge entry %d)", im.prog.Bridge)
	}
	list := strings.Join(names, " ")
	return &ImportConflictError{fmt.Sprintf("the source changed sandboxes the ledger already has from it since %s: %s. "+
		"To import them as they are now, remove the ledger's copies (spillway rm NAME with this --store, for %s; export first what was written to them in the fleet), then import again; "+
		"to keep the ledger's copies, remove them from the source (spillway --root %s rm NAME, after persisted export of what to keep), then import again; nothing imported",
		when, strings.Join(what, "; "), list, im.o.Source)}
}

// restart makes the progress copy again, in start's transaction, the
// sandboxes the plan names: the earlier copy's sessions go, its records
// are written over at their ids (Resync), its index is dropped before
// the copy (current).
func (im *importer) restart(tx *Tx, p *importProgress) error {
	im.res.Restarted = nil
	for _, name := range im.plan.restart {
		p.Done = slices.DeleteFunc(p.Done, func(d string) bool { return d == name })
		p.Heads[name] = im.heads["head:"+name]
		p.RecordsAfter[name] = 0
		p.Resync[name] = true
		if im.plan.renew[name] {
			p.Renewed[name] = true
		}
		if err := deleteSessions(tx, name); err != nil {
			return err
		}
		im.res.Restarted = append(im.res.Restarted, name)
	}
	return nil
}

// deleteSessions deletes a sandbox's sessions (of a copy the ledger does
// not list).
func deleteSessions(tx *Tx, sandbox string) error {
	var ks [][]byte
	if err := tx.scan(key(pSession, sandbox), false, func(k, _ []byte) error {
		ks = append(ks, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range ks {
		if err := tx.del(k); err != nil {
			return err
		}
	}
	return nil
}

// begin records the source chain head a sandbox's copy starts from.
func (im *importer) begin(name string) error {
	if _, ok := im.prog.Heads[name]; ok {
		return nil
	}
	return im.write(func(tx *Tx) error {
		p, err := im.progress(tx)
		if err != nil {
			return err
		}
		p.Heads[name] = im.heads["head:"+name]
		im.prog = p
		return putProgress(tx, im.key, p)
	})
}

// abandon deletes the unfinished copy of a sandbox the source no longer
// has: its records, index and sessions, then its progress.
func (im *importer) abandon(name string) error {
	im.o.Log("sandbox %s is gone from the source: deleting its unfinished copy", name)
	var ids []uint64
	if err := im.dst.View(func(tx *Tx) error {
		return tx.ForEachRecord(im.ctx, name, func(r *Record) error {
			ids = append(ids, r.ID)
			return nil
		})
	}); err != nil {
		return err
	}
	if err := im.deleteRecords(ids); err != nil {
		return err
	}
	if _, err := im.dst.DropCurrent(im.ctx, name); err != nil {
		return err
	}
	return im.write(func(tx *Tx) error {
		p, err := im.progress(tx)
		if err != nil {
			return err
		}
		if err := deleteSessions(tx, name); err != nil {
			return err
		}
		delete(p.Heads, name)
		delete(p.RecordsAfter, name)
		delete(p.Resync, name)
		im.prog = p
		return putProgress(tx, im.key, p)
	})
}

// sweep deletes the records of an earlier copy of a sandbox that no
// record of the source maps to any more.
func (im *importer) sweep(name string) error {
	ids, err := im.idMap()
	if err != nil {
		return err
	}
	used := map[uint64]bool{}
	if err := im.src.View(func(tx *Tx) error {
		return tx.ForEachRecord(im.ctx, name, func(r *Record) error {
			used[ids[r.ID]] = true
			return nil
		})
	}); err != nil {
		return err
	}
	var stale []uint64
	if err := im.dst.View(func(tx *Tx) error {
		return tx.ForEachRecord(im.ctx, name, func(r *Record) error {
			if !used[r.ID] {
				stale = append(stale, r.ID)
			}
			return nil
		})
	}); err != nil {
		return err
	}
	return im.deleteRecords(stale)
}

// deleteRecords deletes records of dst, a chunk per transaction.
func (im *importer) deleteRecords(ids []uint64) error {
	for i := 0; i < len(ids); i += im.o.Chunk {
		part := ids[i:min(i+im.o.Chunk, len(ids))]
		if err := im.write(func(tx *Tx) error {
			for _, id := range part {
				if err := tx.DeleteRecord(id); err != nil && !isNotFound(err) {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}
