package persist

import (
	"context"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
	"golang.org/x/sys/unix"
)

// linkOnPath reports the first component of p that is a symlink in the image
// tree at dir, and where it points, without following anything: patterns
// match paths as they stand in the sandbox's changes, so a pattern through
// an image symlink (e.g. /home -> /var/home) would never match.
func linkOnPath(dir, p string) (link, realPath string, found bool) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", false
	}
	defer func() { unix.Close(fd) }()
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, name := range parts {
		if name == "" {
			return "", "", false
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "", "", false
		}
		cur := "/" + strings.Join(parts[:i+1], "/")
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			buf := make([]byte, 4096)
			n, err := unix.Readlinkat(fd, name, buf)
			if err != nil {
				return "", "", false
			}
			target := string(buf[:n])
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			rest := strings.Join(parts[i+1:], "/")
			return cur, path.Join(target, rest), true
		case unix.S_IFDIR:
			next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return "", "", false
			}
			unix.Close(fd)
			fd = next
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// reachable refuses restore targets that a sandbox's next open would
// never apply: under a path the persisted state deletes or makes a file
// or a symlink, or under a symlink of the image that no persisted
// directory replaces. It reads the image's tree once and each parent
// directory once.
type reachable struct {
	state State
	dirs  map[string]bool // directories the restore itself makes
	img   string          // the image's name
	dir   string          // its tree on this host ("": not here, not checked)
	seen  map[string]error
	held  map[string]bool // directories that hold records of state (made by existingDir)
}

// existingDir says whether the next open has a directory at p: a
// directory record of the state, a directory that holds records of the
// state, or the image's directory (when the image is here to look at).
func (c *reachable) existingDir(p string) bool {
	if r := c.state[p]; r != nil {
		return r.Kind != change.KindDelete && r.Type == change.TypeDir
	}
	if c.held == nil {
		c.held = map[string]bool{}
		for q := range c.state {
			for a := path.Dir(q); a != "/" && a != "." && !c.held[a]; a = path.Dir(a) {
				c.held[a] = true
			}
		}
	}
	if c.held[p] {
		return true
	}
	if c.dir == "" {
		return false
	}
	en, err := hostile.Entry(c.dir, p)
	return err == nil && en.Type == change.TypeDir
}

func (e *Env) newReachable(ctx context.Context, sb *store.Sandbox, state State) *reachable {
	c := &reachable{state: state, dirs: map[string]bool{}, seen: map[string]error{}}
	var img *store.Image
	if err := e.store.View(func(tx *store.Tx) (err error) { img, err = e.hostImage(tx, sb.Image); return err }); err != nil {
		return c // no image here to look at: the open that builds it tells
	}
	if dir, err := e.snap.TreeDir(ctx, img.Snapshot, img.Dir); err == nil {
		c.img, c.dir = img.Name, dir
	}
	return c
}

// check refuses p when its parent cannot be reached.
func (c *reachable) check(p string) error {
	parent := path.Dir(p)
	if err, ok := c.seen[parent]; ok {
		return err
	}
	err := c.checkParent(p, parent)
	c.seen[parent] = err
	return err
}

func (c *reachable) checkParent(p, parent string) error {
	for a := parent; a != "/"; a = path.Dir(a) {
		if c.dirs[a] {
			continue
		}
		if r := c.state[a]; r != nil && (r.Kind == change.KindDelete || r.Type != change.TypeDir) {
			what := "a " + string(r.Type)
			if r.Kind == change.KindDelete {
				what = "deleted"
			}
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "cannot restore to %s: %s is %s in the persisted state (r%d), so it would never be applied; give --to a path not under it", escape.Name(p), escape.Name(a), what, r.ID)
		}
	}
	if c.dir == "" {
		return nil
	}
	if link := unreplacedLink(c.dir, c.state, parent); link != "" && !c.dirs[link] {
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "cannot restore to %s: %s is a symlink in image %s, so it would never be applied; give --to the real path", escape.Name(p), escape.Name(link), c.img)
	}
	return nil
}

// unreplacedLink is the symlink of the image (its tree at dir) on the way
// to the directory parent that no directory of state replaces, or "": the
// open applies nothing beneath such a link.
func unreplacedLink(dir string, state State, parent string) string {
	link, _, ok := linkOnPath(dir, parent)
	if !ok {
		return ""
	}
	if r := state[link]; r != nil && r.Kind != change.KindDelete && r.Type == change.TypeDir {
		return ""
	}
	return link
}
