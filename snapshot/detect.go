package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// overlayOptions are passed to every overlay mount. With them the upperdir
// is an exact record of the changes (DESIGN.md, "The snapshot chain").
var overlayOptions = []string{"index=off", "metacopy=off", "redirect_dir=off"}

// OverlayError says why overlay mounts fail under a directory. Fix says
// what would help; the command line words it with its flags. It matches
// errdefs.ErrNotImplemented.
type OverlayError struct {
	Msg string
	Fix string // FixPath, FixFilesystem, FixPrivilege or FixKernel
}

// What would make overlay mounts work (OverlayError.Fix); the native
// snapshotter is always the other way.
const (
	FixPath       = "path"       // a directory whose path has no ',' or ':'
	FixFilesystem = "filesystem" // a directory on ext4, xfs, btrfs or tmpfs
	FixPrivilege  = "privilege"  // running as root
	FixKernel     = "kernel"     // loading the overlay module (in Msg)
)

func (e *OverlayError) Error() string { return e.Msg }
func (e *OverlayError) Unwrap() error { return errdefs.ErrNotImplemented }

func overlayErr(fix, format string, args ...any) error {
	return &OverlayError{Msg: fmt.Sprintf(format, args...), Fix: fix}
}

// Detect picks the snapshotter for a state directory: KindOverlay when an
// overlay mount works on the filesystem holding dir, else KindNative. Like
// CheckOverlay it creates dir when missing.
func Detect(dir string) string {
	if CheckOverlay(dir) == nil {
		return KindOverlay
	}
	return KindNative
}

// CheckOverlay returns nil when overlay mounts with our options work under
// dir. It proves it with a tiny real mount (and a write through it) in a
// temporary directory under dir, which it removes. Else the error says why
// and what to do. dir is created (0700) when missing.
func CheckOverlay(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("cannot check overlay support on %s: %w", dir, err)
	}
	if strings.ContainsAny(abs, ",:") {
		return overlayErr(FixPath, "cannot mount overlay on %s: the path holds ',' or ':', which overlay mount options cannot carry", abs)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("cannot check overlay support on %s: %w", abs, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(abs, &st); err != nil {
		return fmt.Errorf("cannot check overlay support on %s: statfs: %w", abs, err)
	}
	fsType := fsTypeName(int64(st.Type))
	if st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return overlayErr(FixFilesystem, "cannot mount overlay on %s (an overlay filesystem)", abs)
	}

	td, err := os.MkdirTemp(abs, ".overlay-check-")
	if err != nil {
		return fmt.Errorf("cannot check overlay support on %s: %w", abs, err)
	}
	lower, upper, work, merged := filepath.Join(td, "l"), filepath.Join(td, "u"), filepath.Join(td, "w"), filepath.Join(td, "m")
	for _, d := range []string{lower, upper, work, merged} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(td)
			return fmt.Errorf("cannot check overlay support on %s: %w", abs, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,%s", lower, upper, work, strings.Join(overlayOptions, ","))
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		os.RemoveAll(td)
		switch {
		case errors.Is(err, unix.EPERM):
			return overlayErr(FixPrivilege, "cannot mount overlay on %s: %v (overlay mounts need root)", abs, err)
		case errors.Is(err, unix.ENODEV):
			return overlayErr(FixKernel, "cannot mount overlay on %s: the kernel has no overlay filesystem (try modprobe overlay)", abs)
		default:
			return overlayErr(FixFilesystem, "cannot mount overlay on %s (%s): %v", abs, fsType, err)
		}
	}
	werr := os.WriteFile(filepath.Join(merged, "probe"), nil, 0o600)
	if err := unix.Unmount(merged, 0); err != nil {
		// Leave the directory alone: removing it through a live mount
		// would be worse than a stray temp dir.
		return fmt.Errorf("cannot check overlay support on %s: unmount %s: %w", abs, merged, err)
	}
	if werr == nil {
		if _, err := os.Lstat(filepath.Join(upper, "probe")); err != nil {
			werr = fmt.Errorf("a write through the mount did not reach the upper directory: %w", err)
		}
	}
	os.RemoveAll(td)
	if werr != nil {
		return overlayErr(FixFilesystem, "cannot use overlay on %s (%s): %v", abs, fsType, werr)
	}
	return nil
}

func fsTypeName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "an overlay filesystem"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	case unix.ECRYPTFS_SUPER_MAGIC:
		return "ecryptfs"
	case 0x2fc12fc1:
		return "zfs"
	case 0x61756673:
		return "aufs"
	default:
		return fmt.Sprintf("filesystem type 0x%x", magic)
	}
}
