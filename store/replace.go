package store

import (
	"time"

	"github.com/spillway/spillway/internal/change"
)

// Replaces says whether record anc, on an ancestor of r's path, takes r
// out of the state: a newer delete removes the subtree, a newer file or
// symlink replaces a directory, and a newer directory starts empty (not a
// directory whose mode or owner alone changed: MetaOnly) — but not of a
// record held back for review (review before) and approved after the
// directory's session opened: that session never saw it (a decision takes
// effect at the next open), so its new directory replaced nothing of it,
// unless the path was deleted or made a file or a link in between (a
// record of anc's path in effect between r and anc): r was gone before
// the directory came. seen (a *Tx) says when a session opened and what a
// path held; nil, or a session it does not know, falls back to the
// directory record's creation (its session's close) and to nothing in
// between.
func Replaces(anc, r *Record, seen Seen) bool {
	return replaces(ancestorOf(anc), r, seen)
}

// Seen is what Replaces reads beyond the two records: *Tx.
type Seen interface {
	// SessionOpened says when session n of sandbox was opened (zero:
	// unknown).
	SessionOpened(sandbox string, n uint64) time.Time
	// PathInEffect returns the records of one path that are in effect
	// (a *Tx: by their status, InEffectByStatus), by ascending id.
	PathInEffect(sandbox, path string) ([]*Record, error)
}

// PathInEffect returns the records of one path in effect by their status
// (InEffectByStatus), by ascending id. A transaction reads each path once
// until it writes.
func (tx *Tx) PathInEffect(sandbox, path string) ([]*Record, error) {
	k := pathKey{sandbox, path}
	if tx.inEffect == nil || tx.cachedAt != tx.writes {
		tx.inEffect, tx.cachedAt = map[pathKey][]*Record{}, tx.writes
	}
	if recs, ok := tx.inEffect[k]; ok {
		return recs, nil
	}
	hist, err := tx.PathHistory(sandbox, path)
	if err != nil {
		return nil, err
	}
	out := hist[:0]
	for _, r := range hist {
		if InEffectByStatus(r) {
			out = append(out, r)
		}
	}
	tx.inEffect[k] = out
	return out, nil
}

// ancestorOf is what Replaces reads of r. MetaOnly counts only on a
// directory's modify, whatever a record says.
func ancestorOf(r *Record) ancestor {
	metaOnly := r.MetaOnly && r.Kind == change.KindModify && r.Type == change.TypeDir
	return ancestor{id: r.ID, path: r.Path, kind: r.Kind, typ: r.Type, metaOnly: metaOnly, sandbox: r.Sandbox, session: r.Session, created: r.Created}
}

// ancestor is what Replaces reads of the record on an ancestor path.
type ancestor struct {
	id       uint64
	path     string
	kind     change.Kind
	typ      change.FileType
	metaOnly bool
	sandbox  string
	session  uint64
	created  time.Time
}

func replaces(a ancestor, r *Record, seen Seen) bool {
	switch {
	case a.id <= r.ID:
		return false
	case a.metaOnly:
		// A directory whose mode or owner changed replaces what the
		// directory record it changed replaced: the newest one in effect
		// before it that is not MetaOnly (none: the image's directory).
		b := metaBase(seen, a)
		return b != nil && replaces(ancestorOf(b), r, seen)
	case a.kind == change.KindDelete || a.typ != change.TypeDir:
		return true
	case r.Review != change.ReviewBefore || r.Status != change.StatusApproved:
		return true
	}
	opened := a.created // the session's close: it opened before
	if seen != nil {
		if t := seen.SessionOpened(a.sandbox, a.session); !t.IsZero() {
			opened = t
		}
	}
	if !r.DecidedAt.After(opened) {
		return true
	}
	return seen != nil && removedBetween(seen, a, r)
}

// metaBase returns the newest record of a's path in effect before a that
// is not MetaOnly, or nil (none, or no history to read: a replaces
// nothing then).
func metaBase(seen Seen, a ancestor) *Record {
	if seen == nil {
		return nil
	}
	hist, err := seen.PathInEffect(a.sandbox, a.path)
	if err != nil {
		return nil
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if h := hist[i]; h.ID < a.id && !ancestorOf(h).metaOnly {
			return h
		}
	}
	return nil
}

// removedBetween says whether a record of a's path between r and a, in
// effect, deleted the path or made it a file or a link: the sessions
// before a's never saw r either, but such a record removed what lay
// beneath. A history that cannot be read counts as removed (the rule
// without the exception).
func removedBetween(seen Seen, a ancestor, r *Record) bool {
	hist, err := seen.PathInEffect(a.sandbox, a.path)
	if err != nil {
		return true
	}
	for _, h := range hist {
		if h.ID <= r.ID || h.ID >= a.id {
			continue
		}
		if h.Kind == change.KindDelete || h.Type != change.TypeDir {
			return true
		}
	}
	return false
}

// InEffectByStatus says whether a record is in effect by its own fields:
// approved, or pending without review before, and neither purged nor
// pruned.
func InEffectByStatus(r *Record) bool {
	if r.Purged || r.Pruned {
		return false
	}
	return r.Status == change.StatusApproved || r.Status == change.StatusPending && r.Review != change.ReviewBefore
}
