// Package view renders persist's values as the JSON scripts read (SPEC.md
// field names), once for both the CLI's --json and serve's /api/.
package view

import (
	"fmt"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist"
)

// Record is a record as scripts see it.
type Record struct {
	ID        uint64          `json:"id"`
	Sandbox   string          `json:"sandbox"`
	Session   uint64          `json:"session"`
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"`
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Mode      string          `json:"mode"`
	UID       uint32          `json:"uid"`
	GID       uint32          `json:"gid"`
	// MetaOnly: a directory whose mode or owner alone changed; it keeps
	// what it holds.
	MetaOnly  bool              `json:"meta_only,omitempty"`
	Digest    string            `json:"digest"`
	Exception string            `json:"exception"`
	Status    change.Status     `json:"status"`
	Reason    string            `json:"reason,omitempty"`
	Review    change.ReviewMode `json:"review"`
	Purged    bool              `json:"purged,omitempty"`
	Pruned    bool              `json:"pruned,omitempty"`
	Mtime     *time.Time        `json:"mtime"` // null for a delete, which has none
	Link      string            `json:"link,omitempty"`
	// LinkBytes is the exact target when it is not valid UTF-8 (Link then
	// has U+FFFD for the bytes it cannot show), as PathBytes for the path.
	LinkBytes []byte `json:"link_bytes,omitempty"`
	// Host is, in review listings, the host that opened the session whose
	// close wrote the record ("" when the session names none).
	Host string `json:"host,omitempty"`
}

// NewRecord renders r.
func NewRecord(r *persist.Record) Record {
	text, exact := escape.JSON(r.Path)
	link, linkExact := escape.JSON(r.Link)
	return Record{ID: r.ID, Sandbox: r.Sandbox, Session: r.Session, Path: text, PathBytes: exact, Kind: r.Kind,
		Type: r.Type, Size: r.Size, Mode: fmt.Sprintf("%04o", r.Mode), UID: r.UID, GID: r.GID, MetaOnly: r.MetaOnly, Digest: r.Digest, Exception: r.Exception,
		Status: r.Status, Reason: r.Reason, Review: r.Review, Purged: r.Purged, Pruned: r.Pruned, Mtime: timeOrNil(r.Mtime),
		Link: link, LinkBytes: linkExact}
}

// timeOrNil is t, or nil for the zero time (JSON null, not year 1).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Records renders a list (never null).
func Records(recs []*persist.Record) []Record {
	out := make([]Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, NewRecord(r))
	}
	return out
}

// Exception is a rule as scripts see it.
type Exception struct {
	ID        string            `json:"id"`
	Sandbox   string            `json:"sandbox"`
	Patterns  []string          `json:"patterns"`
	Reason    string            `json:"reason"`
	Created   time.Time         `json:"created"`
	Expires   *time.Time        `json:"expires"`
	Review    change.ReviewMode `json:"review"`
	State     string            `json:"state"`
	Forced    bool              `json:"forced"`
	Limits    persist.Limits    `json:"limits"`
	AllowExec bool              `json:"allow_exec"`
	AllowSym  bool              `json:"allow_symlinks"`
	Atomic    bool              `json:"atomic"`
	Revoked   *time.Time        `json:"revoked,omitempty"`
	RevokedBy string            `json:"revoked_by,omitempty"`
	RevokeWhy string            `json:"revoke_reason,omitempty"`
}

// NewException renders x as of now (its state: active, expired, revoked).
func NewException(x *persist.Exception, now time.Time) Exception {
	j := Exception{ID: x.ID, Sandbox: x.Sandbox, Patterns: x.Patterns, Reason: x.Reason, Created: x.Created,
		Review: x.Review, State: x.State(now), Forced: x.Forced, Limits: x.EffectiveLimits(),
		AllowExec: x.AllowExec, AllowSym: x.AllowSymlinks, Atomic: x.Atomic, RevokedBy: x.RevokedBy, RevokeWhy: x.RevokeReason}
	if !x.Expires.IsZero() {
		e := x.Expires
		j.Expires = &e
	}
	if !x.Revoked.IsZero() {
		r := x.Revoked
		j.Revoked = &r
	}
	return j
}

// ReviewShow is `review show --json`: the record, its rule, the version it
// replaces and the diff.
type ReviewShow struct {
	Record
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	Note      string     `json:"note,omitempty"`
	InEffect  bool       `json:"in_effect"`
	Rule      *Exception `json:"rule"`
	Previous  *Record    `json:"previous"`
	Diff      string     `json:"diff"`
	Binary    bool       `json:"binary"`
	DiffNote  string     `json:"diff_note,omitempty"`
}

// NewReviewShow renders a review report as of now.
func NewReviewShow(rep *persist.ReviewReport, now time.Time) ReviewShow {
	r := rep.Record
	j := ReviewShow{Record: NewRecord(r), DecidedBy: r.DecidedBy, Note: r.Note, InEffect: rep.InEffect,
		Diff: rep.Diff.Text, Binary: rep.Diff.Binary, DiffNote: rep.Diff.Note}
	if !r.DecidedAt.IsZero() {
		at := r.DecidedAt
		j.DecidedAt = &at
	}
	if rep.Exception != nil {
		x := NewException(rep.Exception, now)
		j.Rule = &x
	}
	if rep.Previous != nil {
		p := NewRecord(rep.Previous)
		j.Previous = &p
	}
	return j
}
