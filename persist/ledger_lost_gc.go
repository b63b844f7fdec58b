package persist

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spillway/spillway/store"
)

// lostCommit is a close of this host's that the ledger does not show: the
// blobs of the files it persisted are all that is left of them until
// `close --abandon` (or an open after a takeover) copies them into the
// recovery area.
type lostCommit struct {
	sandbox string
	n       uint64
}

// lostCommitBlobs returns the digests of the files that this host's
// closes persisted and the ledger does not show (a note of
// commitNotesDir that ledgerSettled does not find settled, nor kept in the
// recovery area already), so that gc leaves those blobs alone while the
// notes last; and those closes. Notes older than commitNoteKeep go first.
// A close the ledger shows keeps nothing: its records keep its blobs, and
// a blob whose records were rejected or purged is free to go.
func (e *Env) lostCommitBlobs() (map[string]bool, []lostCommit, error) {
	ents, err := os.ReadDir(filepath.Join(e.root, commitNotesName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	keep := map[string]bool{}
	var lost []lostCommit
	for _, ent := range ents {
		sandbox := ent.Name()
		if !ent.IsDir() || ValidateName("sandbox", sandbox) != nil {
			continue
		}
		if err := e.pruneCommitNotes(sandbox, ^uint64(0)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // no notes
			}
			return nil, nil, err
		}
		notes, err := os.ReadDir(e.commitNotesDir(sandbox))
		if err != nil {
			continue
		}
		for _, note := range notes {
			n, err := strconv.ParseUint(note.Name(), 10, 64)
			if err != nil {
				continue // a list, or not ours
			}
			g, _, ok := e.committedHere(sandbox, n)
			if !ok || e.ledgerSettled(sandbox, n, g) || e.loadSession(sandbox, n).info.Fenced {
				continue // the ledger has it, or its files are kept already
			}
			list, err := readPersistedList(e.persistedListPath(sandbox, n))
			if err != nil {
				e.warnf("gc: %v", err)
				continue
			}
			for _, lf := range list {
				keep[lf.Digest] = true
			}
			lost = append(lost, lostCommit{sandbox, n})
		}
	}
	return keep, lost, nil
}

// ledgerSettled says whether the ledger has session n of sandbox closed
// at generation g, as its note says it was (by whichever host: a host
// renamed since wrote it under its old id), or ended by this host's
// close --abandon (its user was told what was kept).
func (e *Env) ledgerSettled(sandbox string, n, g uint64) bool {
	shows := false
	err := e.store.View(func(tx *store.Tx) error {
		ses, err := tx.GetSession(sandbox, n)
		if err != nil {
			return err
		}
		shows = ses.State == store.StateClosed && (ses.ClosedGeneration == g || strings.HasPrefix(ses.Abandoned, abandonedHerePrefix))
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		// The ledger cannot say: keep the blobs this once.
		e.warnf("gc: session %d of %s: %v", n, sandbox, err)
	}
	return shows
}

// lostCommitsHint is what gc says of the lost closes whose blobs it kept.
func lostCommitsHint(lost []lostCommit) string {
	s := ""
	for i, l := range lost {
		if i > 0 {
			s += ", "
		}
		s += l.sandbox + " session " + strconv.FormatUint(l.n, 10)
	}
	return s
}
