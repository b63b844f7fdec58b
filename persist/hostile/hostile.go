// Package hostile reads a sandbox's files as hostile input: it walks with directory descriptors, never follows a symlink, never leaves the tree, and reports what it cannot safely read.
//
// Everything is done relative to directory descriptors: the only path
// strings handed to the kernel are the trusted roots given by the caller
// (the upperdir, the lower dirs, the base of a native snapshot) and single
// names read from getdents. Each directory below a root is opened one
// component at a time with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) and O_NOFOLLOW (or openat with
// O_NOFOLLOW plus a device check where openat2 is missing), and every
// lookup uses fstatat(AT_SYMLINK_NOFOLLOW). A symlink is therefore never
// resolved, neither in the sandbox's upper tree nor in a lower one: an
// image link such as /home -> /var/home cannot make the walker consult the
// host's /var/home.
//
// Writer applies the same rules to writing (the persisted state into a new
// layer): parents opened one component at a time without following links,
// the last name handled with the *at calls, files written to a fresh
// temporary name and renamed into place once complete.
//
// Limits. A path is "too deep" when it has more than MaxDepth components
// or is PathMax bytes or longer (it could not be handed to the kernel as
// one string, so the writer could not recreate it). Such an entry is
// reported once, with TooDeep set, and the walker does not descend below
// it; the rest of the walk goes on.
//
// Resources. The walk is streaming: a Change is handed to the callback as
// soon as it is known and nothing is accumulated across directories. At
// any time it holds one open descriptor per tree per level of the current
// path (upper + the lower dirs that still merge at that level, or tree +
// base), so at most (1+len(lowers))*(MaxDepth+1) descriptors, and the
// names of the directories on the current path (a directory's names must
// be held to report them in sorted order; a flat directory of 1,000,000
// entries costs its names, roughly 40 MB, not a list of changes).
package hostile

import (
	"errors"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// Limits on the paths the walker descends into.
const (
	// PathMax is the host's PATH_MAX: a path of this many bytes or more is
	// reported TooDeep.
	PathMax = 4096
	// MaxDepth is the largest number of path components the walker
	// descends to; an entry with more is reported TooDeep. It also bounds
	// the descriptors held at once.
	MaxDepth = 256
)

// Change is one entry of a sandbox's tree that differs from its base.
//
// For change.KindDelete only Kind, Path, Type and TooDeep are set; Type is the
// type the entry had below (change.TypeFile if unknown). A delete of a directory
// implies its whole subtree: the walker never lists a deleted subtree.
// A change.KindModify whose Type is not change.TypeDir may replace what was a directory
// below; that directory's subtree is then gone as well.
type Change struct {
	Kind    change.Kind     // change.KindAdd, change.KindModify, change.KindDelete
	Path    string          // clean absolute path inside the sandbox, exact bytes ("/home/user/a.txt")
	Type    change.FileType // type in the upper tree (for deletes: the type it had below, best effort, change.TypeFile if unknown)
	Size    int64
	Disk    int64  // bytes it takes on disk (st_blocks × 512): less than Size for a sparse file
	Mode    uint32 // full st_mode
	UID     uint32
	GID     uint32
	Mtime   time.Time
	Nlink   uint64
	Dev     uint64
	Ino     uint64
	Link    string // symlink target (readlinkat on the parent fd), never resolved
	TooDeep bool   // the path is too long or too deep for the host: not descended into, not to be read; reported once for the subtree root
	Changed bool   // the entry vanished or changed type under the walk: only Kind (add), Path, Type (best effort) and TooDeep are set; nothing below it is listed
	// Below is the version of the entry that the session started with, for
	// a change.KindModify (nil otherwise).
	Below *Below
}

// Below describes the lower (overlay) or base (native) version of a
// modified entry: what the session started with.
type Below struct {
	Type     change.FileType
	Mode     uint32 // full st_mode
	UID, GID uint32
	Size     int64
	// Root is the tree that holds it: the overlay lower directory or the
	// native base. Read it with OpenFile/ReadLink(Root, Change.Path).
	Root string
}

// testHook, when set (by tests), runs at two points of a walk: "listed"
// after a directory was listed, before its entries are looked at, and
// "descend" before a directory is opened to be walked; a test can change
// the tree there as a racing process would.
var testHook func(at, path string)

// Errors of OpenFile, File and ReadLink. Each is distinct; callers test
// them with errors.Is.
var (
	ErrSymlink  = errors.New("hostile: path is or passes through a symlink")
	ErrSpecial  = errors.New("hostile: not a regular file")
	ErrTooLarge = errors.New("hostile: file is larger than the limit")
	ErrChanged  = errors.New("hostile: file changed while being read")
	ErrTooDeep  = errors.New("hostile: path too long or too deep")
	ErrNotFound = errors.New("hostile: no such file")
)
