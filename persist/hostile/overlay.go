package hostile

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

// OverlayOptions are the mount options that change how the kernel reads
// the layers of an overlay.
type OverlayOptions struct {
	// UserXattr: mounted with userxattr, so the kernel reads user.overlay.*
	// and ignores trusted.overlay.*; without it the reverse.
	UserXattr bool
}

// OverlayChanges is OverlayChangesWith for an overlay mounted without
// userxattr (how root mounts it, and how spillway's snapshotter does).
func OverlayChanges(ctx context.Context, upper string, lowers []string, fn func(Change) error) error {
	return OverlayChangesWith(ctx, upper, lowers, OverlayOptions{}, fn)
}

// OverlayChangesWith walks an overlay upperdir and classifies each entry
// against the lower dirs (lowers[0] is the top lower), reading only the
// markers the kernel honours for the mount options o (prefix
// trusted.overlay. or, with userxattr, user.overlay.; the other namespace
// is ordinary data a sandbox may have set):
//
//   - A whiteout is a delete of what it hides below (a whiteout hiding
//     nothing is skipped). In the upper dir only a char device 0/0 is a
//     whiteout. In a lower dir so is a zero-size regular file with the
//     overlay.whiteout xattr whose directory has overlay.opaque = "x"
//     (the kernel reads such xattr whiteouts in lower layers only).
//   - An upper directory marked opaque (overlay.opaque = "y") that exists
//     below as a directory was recreated: every name of the merged lower
//     directory that is not in the upper one is reported deleted (subtree
//     implied, never listed), and the upper entries are adds. This applies
//     recursively: an upper directory inside a recreated one whose name
//     was a directory below is compared the same way.
//   - An entry not present below is an add, and so is everything under an
//     added directory.
//   - An entry present below is a modify, except a directory that is a
//     directory both below and in the upper tree: a copied-up container,
//     only descended into, reported only when its permission bits or owner
//     changed (dirMetaChanged) or when TooDeep.
//   - An upper entry that vanishes or changes type between the listing of
//     its directory and its stat, open or readlink is reported once with
//     Changed set (nothing below it is listed) and the walk goes on.
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
func OverlayChangesWith(ctx context.Context, upper string, lowers []string, o OverlayOptions, fn func(Change) error) error {
	w := &overlayWalk{ctx: ctx, fn: fn, x: xattrsFor(o.UserXattr)}
	ufd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostile: open upper %s: %w", upper, err)
	}
	defer unix.Close(ufd)
	var low []lowerDir
	defer func() { closeLowers(low) }()
	for _, l := range lowers {
		fd, err := unix.Open(l, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("hostile: open lower %s: %w", l, err)
		}
		v, err := opaqueValue(fd, w.x.opaque)
		if err != nil {
			unix.Close(fd)
			return err
		}
		low = append(low, lowerDir{fd: fd, xwhiteouts: v == 'x', root: l})
		if v == 'y' {
			break
		}
	}
	replaced := false
	if len(low) > 0 {
		v, err := opaqueValue(ufd, w.x.opaque)
		if err != nil {
			return err
		}
		replaced = v == 'y'
	}
	return w.dir("", 0, ufd, low, replaced)
}

// xattrs are the overlay xattr names the kernel reads on one mount.
type xattrs struct{ opaque, whiteout string }

func xattrsFor(userXattr bool) xattrs {
	if userXattr {
		return xattrs{opaque: "user.overlay.opaque", whiteout: "user.overlay.whiteout"}
	}
	return xattrs{opaque: "trusted.overlay.opaque", whiteout: "trusted.overlay.whiteout"}
}

// lowerDir is one directory of a merged lower stack.
type lowerDir struct {
	fd         int
	xwhiteouts bool   // overlay.opaque = "x": may hold xattr whiteouts
	root       string // the lower directory this one lies in
}

func closeLowers(low []lowerDir) {
	for _, l := range low {
		unix.Close(l.fd)
	}
}

type overlayWalk struct {
	ctx context.Context
	fn  func(Change) error
	x   xattrs
}

// dir reports the entries of the upper directory ufd at path (depth
// components), whose merged lower directory is the stack low. replaced
// says the upper directory hides low entirely (opaque).
func (w *overlayWalk) dir(path string, depth int, ufd int, low []lowerDir, replaced bool) error {
	names, err := readNames(ufd)
	if err != nil {
		return fmt.Errorf("hostile: read %q: %w", pathOrRoot(path), err)
	}
	if testHook != nil {
		testHook("listed", path)
	}
	var lowNames []string
	if replaced {
		if lowNames, err = w.mergedNames(low); err != nil {
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
			if err := changedIf(err); isChanged(err) {
				if err := w.changed(p, deep, change.TypeFile); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("hostile: stat %q: %w", p, err)
		}
		if isWhiteout(&st) {
			if err := w.deleted(p, deep, low, name); err != nil {
				return err
			}
			continue
		}
		var below unix.Stat_t
		present, root, err := w.lookup(low, name, &below)
		if err != nil {
			return fmt.Errorf("hostile: stat lower %q: %w", p, err)
		}
		c := changeFrom(change.KindAdd, p, &st)
		c.TooDeep = deep
		report := true
		if present && !replaced {
			c.Kind = change.KindModify
			c.Below = belowFrom(&below, root)
			if isDir(&st) && isDir(&below) {
				report = deep || dirMetaChanged(&st, &below) // a copied-up container
			}
		}
		if c.Type == change.TypeSymlink {
			if c.Link, err = readlinkat(ufd, name); err != nil {
				if err := changedIf(err); isChanged(err) {
					if err := w.changed(p, deep, change.TypeSymlink); err != nil {
						return err
					}
					continue
				}
				return fmt.Errorf("hostile: readlink %q: %w", p, err)
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

// changed reports an upper entry that vanished or was replaced under the
// walk.
func (w *overlayWalk) changed(p string, deep bool, typ change.FileType) error {
	return w.fn(Change{Kind: change.KindAdd, Path: p, Type: typ, TooDeep: deep, Changed: true})
}

func (w *overlayWalk) descend(p string, depth, ufd int, name string, st *unix.Stat_t, low []lowerDir, lowDir, replaced bool) error {
	if testHook != nil {
		testHook("descend", p)
	}
	cfd, err := openDir(ufd, name, st)
	if err != nil {
		if err := changedIf(err); isChanged(err) {
			return w.changed(p, false, change.TypeDir)
		}
		return fmt.Errorf("hostile: open %q: %w", p, err)
	}
	defer unix.Close(cfd)
	var clow []lowerDir
	defer func() { closeLowers(clow) }()
	if lowDir {
		if clow, err = w.descendLower(low, name); err != nil {
			return fmt.Errorf("hostile: open lower %q: %w", p, err)
		}
	}
	creplaced := false
	if len(clow) > 0 {
		creplaced = replaced
		if !creplaced {
			v, err := opaqueValue(cfd, w.x.opaque)
			if err != nil {
				return fmt.Errorf("hostile: %q: %w", p, err)
			}
			creplaced = v == 'y' // "x" means nothing in an upper layer
		}
	}
	return w.dir(p, depth, cfd, clow, creplaced)
}

// deleted reports the delete of name if it is present in the merged lower
// directory low.
func (w *overlayWalk) deleted(p string, deep bool, low []lowerDir, name string) error {
	var below unix.Stat_t
	present, _, err := w.lookup(low, name, &below)
	if err != nil {
		return fmt.Errorf("hostile: stat lower %q: %w", p, err)
	}
	if !present {
		return nil
	}
	return w.fn(Change{Kind: change.KindDelete, Path: p, Type: typeOf(below.Mode), TooDeep: deep})
}

// lookup finds name in the merged lower directory low, as overlayfs does.
// It returns the lower directory that holds it.
func (w *overlayWalk) lookup(low []lowerDir, name string, st *unix.Stat_t) (bool, string, error) {
	for _, l := range low {
		err := fstatat(l.fd, name, st)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return false, "", err
		}
		wh, err := w.lowerWhiteout(l, name, st)
		return !wh, l.root, err
	}
	return false, "", nil
}

// lowerWhiteout says whether the entry name of lower dir l (stat st) is a
// whiteout: a char device 0/0, or an xattr whiteout where l allows them.
func (w *overlayWalk) lowerWhiteout(l lowerDir, name string, st *unix.Stat_t) (bool, error) {
	if isWhiteout(st) {
		return true, nil
	}
	if !l.xwhiteouts || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		return false, nil
	}
	fd, err := openat2(l.fd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	return hasXattr(fd, w.x.whiteout)
}

// descendLower opens the merged lower directory name below low: the
// directories of that name from the top down, until a layer hides the
// rest (whiteout, non-directory, symlink, opaque directory).
func (w *overlayWalk) descendLower(low []lowerDir, name string) ([]lowerDir, error) {
	var out []lowerDir
	for _, l := range low {
		var st unix.Stat_t
		err := fstatat(l.fd, name, &st)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			closeLowers(out)
			return nil, err
		}
		if !isDir(&st) {
			break
		}
		cfd, err := openDir(l.fd, name, &st)
		if err != nil {
			if isNotThere(err) {
				break
			}
			closeLowers(out)
			return nil, err
		}
		v, err := opaqueValue(cfd, w.x.opaque)
		if err != nil {
			unix.Close(cfd)
			closeLowers(out)
			return nil, err
		}
		out = append(out, lowerDir{fd: cfd, xwhiteouts: v == 'x', root: l.root})
		if v == 'y' {
			break
		}
	}
	return out, nil
}

// mergedNames returns the sorted names present in the merged lower
// directory low (whiteouts hide the names below them).
func (w *overlayWalk) mergedNames(low []lowerDir) ([]string, error) {
	seen := map[string]bool{} // name -> present
	var out []string
	for _, l := range low {
		names, err := readNames(l.fd)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if _, ok := seen[n]; ok {
				continue
			}
			var st unix.Stat_t
			if err := fstatat(l.fd, n, &st); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return nil, err
			}
			wh, err := w.lowerWhiteout(l, n, &st)
			if err != nil {
				return nil, err
			}
			if len(low) > 1 {
				seen[n] = !wh
			}
			if !wh {
				out = append(out, n)
			}
		}
	}
	if len(low) > 1 {
		out = out[:0]
		for n, ok := range seen {
			if ok {
				out = append(out, n)
			}
		}
		sortStrings(out)
	}
	return out, nil
}
