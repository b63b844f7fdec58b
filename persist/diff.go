package persist

import (
	"context"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// DiffEntry is one change of an open sandbox and what close would do.
type DiffEntry struct {
	Kind      string          `json:"kind"` // "A", "M" or "D"
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Verdict   change.Verdict  `json:"verdict"`
	Exception string          `json:"exception"` // "" unless persist or refuse
	Reason    string          `json:"reason"`    // "" unless refuse: SPEC lists every field
}

// KindLetter maps a change kind to the letter diff prints.
func KindLetter(kind change.Kind) string {
	switch kind {
	case change.KindAdd:
		return "A"
	case change.KindDelete:
		return "D"
	}
	return "M"
}

// Diff streams the changes since open with the verdict close would give
// each (content is not read, so a file that changes during close can still
// be refused then).
func (e *Env) Diff(ctx context.Context, name string, fn func(DiffEntry) error) error {
	if err := e.lockSandbox(name); err != nil {
		return err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return err
	}
	if sb.State != store.StateOpen {
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is %s: diff shows the changes of an open sandbox", name, sb.State)
	}
	if err := e.checkOpenHere(sb, "its changes are there, not on this host"); err != nil {
		return err
	}
	var rules []*exceptions.Exception
	if err := e.store.View(func(tx *store.Tx) error {
		rules, err = e.activeRules(tx, name)
		return err
	}); err != nil {
		return err
	}
	files, bytes := map[string]int64{}, map[string]int64{}
	now := e.Now()
	return e.walkChanges(ctx, sb, func(root string, c hostile.Change) error {
		if isNoop(rules, root, c, now) {
			return nil
		}
		d := classify(rules, c, files, bytes, now)
		de := DiffEntry{Kind: KindLetter(c.Kind), Path: c.Path, PathBytes: exactBytes(c.Path), Type: c.Type, Size: c.Size, Verdict: d.Verdict, Reason: d.Reason}
		if d.Exception != nil {
			de.Exception = d.Exception.ID
		}
		return fn(de)
	})
}
