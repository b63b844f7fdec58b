package persist

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Refusal reason codes (SPEC.md, "Safety rules at close").
const (
	RefuseSymlink    = "symlink"
	RefuseHardlink   = "hardlink" // historic: closes before hard links persisted; still read from old records
	RefuseSpecial    = "special-file"
	RefuseTooLarge   = "too-large"
	RefuseQuotaB     = "quota-bytes"
	RefuseQuotaF     = "quota-files"
	RefuseChanged    = "changed-during-close"
	RefuseTooDeep    = "too-deep"
	RefuseUnreadable = "unreadable"
	RefuseNoSpace    = "no-space"
)

// Classification is what close does with one change.
type Classification struct {
	Change    hostile.Change
	Verdict   change.Verdict
	Exception *exceptions.Exception // the matching rule, nil for discard
	Reason    string                // refusal code
}

// classify returns the verdict for c under the active rules.
func classify(rules []*exceptions.Exception, c hostile.Change, files, bytes map[string]int64, now time.Time) Classification {
	d := Classification{Change: c}
	e := exceptions.Match(rules, c.Path, now)
	if e == nil {
		d.Verdict = change.VerdictDiscard
		return d
	}
	d.Exception = e
	refuse := func(code string) Classification {
		d.Verdict, d.Reason = change.VerdictRefuse, code
		return d
	}
	if c.Changed {
		return refuse(RefuseChanged)
	}
	if c.TooDeep {
		return refuse(RefuseTooDeep)
	}
	d.Verdict = change.VerdictPersist
	if c.Kind == change.KindDelete {
		return d
	}
	lim := e.EffectiveLimits()
	switch c.Type {
	case change.TypeDir:
		return d
	case change.TypeSymlink:
		if !e.AllowSymlinks {
			return refuse(RefuseSymlink)
		}
		return d
	case change.TypeFile:
	default:
		return refuse(RefuseSpecial)
	}
	if c.Size > lim.MaxFileSize {
		return refuse(RefuseTooLarge)
	}
	if files[e.ID]+1 > lim.MaxFiles {
		return refuse(RefuseQuotaF)
	}
	if bytes[e.ID]+c.Size > lim.MaxBytes {
		return refuse(RefuseQuotaB)
	}
	files[e.ID]++
	bytes[e.ID] += c.Size
	return d
}

// walkChanges streams the changes of an open or closing sandbox's root. root
// is the directory the changed files are read from.
func (e *Env) walkChanges(ctx context.Context, sb *store.Sandbox, fn func(root string, c hostile.Change) error) error {
	mounts, err := e.snap.Mounts(ctx, sb.Snapshot)
	if err != nil {
		return fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	if upper, lowers, ok := snapshot.OverlayDirs(mounts); ok {
		// Read the markers the kernel reads on this mount, no others.
		o := hostile.OverlayOptions{UserXattr: slices.Contains(mounts[0].Options, "userxattr")}
		return hostile.OverlayChangesWith(ctx, upper, lowers, o, func(c hostile.Change) error { return fn(upper, c) })
	}
	dir, ok := snapshot.BindSource(mounts)
	if !ok {
		return fmt.Errorf("root of %s: unexpected mounts %v", sb.Name, mounts)
	}
	if e.snap.Kind() == snapshot.KindOverlay {
		// An overlay root without a parent: every entry is new.
		return hostile.TreeChanges(ctx, dir, "", func(c hostile.Change) error { return fn(dir, c) })
	}
	// Native: the root is a copy of its parent; compare with the parent's tree.
	info, err := e.snap.Stat(ctx, sb.Snapshot)
	if err != nil {
		return fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	base, err := e.snap.TreeDir(ctx, info.Parent, sb.BaseDir)
	if err != nil {
		return fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	return hostile.TreeChanges(ctx, dir, base, func(c hostile.Change) error { return fn(dir, c) })
}

// activeRules returns the sandbox's exceptions in force now, oldest first.
func (e *Env) activeRules(tx *store.Tx, sandbox string) ([]*exceptions.Exception, error) {
	all, err := tx.ListExceptions(sandbox)
	if err != nil {
		return nil, err
	}
	now := e.Now()
	var out []*exceptions.Exception
	for _, x := range all {
		if x.Active(now) {
			out = append(out, x)
		}
	}
	return out, nil
}

// discardStats counts discarded changes and the busiest directories.
type discardStats struct {
	Count int64
	Bytes int64
	dirs  map[string]*DirCount
}

// DirCount is one of the busiest directories of discarded changes.
type DirCount struct {
	Dir      string `json:"dir"`
	DirBytes []byte `json:"dir_bytes,omitempty"`
	Count    int64  `json:"count"`
	Bytes    int64  `json:"bytes"`
}

func (s *discardStats) add(c hostile.Change) {
	if s.dirs == nil {
		s.dirs = map[string]*DirCount{}
	}
	s.Count++
	s.Bytes += c.Size
	dir := path.Dir(c.Path)
	dc := s.dirs[dir]
	if dc == nil {
		if len(s.dirs) >= 100000 {
			dir = "(other)"
			if dc = s.dirs[dir]; dc == nil {
				dc = &DirCount{Dir: dir}
				s.dirs[dir] = dc
			}
		} else {
			dc = &DirCount{Dir: dir}
			s.dirs[dir] = dc
		}
	}
	dc.Count++
	dc.Bytes += c.Size
}

func (s *discardStats) top(n int) []DirCount {
	out := make([]DirCount, 0, len(s.dirs))
	for _, d := range s.dirs {
		d.DirBytes = exactBytes(d.Dir)
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Dir < out[j].Dir
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
