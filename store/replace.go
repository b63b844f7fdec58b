package store

import (
	"time"

	"github.com/spillway/spillway/internal/change"
)

// Replaces says whether record anc, on an ancestor of r's path, takes r
// out of the state: a newer delete removes the subtree, a newer file or
// symlink replaces a directory, and a newer directory starts empty — but
// not of a record held back for review (review before) and approved
// after the directory's session closed: that session never saw it, so its
// new directory replaced nothing of it.
func Replaces(anc, r *Record) bool {
	return replaces(anc.ID, newDir(anc), anc.Created, r)
}

func replaces(ancID uint64, ancNewDir bool, ancCreated time.Time, r *Record) bool {
	if ancID <= r.ID {
		return false
	}
	return !ancNewDir || !heldPast(r, ancCreated)
}

// newDir says whether r records a directory (not a delete of one).
func newDir(r *Record) bool { return r.Kind != change.KindDelete && r.Type == change.TypeDir }

// heldPast says whether r was held back for review until after t: approved
// (review before) later than t.
func heldPast(r *Record, t time.Time) bool {
	return r.Review == change.ReviewBefore && r.Status == change.StatusApproved && r.DecidedAt.After(t)
}
