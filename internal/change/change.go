// Package change names, once, the vocabulary spillway's packages share about
// a change: its kind, the type of the entry, a record's status, close's
// verdict and an exception's review mode.
package change

// Kind is what happened to a path in a session.
type Kind string

// Kinds of change.
const (
	KindAdd    Kind = "add"
	KindModify Kind = "modify"
	KindDelete Kind = "delete"
)

// FileType is the type of a file system entry.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeFIFO    FileType = "fifo"
	TypeSocket  FileType = "socket"
	TypeDevice  FileType = "device"
)

// Status is where a record stands in review.
type Status string

// Record statuses.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusRejected Status = "rejected"
	StatusRefused  Status = "refused" // historic: closes before refusals went to the recovery manifest
)

// Verdict is what close does with a change.
type Verdict string

// Verdicts.
const (
	VerdictPersist Verdict = "persist"
	VerdictDiscard Verdict = "discard"
	VerdictRefuse  Verdict = "refuse"
)

// ReviewMode says when an exception's changes take effect.
type ReviewMode string

// Review modes.
const (
	ReviewAfter  ReviewMode = "after"  // the change is applied at once and waits for review
	ReviewBefore ReviewMode = "before" // the change is held back until approved
)
