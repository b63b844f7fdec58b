package persist

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
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
	l, err := e.SandboxLayers(ctx, name)
	if err != nil {
		return err
	}
	sb, err := e.openSandbox(name)
	if err != nil {
		return err
	}
	unmounted := snapshot.Unmount(sb.Path) == nil
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
