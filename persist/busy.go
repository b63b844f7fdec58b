package persist

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/holders"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// BusyError says what holds a sandbox's root: processes outside `spillway
// run` (a working directory, an open file, a memory map, a mount in another
// mount namespace) or another mount of it. The command that met it changed
// nothing. It matches errdefs.ErrFailedPrecondition.
type BusyError struct {
	Sandbox string
	Path    string
	State   string // the sandbox's state, which it keeps
	Holders []holders.Holder
}

func (e *BusyError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Error names every holder, one a line; names that processes and sandboxes
// chose are escaped.
func (e *BusyError) Error() string {
	var b strings.Builder
	switch e.State {
	case store.StateOpen:
		fmt.Fprintf(&b, "sandbox %s is in use; nothing changed, it stays open:", e.Sandbox)
	case store.StateClosing:
		fmt.Fprintf(&b, "sandbox %s is in use; its close was interrupted and waits (nothing changed):", e.Sandbox)
	default:
		fmt.Fprintf(&b, "stale mount %s is in use; nothing changed:", e.Path)
	}
	for _, h := range e.Holders {
		b.WriteString("\n  " + h.Describe(escape.Name))
	}
	if len(e.Holders) == 0 {
		b.WriteString("\n  (the kernel says busy, but no holder was found: try again)")
	}
	b.WriteString("\nstop them (or leave the directory), then run the command again")
	return b.String()
}

// holderWait is how long a command waits for holders to go before it
// refuses: the processes of a run just stopped, or their mount namespace,
// may take a moment to vanish.
var holderWait = time.Second

// afterScan, when a test sets it, runs between close's holder scan and its
// unmount: a holder that comes then must not leave the sandbox closing.
var afterScan func()

// refuseHeld returns a BusyError when something holds the mounted root of
// sb, after waiting up to holderWait for it to let go.
func (e *Env) refuseHeld(sb *store.Sandbox) error {
	// This host's mount point, never a path the (shared) ledger's row names.
	root := e.MountPath(sb.Name)
	deadline := time.Now().Add(holderWait)
	for {
		hs, err := holders.Find(root)
		if err != nil {
			return fmt.Errorf("find what holds the root of %s: %w", sb.Name, err)
		}
		if len(hs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return &BusyError{Sandbox: sb.Name, Path: root, State: sb.State, Holders: hs}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmountRoot unmounts the root of sandbox name at path. When the kernel
// refuses, the error names what holds it. It never detaches lazily: a
// holder could then still write into a root that close reads.
func (e *Env) unmountRoot(name, path, state string) error {
	err := snapshot.Unmount(path)
	if err == nil {
		return nil
	}
	if hs, ferr := holders.Find(path); ferr == nil && (len(hs) > 0 || errors.Is(err, unix.EBUSY)) {
		return &BusyError{Sandbox: name, Path: path, State: state, Holders: hs}
	}
	return fmt.Errorf("root of %s: %w", name, err) // err says "unmount PATH: …"
}

// List names the holders on one line, separated by semicolons.
func (e *BusyError) List() string {
	var out []string
	for _, h := range e.Holders {
		out = append(out, h.Describe(escape.Name))
	}
	if len(out) == 0 {
		return "busy, no holder found"
	}
	return strings.Join(out, "; ")
}

// refuseForeignMounts refuses to go on while something is mounted inside
// the directory of the sandbox's snapshot (its upper or work directory):
// spillway never mounts there, close would read the mount as changes and
// a removal would delete what it shows. Nothing has changed when it
// refuses.
func (e *Env) refuseForeignMounts(ctx context.Context, sb *store.Sandbox) error {
	// A mount stacked on the root (mount -t tmpfs none ROOT) holds what
	// was written there since: the unmount would take it away unseen.
	stacked, err := snapshot.StackedOn(e.MountPath(sb.Name))
	if err != nil {
		return err
	}
	if len(stacked) > 0 {
		return &snapshot.MountedError{What: "the root of sandbox " + sb.Name, Mounts: stacked, On: true, Unchanged: true}
	}
	ms, err := e.snap.ForeignMounts(ctx, sb.Snapshot, e.MountPath(sb.Name))
	if err != nil || len(ms) == 0 {
		return err
	}
	return &snapshot.MountedError{What: "the snapshot of sandbox " + sb.Name, Mounts: ms, Unchanged: true}
}
