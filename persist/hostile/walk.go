package hostile

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

// TreeChanges compares a full tree with its base (a full copy, as the
// native snapshotter makes): a double walk with descriptors. An entry in
// both is a modify when its type, size, mode, owner, mtime (ns) or symlink
// target differ; directories in both are only descended into, and reported
// only when their permission bits or owner changed. Entries of
// base missing from tree are deletes (the subtree root only). An empty
// base means every entry is an add. Same streaming and ordering rules as
// OverlayChanges.
func TreeChanges(ctx context.Context, tree, base string, fn func(Change) error) error {
	tfd, err := unix.Open(tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostile: open tree %s: %w", tree, err)
	}
	defer unix.Close(tfd)
	bfd := -1
	if base != "" {
		if bfd, err = unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("hostile: open base %s: %w", base, err)
		}
		defer unix.Close(bfd)
	}
	w := &treeWalk{ctx: ctx, fn: fn, base: base}
	return w.dir("", 0, tfd, bfd)
}

type treeWalk struct {
	ctx  context.Context
	fn   func(Change) error
	base string // the base tree's path, for Change.Below
}

func (w *treeWalk) dir(path string, depth, tfd, bfd int) error {
	names, err := readNames(tfd)
	if err != nil {
		return fmt.Errorf("hostile: read %q: %w", pathOrRoot(path), err)
	}
	if testHook != nil {
		testHook("listed", path)
	}
	var bnames []string
	if bfd >= 0 {
		if bnames, err = readNames(bfd); err != nil {
			return fmt.Errorf("hostile: read base %q: %w", pathOrRoot(path), err)
		}
	}
	i, j := 0, 0
	for i < len(names) || j < len(bnames) {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		var name string
		inTree, inBase := false, false
		switch {
		case j >= len(bnames) || (i < len(names) && names[i] < bnames[j]):
			name, inTree = names[i], true
			i++
		case i >= len(names) || bnames[j] < names[i]:
			name, inBase = bnames[j], true
			j++
		default:
			name, inTree, inBase = names[i], true, true
			i++
			j++
		}
		p := path + "/" + name
		deep := tooDeep(p, depth+1)
		var bst unix.Stat_t
		if inBase {
			if err := fstatat(bfd, name, &bst); err != nil {
				if err != unix.ENOENT {
					return fmt.Errorf("hostile: stat base %q: %w", p, err)
				}
				inBase = false
			}
		}
		if !inTree {
			if inBase {
				if err := w.fn(Change{Kind: change.KindDelete, Path: p, Type: typeOf(bst.Mode), TooDeep: deep}); err != nil {
					return err
				}
			}
			continue
		}
		var st unix.Stat_t
		if err := fstatat(tfd, name, &st); err != nil {
			if err := changedIf(err); isChanged(err) {
				if err := w.fn(Change{Kind: change.KindAdd, Path: p, Type: change.TypeFile, TooDeep: deep, Changed: true}); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("hostile: stat %q: %w", p, err)
		}
		c := changeFrom(change.KindAdd, p, &st)
		c.TooDeep = deep
		if c.Type == change.TypeSymlink {
			if c.Link, err = readlinkat(tfd, name); err != nil {
				if err := changedIf(err); isChanged(err) {
					if err := w.fn(Change{Kind: change.KindAdd, Path: p, Type: change.TypeSymlink, TooDeep: deep, Changed: true}); err != nil {
						return err
					}
					continue
				}
				return fmt.Errorf("hostile: readlink %q: %w", p, err)
			}
		}
		report := true
		bothDirs := inBase && isDir(&st) && isDir(&bst)
		if inBase {
			c.Kind = change.KindModify
			c.Below = belowFrom(&bst, w.base)
			switch {
			case bothDirs:
				report = deep || dirMetaChanged(&st, &bst)
			case st.Mode != bst.Mode || st.Uid != bst.Uid || st.Gid != bst.Gid ||
				st.Mtim != bst.Mtim || (!isDir(&st) && st.Size != bst.Size):
			case c.Type == change.TypeSymlink:
				link, err := readlinkat(bfd, name)
				if err != nil {
					return fmt.Errorf("hostile: readlink base %q: %w", p, err)
				}
				report = link != c.Link
			default:
				report = false
			}
		}
		if report {
			if err := w.fn(c); err != nil {
				return err
			}
		}
		if !isDir(&st) || deep {
			continue
		}
		if err := w.descend(p, depth+1, tfd, bfd, name, &st, &bst, bothDirs); err != nil {
			return err
		}
	}
	return nil
}

func (w *treeWalk) descend(p string, depth, tfd, bfd int, name string, st, bst *unix.Stat_t, baseDir bool) error {
	if testHook != nil {
		testHook("descend", p)
	}
	cfd, err := openDir(tfd, name, st)
	if err != nil {
		if err := changedIf(err); isChanged(err) {
			return w.fn(Change{Kind: change.KindAdd, Path: p, Type: change.TypeDir, Changed: true})
		}
		return fmt.Errorf("hostile: open %q: %w", p, err)
	}
	defer unix.Close(cfd)
	cbfd := -1
	if baseDir {
		if cbfd, err = openDir(bfd, name, bst); err != nil {
			return fmt.Errorf("hostile: open base %q: %w", p, err)
		}
		defer unix.Close(cbfd)
	}
	return w.dir(p, depth, cfd, cbfd)
}

func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// isNotThere reports errors that mean "not a directory we may enter".
func isNotThere(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) ||
		errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, ErrChanged)
}

// isChanged says whether err is ErrChanged.
func isChanged(err error) bool { return errors.Is(err, ErrChanged) }

// changedIf maps the errors of an entry that changed under the walk (it
// was listed, then vanished or turned into something else) to ErrChanged.
func changedIf(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) ||
		errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return err
}
