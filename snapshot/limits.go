package snapshot

import (
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/units"
)

// Limits bound what an import may write. A zero field takes its default
// (see DefaultLimits); a negative one means no limit.
type Limits struct {
	// MaxBytes caps the bytes written: data blocks of regular files.
	// Holes of sparse entries and all-zero blocks are not written and
	// cost nothing. Default: the free space of the state directory's
	// filesystem less 10%.
	MaxBytes int64
	// MaxFiles caps the entries created: files, directories and links.
	// Default: DefaultMaxFiles, or 90% of the free inodes where the
	// filesystem has fewer.
	MaxFiles int64
	// MaxLogical caps the logical size of all regular files together
	// (holes and zeros included): expanding a hole still costs reading
	// time. Default: the larger of MaxBytes and DefaultMaxLogical.
	MaxLogical int64
}

// DefaultMaxFiles is the default entry limit of an import.
const DefaultMaxFiles = 10_000_000

// DefaultMaxLogical is the least default logical-size limit of an import:
// Go's tar reader expands holes at about 60 GB/s here (docs/design.md),
// so 1 TiB of holes costs some 20 seconds.
const DefaultMaxLogical = 1 << 40

// resolve fills the defaults from the filesystem holding dir.
func (l Limits) resolve(dir string) (Limits, error) {
	if l.MaxBytes == 0 || l.MaxFiles == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return l, fmt.Errorf("free space of %s: %w", dir, err)
		}
		if l.MaxBytes == 0 {
			l.MaxBytes = int64(st.Bavail) * st.Bsize / 10 * 9
		}
		if l.MaxFiles == 0 {
			l.MaxFiles = DefaultMaxFiles
			// btrfs and some others report no inode counts (Files = 0).
			if free := int64(st.Ffree) / 10 * 9; st.Files > 0 && free < l.MaxFiles {
				l.MaxFiles = free
			}
		}
	}
	if l.MaxLogical == 0 {
		l.MaxLogical = max(l.MaxBytes, DefaultMaxLogical)
	}
	return l, nil
}

// LimitError is an import stopped because it went past one of its Limits.
// It unwraps to errdefs.ErrResourceExhausted.
type LimitError struct {
	Name  string // the entry that went past the limit
	Limit string // "MaxBytes", "MaxFiles" (the Limits fields) or "logical size"
	Value int64  // the limit
}

func (e *LimitError) Error() string {
	switch e.Limit {
	case "MaxFiles":
		return fmt.Sprintf("tar entry %q: the archive has more than %d entries", e.Name, e.Value)
	case "logical size":
		return fmt.Sprintf("tar entry %q: the files' logical size (holes included) passes %s, the limit on what an import may expand", e.Name, units.FormatSize(e.Value))
	}
	return fmt.Sprintf("tar entry %q: the archive writes more than %s", e.Name, units.FormatSize(e.Value))
}

func (e *LimitError) Unwrap() error { return errdefs.ErrResourceExhausted }
