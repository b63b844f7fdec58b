package main

import (
	"sort"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/vm/proto"
)

// lowerView is where init mounts the lower disks stacked without an upper
// layer, for diff to tell additions from modifications.
const lowerView = "/spw-lower"

// diffFDs are the upper layer and the lower view, opened before the chroot
// so that a DIFF request can be answered while CMD runs.
type diffFDs struct{ upper, lower int }

// openDiff opens the directories diff walks (share none only).
func (g *guest) openDiff(lower string) {
	u, err := unix.Open(scratch+"/upper", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	l, err := unix.Open(lower, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(u)
		return
	}
	g.mu.Lock()
	g.diffs = &diffFDs{upper: u, lower: l}
	g.mu.Unlock()
}

// answerDiff lists the upper layer's changes on the control port: a CHG
// line each, then DIFFEND (with nothing to list before the root is up).
func (g *guest) answerDiff(id string) {
	g.mu.Lock()
	d := g.diffs
	g.mu.Unlock()
	w := &diffWalk{g: g, id: id}
	if d != nil {
		w.dir(d.upper, d.lower, "", 0)
	}
	end := []string{proto.MsgDiffEnd, id, strconv.Itoa(w.n)}
	if w.truncated {
		end = append(end, "truncated")
	}
	g.ctl.send(end...)
}

type diffWalk struct {
	g         *guest
	id        string
	n         int
	truncated bool
}

func (w *diffWalk) emit(kind change.Kind, p string, st *unix.Stat_t) {
	if w.n >= proto.MaxDiffChanges {
		w.truncated = true
		return
	}
	w.n++
	c := proto.Change{Kind: kind, Path: p, Type: fileType(st.Mode), Mode: st.Mode, UID: st.Uid, GID: st.Gid}
	if c.Type == change.TypeFile && kind != change.KindDelete {
		c.Size = st.Size
	}
	w.g.ctl.send(c.Line(w.id))
}

// dir lists the changes below the upper directory ufd, whose lower view is
// lfd (-1: nothing below). Opaque directories hide what is below them.
func (w *diffWalk) dir(ufd, lfd int, dir string, depth int) {
	if depth > 256 || w.truncated {
		return
	}
	names, _ := dirNames(ufd)
	seen := map[string]bool{}
	for _, name := range names {
		seen[name] = true
		p := dir + "/" + name
		var st, lst unix.Stat_t
		if unix.Fstatat(ufd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		below := lfd >= 0 && unix.Fstatat(lfd, name, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0: // a whiteout
			if below {
				w.emit(change.KindDelete, p, &lst)
			}
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			cfd, err := unix.Openat(ufd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			buf := make([]byte, 1)
			n, _ := unix.Fgetxattr(cfd, "trusted.overlay.opaque", buf)
			opaque := n == 1 && buf[0] == 'y'
			clfd := -1
			switch {
			case !below:
				w.emit(change.KindAdd, p, &st)
			case lst.Mode&unix.S_IFMT != unix.S_IFDIR:
				w.emit(change.KindModify, p, &st)
			default:
				if opaque || st.Mode != lst.Mode || st.Uid != lst.Uid || st.Gid != lst.Gid {
					w.emit(change.KindModify, p, &st)
				}
				clfd, _ = unix.Openat(lfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
			w.dir(cfd, clfd, p, depth+1)
			if opaque && clfd >= 0 {
				w.hidden(cfd, clfd, p)
			}
			if clfd >= 0 {
				unix.Close(clfd)
			}
			unix.Close(cfd)
		default:
			kind := change.KindAdd
			if below {
				kind = change.KindModify
			}
			w.emit(kind, p, &st)
		}
	}
}

// hidden lists as deleted what an opaque upper directory hides below.
func (w *diffWalk) hidden(ufd, lfd int, dir string) {
	names, _ := dirNames(lfd)
	for _, name := range names {
		var st, lst unix.Stat_t
		if unix.Fstatat(ufd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			continue
		}
		if unix.Fstatat(lfd, name, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil {
			w.emit(change.KindDelete, dir+"/"+name, &lst)
		}
	}
}

func fileType(mode uint32) change.FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return change.TypeDir
	case unix.S_IFLNK:
		return change.TypeSymlink
	case unix.S_IFIFO:
		return change.TypeFIFO
	case unix.S_IFSOCK:
		return change.TypeSocket
	case unix.S_IFCHR, unix.S_IFBLK:
		return change.TypeDevice
	}
	return change.TypeFile
}

// dirNames lists the directory open at fd, sorted.
func dirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dup)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dup, buf)
		if err != nil || n == 0 {
			sort.Strings(names)
			return names, err
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
