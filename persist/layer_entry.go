package persist

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// The entry a full build lays at a path, for the base state (s = 0: the
// index at G with the change log's "before" ids) or the current one (s =
// 1), computed from the path's ancestors only (layer_delta.go).

// rawAt returns the index's record at p in state s (0: the base, 1: now).
func (d *delta) rawAt(p string, s int) (*store.Record, error) {
	if id, ok := d.before[p]; ok && s == 0 {
		if id == 0 {
			return nil, nil
		}
		return d.record(id)
	}
	if r, ok := d.raw[p]; ok {
		return r, nil
	}
	id, ok, err := d.tx.CurrentAt(d.sb.Name, p, d.sb.Generation)
	if err != nil {
		return nil, err
	}
	var r *store.Record
	if ok {
		if r, err = d.record(id); err != nil {
			return nil, err
		}
	}
	d.raw[p] = r
	return r, nil
}

func (d *delta) record(id uint64) (*store.Record, error) {
	r, err := d.tx.GetRecord(id)
	if err != nil {
		return nil, fmt.Errorf("current-state index of %s names record r%d: %w", d.sb.Name, id, err)
	}
	return r, nil
}

// eff returns the record in effect at p in state s once dropReplaced and
// dropOrphans have run (nil: none), from p's ancestors only.
func (d *delta) eff(p string, s int) (*store.Record, error) {
	if r, ok := d.effs[s][p]; ok {
		return r, nil
	}
	r, err := d.rawAt(p, s)
	if err != nil || r == nil {
		d.effs[s][p] = nil
		return nil, err
	}
	var ancs []*store.Record // nearest first
	for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
		ra, err := d.rawAt(a, s)
		if err != nil {
			return nil, err
		}
		if ra != nil && store.Replaces(ra, r, d.tx) {
			d.effs[s][p] = nil
			return nil, nil
		}
		ancs = append(ancs, ra)
	}
	for i, ra := range ancs {
		if ra == nil || (ra.Kind != change.KindDelete && ra.Type == change.TypeDir) {
			continue
		}
		replaced := false
		for _, rb := range ancs[i+1:] {
			if rb != nil && store.Replaces(rb, ra, d.tx) {
				replaced = true
			}
		}
		if !replaced {
			d.effs[s][p] = nil
			return nil, nil
		}
	}
	d.effs[s][p] = r
	return r, nil
}

// imageAt returns the image's entry at p (nil: none, or not reachable
// without a link).
func (d *delta) imageAt(p string) (*hostile.Change, error) {
	if c, ok := d.imgs[p]; ok {
		return c, nil
	}
	c, err := hostile.Entry(d.image, p)
	var out *hostile.Change
	switch {
	case err == nil:
		out = &c
	case errors.Is(err, hostile.ErrNotFound), errors.Is(err, hostile.ErrSymlink):
	default:
		return nil, err
	}
	d.imgs[p] = out
	return out, nil
}

// entry returns what a full build of state s puts at p.
func (d *delta) entry(p string, s int) (entry, error) {
	if en, ok := d.ents[s][p]; ok {
		return en, nil
	}
	en, err := d.computeEntry(p, s)
	if err == nil {
		d.ents[s][p] = en
	}
	return en, err
}

func (d *delta) computeEntry(p string, s int) (entry, error) {
	if dir := path.Dir(p); dir != "/" {
		pe, err := d.entry(dir, s)
		if err != nil || !pe.isDir() {
			return entry{}, err
		}
	}
	r, err := d.eff(p, s)
	if err != nil {
		return entry{}, err
	}
	if r != nil {
		if r.Kind == change.KindDelete {
			return entry{}, nil
		}
		return entry{kind: entRec, rec: r}, nil
	}
	c, err := d.imageAt(p)
	if err != nil {
		return entry{}, err
	}
	if c != nil {
		return entry{kind: entImage, img: c}, nil
	}
	has, err := d.hasDescendant(p, s)
	if err != nil || !has {
		return entry{}, err
	}
	return entry{kind: entMkdir}, nil
}

// hasDescendant says whether state s has a record in effect below p.
func (d *delta) hasDescendant(p string, s int) (bool, error) {
	if v, ok := d.descs[s][p]; ok {
		return v, nil
	}
	found := false
	err := d.tx.ForEachCurrentUnder(d.ctx, d.sb.Name, p, d.sb.Generation, func(q string, _ uint64) error {
		r, err := d.eff(q, s)
		if err != nil {
			return err
		}
		if r != nil {
			found = true
			return store.ErrStop
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if !found && s == 0 {
		// Paths whose record went since the base are not in the index now.
		i := sort.SearchStrings(d.changed, p+"/")
		for ; i < len(d.changed) && strings.HasPrefix(d.changed[i], p+"/"); i++ {
			r, err := d.eff(d.changed[i], s)
			if err != nil {
				return false, err
			}
			if r != nil {
				found = true
				break
			}
		}
	}
	d.descs[s][p] = found
	return found, nil
}
