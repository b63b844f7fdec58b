package hostile

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// OverlayChanges walks an overlay upperdir and classifies each entry
// against the lower dirs (lowers[0] is the top lower).
//
//   - A whiteout (char device 0/0) is a delete of what it hides below
//     (a whiteout hiding nothing is skipped).
//   - An upper directory marked opaque (trusted.overlay.opaque or
//     user.overlay.opaque = "y") that exists below as a directory was
//     recreated: every name of the merged lower directory that is not in
//     the upper one is reported deleted (subtree implied, never listed),
//     and the upper entries are adds. This applies recursively: an upper
//     directory inside a recreated one whose name was a directory below is
//     compared the same way, so everything that vanished is reported.
//   - An entry not present below is an add, and so is everything under an
//     added directory.
//   - An entry present below is a modify, except a directory that is a
//     directory both below and in the upper tree: a copied-up container,
//     only descended into (reported only when TooDeep).
//
// The lower dirs are merged as overlayfs does: a name is looked up from the
// top lower down; a whiteout hides it, the first other entry decides; a
// directory merges with the directories of the same name below it until a
// layer has a non-directory there or the directory is opaque. A lower
// entry that is a symlink is "present" (as a symlink) but never a
// directory: names under it are not present below.
//
// Parents come before children and the names of a directory in sorted
// byte order. fn is called as the walk goes; an error from fn stops the
// walk and is returned.
func OverlayChanges(ctx context.Context, upper string, lowers []string, fn func(Change) error) error {
	ufd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostile: open upper %s: %w", upper, err)
	}
	defer unix.Close(ufd)
	var low []int
	defer func() { closeAll(low) }()
	for _, l := range lowers {
		fd, err := unix.Open(l, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("hostile: open lower %s: %w", l, err)
		}
		low = append(low, fd)
		if op, err := isOpaque(fd); err != nil {
			return err
		} else if op {
			break
		}
	}
	replaced := false
	if len(low) > 0 {
		if replaced, err = isOpaque(ufd); err != nil {
			return err
		}
	}
	w := &overlayWalk{ctx: ctx, fn: fn}
	return w.dir("", 0, ufd, low, replaced)
}

type overlayWalk struct {
	ctx context.Context
	fn  func(Change) error
}

// dir reports the entries of the upper directory ufd at path (depth
// components), whose merged lower directory is the stack low. replaced
// says the upper directory hides low entirely (opaque).
func (w *overlayWalk) dir(path string, depth int, ufd int, low []int, replaced bool) error {
	names, err := readNames(ufd)
	if err != nil {
		return fmt.Errorf("hostile: read %q: %w", pathOrRoot(path), err)
	}
	var lowNames []string
	if replaced {
		if lowNames, err = mergedNames(low); err != nil {
			return fmt.Errorf("hostile: read lower %q: %w", pathOrRoot(path), err)
		}
	}
	i, j := 0, 0
	for i < len(names) || j < len(lowNames) {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		var name string
		inUpper := false
		switch {
		case j >= len(lowNames) || (i < len(names) && names[i] < lowNames[j]):
			name, inUpper = names[i], true
			i++
		case i >= len(names) || lowNames[j] < names[i]:
			name = lowNames[j]
			j++
		default:
			name, inUpper = names[i], true
			i++
			j++
		}
		p := path + "/" + name
		deep := tooDeep(p, depth+1)
		if !inUpper {
			if err := w.deleted(p, deep, low, name); err != nil {
				return err
			}
			continue
		}
		var st unix.Stat_t
		if err := fstatat(ufd, name, &st); err != nil {
			return fmt.Errorf("hostile: stat %q: %w", p, changedIf(err))
		}
		if isWhiteout(&st) {
			if err := w.deleted(p, deep, low, name); err != nil {
				return err
			}
			continue
		}
		var below unix.Stat_t
		present, err := lookup(low, name, &below)
		if err != nil {
			return fmt.Errorf("hostile: stat lower %q: %w", p, err)
		}
		c := changeFrom(KindAdd, p, &st)
		c.TooDeep = deep
		report := true
		if present && !replaced {
			c.Kind = KindModify
			if isDir(&st) && isDir(&below) {
				report = deep // a copied-up container
			}
		}
		if c.Type == TypeSymlink {
			if c.Link, err = readlinkat(ufd, name); err != nil {
				return fmt.Errorf("hostile: readlink %q: %w", p, changedIf(err))
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
		if err := w.descend(p, depth+1, ufd, name, &st, low, present && isDir(&below), replaced); err != nil {
			return err
		}
	}
	return nil
}

func (w *overlayWalk) descend(p string, depth, ufd int, name string, st *unix.Stat_t, low []int, lowDir, replaced bool) error {
	cfd, err := openDir(ufd, name, st)
	if err != nil {
		return fmt.Errorf("hostile: open %q: %w", p, changedIf(err))
	}
	defer unix.Close(cfd)
	var clow []int
	defer func() { closeAll(clow) }()
	if lowDir {
		if clow, err = descendLower(low, name); err != nil {
			return fmt.Errorf("hostile: open lower %q: %w", p, err)
		}
	}
	creplaced := false
	if len(clow) > 0 {
		creplaced = replaced
		if !creplaced {
			if creplaced, err = isOpaque(cfd); err != nil {
				return fmt.Errorf("hostile: %q: %w", p, err)
			}
		}
	}
	return w.dir(p, depth, cfd, clow, creplaced)
}

// deleted reports the delete of name if it is present in the merged lower
// directory low.
func (w *overlayWalk) deleted(p string, deep bool, low []int, name string) error {
	var below unix.Stat_t
	present, err := lookup(low, name, &below)
	if err != nil {
		return fmt.Errorf("hostile: stat lower %q: %w", p, err)
	}
	if !present {
		return nil
	}
	return w.fn(Change{Kind: KindDelete, Path: p, Type: typeOf(below.Mode), TooDeep: deep})
}

// lookup finds name in the merged lower directory low, as overlayfs does.
func lookup(low []int, name string, st *unix.Stat_t) (bool, error) {
	for _, fd := range low {
		err := fstatat(fd, name, st)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return false, err
		}
		return !isWhiteout(st), nil
	}
	return false, nil
}

// descendLower opens the merged lower directory name below low: the
// directories of that name from the top down, until a layer hides the
// rest (whiteout, non-directory, symlink, opaque directory).
func descendLower(low []int, name string) ([]int, error) {
	var out []int
	for _, fd := range low {
		var st unix.Stat_t
		err := fstatat(fd, name, &st)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			closeAll(out)
			return nil, err
		}
		if !isDir(&st) {
			break
		}
		cfd, err := openDir(fd, name, &st)
		if err != nil {
			if isNotThere(err) {
				break
			}
			closeAll(out)
			return nil, err
		}
		out = append(out, cfd)
		op, err := isOpaque(cfd)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		if op {
			break
		}
	}
	return out, nil
}

// mergedNames returns the sorted names present in the merged lower
// directory low (whiteouts hide the names below them).
func mergedNames(low []int) ([]string, error) {
	if len(low) == 1 {
		names, err := readNames(low[0])
		if err != nil {
			return nil, err
		}
		out := names[:0]
		for _, n := range names {
			var st unix.Stat_t
			if err := fstatat(low[0], n, &st); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return nil, err
			}
			if !isWhiteout(&st) {
				out = append(out, n)
			}
		}
		return out, nil
	}
	seen := map[string]bool{} // name -> present
	for _, fd := range low {
		names, err := readNames(fd)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if _, ok := seen[n]; ok {
				continue
			}
			var st unix.Stat_t
			if err := fstatat(fd, n, &st); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return nil, err
			}
			seen[n] = !isWhiteout(&st)
		}
	}
	out := make([]string, 0, len(seen))
	for n, ok := range seen {
		if ok {
			out = append(out, n)
		}
	}
	sortStrings(out)
	return out, nil
}

// TreeChanges compares a full tree with its base (a full copy, as the
// native snapshotter makes): a double walk with descriptors. An entry in
// both is a modify when its type, size, mode, owner, mtime (ns) or symlink
// target differ; directories in both are only descended into. Entries of
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
	w := &treeWalk{ctx: ctx, fn: fn}
	return w.dir("", 0, tfd, bfd)
}

type treeWalk struct {
	ctx context.Context
	fn  func(Change) error
}

func (w *treeWalk) dir(path string, depth, tfd, bfd int) error {
	names, err := readNames(tfd)
	if err != nil {
		return fmt.Errorf("hostile: read %q: %w", pathOrRoot(path), err)
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
				if err := w.fn(Change{Kind: KindDelete, Path: p, Type: typeOf(bst.Mode), TooDeep: deep}); err != nil {
					return err
				}
			}
			continue
		}
		var st unix.Stat_t
		if err := fstatat(tfd, name, &st); err != nil {
			return fmt.Errorf("hostile: stat %q: %w", p, changedIf(err))
		}
		c := changeFrom(KindAdd, p, &st)
		c.TooDeep = deep
		if c.Type == TypeSymlink {
			if c.Link, err = readlinkat(tfd, name); err != nil {
				return fmt.Errorf("hostile: readlink %q: %w", p, changedIf(err))
			}
		}
		report := true
		bothDirs := inBase && isDir(&st) && isDir(&bst)
		if inBase {
			c.Kind = KindModify
			switch {
			case bothDirs:
				report = deep
			case st.Mode != bst.Mode || st.Uid != bst.Uid || st.Gid != bst.Gid ||
				st.Mtim != bst.Mtim || (!isDir(&st) && st.Size != bst.Size):
			case c.Type == TypeSymlink:
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
	cfd, err := openDir(tfd, name, st)
	if err != nil {
		return fmt.Errorf("hostile: open %q: %w", p, changedIf(err))
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

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
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

// changedIf maps the errors of an entry that changed under the walk (it
// was listed, then vanished or turned into something else) to ErrChanged.
func changedIf(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) ||
		errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return err
}
