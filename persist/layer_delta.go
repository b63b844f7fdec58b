package persist

import (
	"context"
	"errors"
	"math"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// errFlat says a delta cannot reproduce the full build here (a special
// file of the image to bring back, say): build a flat layer instead.
var errFlat = errors.New("persisted layer: a delta cannot hold this change")

// A delta layer for generation G on the layer B built for generation g
// holds what differs between the tree a full build gives for the state at
// g (the tree of B) and the one it gives for the state at G. The full
// build is a function of the state, path by path (entryOf), so the delta
// compares the two states on the paths whose index entry changed in
// g+1..G (the change log, with the id each had at g), their ancestors
// (a parent the full build made only for a record that went), and the
// records whose effect changed with a directory's record above them (a
// newer directory record drops older records below it). Each path that
// differs is written through hostile.Writer on the mounted merged view,
// so overlay itself records whiteouts and opaque directories in the new
// upper directory.

// entryKind is where a full build's entry at a path comes from.
type entryKind int

const (
	entNone  entryKind = iota // nothing (or not reachable)
	entRec                    // a record of the state
	entImage                  // the image's entry
	entMkdir                  // a parent made 0755 for a record below
)

type entry struct {
	kind entryKind
	rec  *store.Record
	img  *hostile.Change
}

func (en entry) isDir() bool {
	switch en.kind {
	case entRec:
		return en.rec.Type == change.TypeDir
	case entImage:
		return en.img.Type == change.TypeDir
	}
	return en.kind == entMkdir
}

func (en entry) same(o entry) bool {
	if en.kind != o.kind {
		return false
	}
	return en.kind != entRec || en.rec.ID == o.rec.ID
}

// delta computes both states' entries from the index at G and the change
// log's "before" ids.
type delta struct {
	ctx     context.Context
	tx      *store.Tx
	sb      *store.Sandbox
	image   string            // the image's tree
	before  map[string]uint64 // changed path → record id at the base generation (0: none)
	changed []string          // sorted keys of before
	raw     map[string]*store.Record
	imgs    map[string]*hostile.Change
	ents    [2]map[string]entry
	effs    [2]map[string]*store.Record
	descs   [2]map[string]bool
}

// buildDelta builds key, the layer of sb's current generation, on top (the
// layer of an earlier generation) from the paths changed since.
func (e *Env) buildDelta(ctx context.Context, sb *store.Sandbox, img *store.Image, top, key string) ([]string, error) {
	base, _ := layerGen(top)
	imageDir, err := e.snap.TreeDir(ctx, img.Snapshot, img.Dir)
	if err != nil {
		return nil, err
	}
	_, skipped, err := e.buildLayer(ctx, key, top, "open.delta", func(target string) ([]string, error) {
		var skipped []string
		err := e.store.View(func(tx *store.Tx) error {
			d := &delta{ctx: ctx, tx: tx, sb: sb, image: imageDir, before: map[string]uint64{},
				raw: map[string]*store.Record{}, imgs: map[string]*hostile.Change{}}
			for i := range 2 {
				d.ents[i], d.effs[i], d.descs[i] = map[string]entry{}, map[string]*store.Record{}, map[string]bool{}
			}
			if err := tx.ForEachChange(ctx, sb.Name, base+1, sb.Generation, func(_ uint64, p string, prev uint64) error {
				if _, ok := d.before[p]; !ok {
					d.before[p] = prev
					d.changed = append(d.changed, p)
				}
				return nil
			}); err != nil {
				return err
			}
			sort.Strings(d.changed)
			for _, p := range d.changed {
				if !cleanAbs(p) {
					return errFlat
				}
			}
			var err error
			skipped, err = e.applyDelta(d, target)
			return err
		})
		return skipped, err
	})
	return skipped, err
}

// applyDelta writes into the merged view at target every path whose entry
// differs between the two states.
func (e *Env) applyDelta(d *delta, target string) ([]string, error) {
	paths, err := d.candidates()
	if err != nil {
		return nil, err
	}
	w, err := hostile.NewWriter(target)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var skipped []string
	var done string // the last subtree written whole
	for _, p := range paths {
		if err := d.ctx.Err(); err != nil {
			return nil, err
		}
		if done != "" && strings.HasPrefix(p, done+"/") {
			continue
		}
		old, err := d.entry(p, 0)
		if err != nil {
			return nil, err
		}
		now, err := d.entry(p, 1)
		if err != nil {
			return nil, err
		}
		if old.same(now) {
			continue
		}
		var sk []string
		switch {
		case now.isDir() && old.isDir():
			sk, err = e.setDir(w, p, now)
		case now.isDir():
			sk, err = e.populate(d, w, p, now)
			done = p
		case now.kind == entNone:
			err = w.RemoveAll(p)
			done = p
		default:
			sk, err = e.putEntry(d, w, now)
			done = p
		}
		if err != nil {
			return nil, err
		}
		skipped = append(skipped, sk...)
	}
	return skipped, nil
}

// candidates returns, sorted, the changed paths, their ancestors, and the
// records below a changed directory whose effect changed with it.
func (d *delta) candidates() ([]string, error) {
	set := map[string]bool{}
	add := func(p string) {
		for ; p != "/" && !set[p]; p = path.Dir(p) {
			set[p] = true
		}
	}
	for _, p := range d.changed {
		add(p)
		old, err := d.entry(p, 0)
		if err != nil {
			return nil, err
		}
		now, err := d.entry(p, 1)
		if err != nil {
			return nil, err
		}
		if !old.isDir() || !now.isDir() {
			continue
		}
		err = d.tx.ForEachCurrentUnder(d.ctx, d.sb.Name, p, d.sb.Generation, func(q string, _ uint64) error {
			a, err := d.eff(q, 0)
			if err != nil {
				return err
			}
			b, err := d.eff(q, 1)
			if err != nil {
				return err
			}
			if (a == nil) != (b == nil) || a != nil && a.ID != b.ID {
				add(q)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// setDir gives the directory at p the mode and owner of en, keeping what
// it holds.
func (e *Env) setDir(w *hostile.Writer, p string, en entry) ([]string, error) {
	switch en.kind {
	case entRec:
		sk, err := e.applyChecked(w, en.rec)
		return nonEmpty(sk), err
	case entImage:
		return nil, w.Mkdir(p, en.img.Mode&0o7777, en.img.UID, en.img.GID)
	}
	return nil, w.Mkdir(p, 0o755&^processUmask(), uint32(os.Geteuid()), uint32(os.Getegid()))
}

// populate writes the directory at p and its whole subtree as a full build
// does: the image's subtree, then the records in effect below p.
func (e *Env) populate(d *delta, w *hostile.Writer, p string, en entry) ([]string, error) {
	var skipped []string
	if err := w.RemoveAll(p); err != nil {
		return nil, err
	}
	switch en.kind {
	case entRec:
		sk, err := e.applyChecked(w, en.rec)
		if err != nil {
			return nil, err
		}
		skipped = append(skipped, nonEmpty(sk)...)
	case entImage:
		if err := w.Mkdir(p, en.img.Mode&0o7777, en.img.UID, en.img.GID); err != nil {
			return nil, err
		}
	default:
		if err := w.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	if c, err := d.imageAt(p); err != nil {
		return nil, err
	} else if c != nil && c.Type == change.TypeDir {
		if err := hostile.SubtreeAdds(d.ctx, d.image, p, func(c hostile.Change) error {
			return e.copyImage(d, w, c)
		}); err != nil {
			return nil, err
		}
	}
	var below []string
	if err := d.tx.ForEachCurrentUnder(d.ctx, d.sb.Name, p, d.sb.Generation, func(q string, _ uint64) error {
		below = append(below, q)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, q := range below { // in path order
		r, err := d.eff(q, 1)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		sk, err := e.applyChecked(w, r)
		if err != nil {
			return nil, err
		}
		skipped = append(skipped, nonEmpty(sk)...)
	}
	return skipped, nil
}

// putEntry writes the file or symlink en at its path.
func (e *Env) putEntry(d *delta, w *hostile.Writer, en entry) ([]string, error) {
	if en.kind == entRec {
		sk, err := e.applyChecked(w, en.rec)
		return nonEmpty(sk), err
	}
	return nil, e.copyImage(d, w, *en.img)
}

// copyImage writes the image's entry c at its path; what a Writer cannot
// make (a device, a fifo, a path too deep) needs a flat layer.
func (e *Env) copyImage(d *delta, w *hostile.Writer, c hostile.Change) error {
	if c.TooDeep || c.Changed {
		return errFlat
	}
	mode := c.Mode & 0o7777
	switch c.Type {
	case change.TypeDir:
		return w.Mkdir(c.Path, mode, c.UID, c.GID)
	case change.TypeSymlink:
		return w.Symlink(c.Path, c.Link, c.UID, c.GID)
	case change.TypeFile:
		f, err := hostile.OpenFile(d.image, c.Path, c, math.MaxInt64-1)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.WriteFile(c.Path, f, mode, c.UID, c.GID, c.Mtime)
	}
	return errFlat
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// processUmask reads the process's umask without changing it.
func processUmask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Umask:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return uint32(n)
				}
			}
		}
	}
	return 0o022
}
