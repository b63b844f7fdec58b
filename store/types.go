package store

import (
	"time"

	"github.com/spillway/spillway/internal/change"
)

// Sandbox states.
const (
	StateClosed  = "closed"
	StateOpen    = "open"
	StateClosing = "closing" // a close started and has not finished
)

// Image is a clean, immutable base filesystem (a committed snapshot).
type Image struct {
	Name     string
	Snapshot string // committed snapshot key, "img/NAME"
	Files    int64
	Bytes    int64
	Created  time.Time
	Dir      string // native snapshotter only: the directory holding the image tree
	// Digest is the imported tree's digest (snapshot.ImportStats.Digest;
	// "" for an image imported before it was kept): each host's import
	// of a shared image must match it.
	Digest string
}

// Sandbox is a named disposable workspace bound to one image.
type Sandbox struct {
	Name           string
	Image          string
	Created        time.Time
	State          string // StateClosed, StateOpen or StateClosing
	Session        uint64 // current (open/closing) or last session; 0: never opened
	Generation     uint64 // current generation of persisted state
	OpenGeneration uint64 // generation laid into the open root
	Path           string // mount point of the root while open
	Snapshot       string // active snapshot key of the open root
	Layer          string // committed snapshot key under the open root ("" when none)
	BaseDir        string // native snapshotter only: tree the open root was copied from
	// Retention says how long the recovery area keeps what close did not
	// persist; nil (a store written before it existed): the defaults.
	Retention *Retention
	// Abandoned lists the sessions a host lost with its lease (another
	// host took over while they were open): their staged records never
	// take effect.
	Abandoned []uint64
}

// Retention is a sandbox's recovery-area settings. A zero duration or
// count keeps nothing.
type Retention struct {
	KeepRefused   time.Duration // how long refused content is kept
	KeepDiscarded time.Duration // how long discarded content is kept (last session only)
	KeepSessions  int           // how many of the newest sessions are kept
}

// Session is one open→close cycle of a sandbox.
type Session struct {
	Sandbox          string
	N                uint64
	State            string // StateOpen, StateClosing or StateClosed
	Opened           time.Time
	Closed           time.Time
	Generation       uint64 // generation laid at open
	ClosedGeneration uint64 // generation made by the close
	Host             string // the host that opened it ("" before leases)
	Token            uint64 // the fencing token of its lease (0 before leases)
	Abandoned        string // why it ended without a close (its host lost the lease)
	Summary          []byte // sessions closed before Report: the close summary as the CLI's JSON
	// Report is the close summary as persist encodes it (a typed value,
	// without the list of persisted files, which the session's records
	// give), kept for re-prints.
	Report []byte
	// Refusals is the bounded summary of what the close refused, one entry
	// per exception and reason (sessions closed before it have refused
	// records instead).
	Refusals []RefusalSummary
}

// RefusalSummary sums the refusals of one exception for one reason in a
// session: counts and the first few paths, never a list of every one.
type RefusalSummary struct {
	Exception string
	Reason    string
	Count     int64
	Bytes     int64
	First     []string // the first paths refused, at most a few (exact bytes)
}

// Record is one change that met an exception at close.
type Record struct {
	ID        uint64
	Sandbox   string
	Session   uint64
	Path      string          // clean absolute path inside the sandbox, exact bytes
	Kind      change.Kind     // change.KindAdd, change.KindModify, change.KindDelete
	Type      change.FileType // "file", "dir", "symlink", "fifo", "socket", "device", …
	Size      int64
	Mode      uint32 // permission bits as stored (setuid/setgid/sticky dropped)
	UID, GID  uint32
	Mtime     time.Time
	Digest    string            // "sha256:<hex>" for files whose content was kept
	Link      string            // symlink target, for persisted links
	Exception string            // id of the exception that matched
	Review    change.ReviewMode // review mode of the exception at close
	Status    change.Status     // change.StatusPending, change.StatusApproved, change.StatusRejected, change.StatusRefused
	Reason    string            // refusal code, or the reviewer's reason for a rejection
	Purged    bool              // removed from the persisted state by `exception revoke --purge`
	Pruned    bool              // its content was dropped by `persisted prune` (Digest is then "")
	// MetaOnly marks a modify of a directory that was a directory before
	// too: only its mode or owner changed, and what lies beneath it stays
	// (Replaces). A modify directory record without it replaced a file or
	// a link, and starts empty as a new directory does.
	MetaOnly  bool
	Created   time.Time
	DecidedBy string
	DecidedAt time.Time
	Note      string
}

// Event is one entry of the hash-chained audit log.
type Event struct {
	// V is the entry's format: 0 for entries of the single chain of
	// stores written before chains per sandbox; 2 for chained entries
	// (ChainSeq set, hashed under "spillway-audit-v2").
	V        uint8
	ChainSeq uint64 // the entry's place in the chain of its Sandbox ("": the fleet chain)
	Seq      uint64
	Time     time.Time
	Type     string            // e.g. "image.import", "sandbox.close"
	Sandbox  string            // "" when not about one sandbox
	User     string            // OS user that ran the command
	Data     map[string]string // event details; names exact
	Prev     [32]byte          // hash of the previous entry (zero for the first)
	Hash     [32]byte          // sha256("spillway-audit-v1\0" ‖ canonical encoding)
}
