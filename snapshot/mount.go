package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// hostOptions are on every mount spillway makes on the host: a device node
// or a setuid file made inside a sandbox is never usable through it.
var hostOptions = []string{"nodev", "nosuid"}

// HostMounts returns a copy of mounts with nodev and nosuid added to each
// one's options: what MountAll mounts, and what a runtime that mounts a root
// itself should mount.
func HostMounts(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		m.Options = slices.Clone(m.Options)
		for _, o := range hostOptions {
			if !slices.Contains(m.Options, o) {
				m.Options = append(m.Options, o)
			}
		}
		out[i] = m
	}
	return out
}

// MountAll mounts mounts (as returned by Prepare or Mounts) on target with
// nodev and nosuid (HostMounts), creating target with mode 0700 when it does
// not exist. On failure nothing stays mounted on target.
func MountAll(mounts []mount.Mount, target string) error {
	if len(mounts) == 0 {
		return errors.New("mount: no mounts given")
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	err := mount.All(HostMounts(mounts), target)
	if err == nil {
		err = hostFlags(target)
	}
	if err != nil {
		// mount.All stops at the first failure; undo what it did mount.
		if uerr := Unmount(target); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return fmt.Errorf("mount %s: %w", target, err)
	}
	return nil
}

// hostFlags makes sure the mount on target is nodev and nosuid. containerd
// applies flags to a bind mount only with ro, so a bind mount (the native
// snapshotter's) is remounted with them, keeping ro and noexec.
func hostFlags(target string) error {
	const want = unix.ST_NODEV | unix.ST_NOSUID
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return err
	}
	if st.Flags&want == want {
		return nil
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NODEV | unix.MS_NOSUID)
	flags |= uintptr(st.Flags & (unix.ST_RDONLY | unix.ST_NOEXEC))
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount nodev,nosuid: %w", err)
	}
	if err := unix.Statfs(target, &st); err != nil {
		return err
	}
	if st.Flags&want != want {
		return errors.New("the mount is not nodev,nosuid")
	}
	return nil
}

// Unmount unmounts target and anything mounted below it, deepest first,
// retrying while the kernel says EBUSY. It never detaches lazily: a mount
// that stays busy is an error, because a lazily detached root could still be
// written to while it is being read. Unmount is idempotent: a target that
// does not exist or is not mounted is not an error.
func Unmount(target string) error {
	if target == "" {
		return errors.New("unmount: empty path")
	}
	if err := mount.UnmountRecursive(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	mounted, err := IsMounted(target)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if mounted {
		return fmt.Errorf("unmount %s: still mounted", target)
	}
	return nil
}

// IsMounted reports whether target is a mount point. A target that does not
// exist is not mounted.
func IsMounted(target string) (bool, error) {
	ok, err := mountinfo.Mounted(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return ok, err
}

// MountsUnder returns the mount points strictly below dir, sorted. dir itself
// is not included even when it is a mount point (a state directory may well
// sit on its own filesystem). Used by check and recovery to find stale
// mounts.
func MountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	prefix := strings.TrimSuffix(abs, "/") + "/"
	var out []string
	for _, mi := range infos {
		if !strings.HasPrefix(mi.Mountpoint, prefix) {
			continue
		}
		if !slices.Contains(out, mi.Mountpoint) {
			out = append(out, mi.Mountpoint)
		}
	}
	slices.Sort(out)
	return out, nil
}

// OverlayDirs parses the upperdir and lowerdir options of an overlay mount.
// lowers is in overlay order: the first is the top layer. ok is false unless
// mounts is a single overlay mount. upper is empty for a read-only (view)
// overlay.
func OverlayDirs(mounts []mount.Mount) (upper string, lowers []string, ok bool) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return "", nil, false
	}
	for _, o := range mounts[0].Options {
		switch {
		case strings.HasPrefix(o, "upperdir="):
			upper = strings.TrimPrefix(o, "upperdir=")
		case strings.HasPrefix(o, "lowerdir="):
			lowers = strings.Split(strings.TrimPrefix(o, "lowerdir="), ":")
		}
	}
	return upper, lowers, true
}

// BindSource returns the source directory of a single bind mount: the
// snapshot's directory for native snapshots, and for overlay snapshots
// without a parent.
func BindSource(mounts []mount.Mount) (string, bool) {
	if len(mounts) != 1 {
		return "", false
	}
	m := mounts[0]
	if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
		return m.Source, m.Source != ""
	}
	return "", false
}
