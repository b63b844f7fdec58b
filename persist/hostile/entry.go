package hostile

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

// Entry describes what is at path beneath root (a trusted tree, such as an
// image's committed snapshot) as an add Change, never following a link on
// the way or at path: a symlink on the way is ErrSymlink, nothing there
// (or a file on the way) ErrNotFound. A link's target is read.
func Entry(root, path string) (Change, error) {
	rootfd, dir, name, err := splitOpen(root, path)
	if err != nil {
		return Change{}, err
	}
	defer unix.Close(rootfd)
	parent := rootfd
	if dir != "" {
		if parent, err = openat2(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return Change{}, pathErr(path, err)
		}
		defer unix.Close(parent)
	}
	var st unix.Stat_t
	if err := fstatat(parent, name, &st); err != nil {
		return Change{}, pathErr(path, err)
	}
	c := changeFrom(change.KindAdd, path, &st)
	if c.Type == change.TypeSymlink {
		if c.Link, err = readlinkat(parent, name); err != nil {
			return Change{}, pathErr(path, err)
		}
	}
	return c, nil
}

// SubtreeAdds calls fn with an add for every entry below the directory
// path beneath root (path itself excluded), parents before children, in
// TreeChanges' order and under its rules (TooDeep and Changed entries are
// reported, not descended into).
func SubtreeAdds(ctx context.Context, root, path string, fn func(Change) error) error {
	rootfd, dir, name, err := splitOpen(root, path)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	parent := rootfd
	if dir != "" {
		if parent, err = openat2(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return pathErr(path, err)
		}
		defer unix.Close(parent)
	}
	fd, err := openDir(parent, name, nil)
	if err != nil {
		return pathErr(path, err)
	}
	defer unix.Close(fd)
	w := &treeWalk{ctx: ctx, fn: fn}
	if err := w.dir(path, countComponents(path), fd, -1); err != nil {
		return fmt.Errorf("hostile: subtree %q: %w", path, err)
	}
	return nil
}

func countComponents(path string) int {
	n := 0
	for i := 0; i < len(path); i++ {
		if path[i] == '/' {
			n++
		}
	}
	return n
}
