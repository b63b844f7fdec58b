package persist

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Layers are the directories of an open sandbox's overlay root, for a VM
// that rebuilds the root inside itself.
type Layers struct {
	Upper  string   // the session's upper layer (may hold earlier runs' changes)
	Lowers []string // committed snapshots, top first: persisted layers, then the image
}

// SandboxLayers returns the layers of open sandbox name. Only an overlay
// root has them: with the native snapshotter the error says so.
func (e *Env) SandboxLayers(ctx context.Context, name string) (*Layers, error) {
	sb, err := e.openSandbox(name)
	if err != nil {
		return nil, err
	}
	mounts, err := e.snap.Mounts(ctx, sb.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", name, err)
	}
	upper, lowers, ok := snapshot.OverlayDirs(mounts)
	if !ok || upper == "" {
		return nil, errclass.Errorf(errdefs.ErrNotImplemented,
			"sandbox %s: a VM without a shared file system needs the overlayfs snapshotter (this state directory uses %s)", name, e.snap.Kind())
	}
	return &Layers{Upper: upper, Lowers: lowers}, nil
}

// ApplyToUpper runs fn on the upper layer of open sandbox name with its
// root unmounted where it can be (so that no stale view of the root stays
// cached), then mounts the root again.
func (e *Env) ApplyToUpper(ctx context.Context, name string, fn func(upper string) error) error {
	if err := e.lockSandbox(name); err != nil {
		return err
	}
	l, err := e.SandboxLayers(ctx, name)
	if err != nil {
		return err
	}
	sb, err := e.openSandbox(name)
	if err != nil {
		return err
	}
	unmounted := snapshot.Unmount(e.MountPath(sb.Name)) == nil
	ferr := fn(l.Upper)
	if unmounted {
		if _, err := e.reopen(ctx, sb); err != nil && ferr == nil {
			ferr = err
		}
	}
	return ferr
}

// openSandbox returns sandbox name, which must be open.
func (e *Env) openSandbox(name string) (*store.Sandbox, error) {
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateOpen {
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is not open", name)
	}
	return sb, nil
}

// StateRoot is the state directory this Env has locked (the VM support
// keeps its kernel, initramfs and disk cache under it).
func (e *Env) StateRoot() string { return e.root }

// GuestChange is a change a running VM's guest reports for its own upper
// layer, relative to the sandbox's root as the VM started (vm/proto.Change).
type GuestChange struct {
	Kind change.Kind
	Path string // clean, absolute (checked by the caller)
	Type change.FileType
	Size int64
	Mode uint32
	UID  uint32
	GID  uint32
}

// DiffWithGuest is Diff for a sandbox whose VM (without a shared file
// system) runs: the changes of the upper layer on the host, with the
// guest's own laid over them, then each classified as close would.
func (e *Env) DiffWithGuest(ctx context.Context, name string, guest []GuestChange, fn func(DiffEntry) error) error {
	sb, err := e.openSandbox(name)
	if err != nil {
		return err
	}
	var rules []*exceptions.Exception
	if err := e.store.View(func(tx *store.Tx) error {
		rules, err = e.activeRules(tx, name)
		return err
	}); err != nil {
		return err
	}
	now := e.Now()
	byPath := map[string]hostile.Change{}
	err = e.walkChanges(ctx, sb, func(root string, c hostile.Change) error {
		if !isNoop(rules, root, c, now) {
			byPath[c.Path] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, g := range guest {
		layGuestChange(byPath, g)
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	files, bytes := map[string]int64{}, map[string]int64{}
	for _, p := range paths {
		c := byPath[p]
		d := classify(rules, c, files, bytes, now)
		de := DiffEntry{Kind: KindLetter(c.Kind), Path: c.Path, PathBytes: exactBytes(c.Path), Type: c.Type, Size: c.Size, Verdict: d.Verdict, Reason: d.Reason}
		if d.Exception != nil {
			de.Exception = d.Exception.ID
		}
		if err := fn(de); err != nil {
			return err
		}
	}
	return nil
}

// layGuestChange lays guest change g over the host's changes: the guest
// sees the host's upper layer as its lowest change, so its kinds combine
// with the host's (added then deleted is nothing; deleted then made again
// is a modification), and a deletion or a non-directory takes the
// host's entries below it away.
func layGuestChange(byPath map[string]hostile.Change, g GuestChange) {
	h, onHost := byPath[g.Path]
	if g.Kind == change.KindDelete || g.Type != change.TypeDir {
		prefix := g.Path + "/"
		for p := range byPath {
			if strings.HasPrefix(p, prefix) {
				delete(byPath, p)
			}
		}
	}
	c := hostile.Change{Kind: g.Kind, Path: g.Path, Type: g.Type, Size: g.Size, Mode: g.Mode, UID: g.UID, GID: g.GID}
	switch {
	case !onHost:
	case g.Kind == change.KindDelete && h.Kind == change.KindAdd:
		delete(byPath, g.Path)
		return
	case g.Kind == change.KindDelete:
		c.Type = change.TypeFile
		if h.Below != nil {
			c.Type = h.Below.Type
		}
	case h.Kind == change.KindDelete:
		c.Kind = change.KindModify
	default:
		c.Kind = h.Kind
	}
	byPath[g.Path] = c
}
