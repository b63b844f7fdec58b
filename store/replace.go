package store

import (
	"time"

	"github.com/spillway/spillway/internal/change"
)

// Replaces says whether record anc, on an ancestor of r's path, takes r
// out of the state: a newer delete removes the subtree, a newer file or
// symlink replaces a directory, and a newer directory starts empty — but
// not of a record held back for review (review before) and approved after
// the directory's session opened: that session never saw it (a decision
// takes effect at the next open), so its new directory replaced nothing
// of it. opened says when a session opened (Tx.SessionOpened); nil, or a
// session it does not know, falls back to the directory record's
// creation (its session's close).
func Replaces(anc, r *Record, opened OpenedFunc) bool {
	return replaces(ancestor{id: anc.ID, kind: anc.Kind, typ: anc.Type, sandbox: anc.Sandbox, session: anc.Session, created: anc.Created}, r, opened)
}

// OpenedFunc says when session n of sandbox was opened (zero: unknown).
type OpenedFunc func(sandbox string, n uint64) time.Time

// ancestor is what Replaces reads of the record on an ancestor path.
type ancestor struct {
	id      uint64
	kind    change.Kind
	typ     change.FileType
	sandbox string
	session uint64
	created time.Time
}

func replaces(a ancestor, r *Record, opened OpenedFunc) bool {
	switch {
	case a.id <= r.ID:
		return false
	case a.kind == change.KindDelete || a.typ != change.TypeDir:
		return true
	case r.Review != change.ReviewBefore || r.Status != change.StatusApproved:
		return true
	}
	seen := a.created // the session's close: it opened before
	if opened != nil {
		if t := opened(a.sandbox, a.session); !t.IsZero() {
			seen = t
		}
	}
	return !r.DecidedAt.After(seen)
}
