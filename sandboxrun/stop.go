package sandboxrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/vm"
)

// BeforeUnmount is the hook of close and rm --force (persist.CloseOptions):
// it refuses while a run of the sandbox is alive, or with force stops every
// such run, telling warn about each. Runs whose spillway is gone are
// cleaned away.
func BeforeUnmount(e *persist.Env, force bool, warn func(msg string)) func(context.Context, *persist.Sandbox) error {
	return func(ctx context.Context, sb *persist.Sandbox) error {
		book := &container.Book{Dir: e.RunDir()}
		if err := rescueOrphans(ctx, e, book, sb.Name, force, false, warn); err != nil {
			return err
		}
		live, err := book.Live(ctx, sb.Name)
		if err != nil || len(live) == 0 {
			return err
		}
		if !force {
			return &RunningError{Sandbox: sb.Name, PID: live[0].PID, Container: live[0].ID, VM: live[0].VM != nil}
		}
		var errs []error
		for _, r := range live {
			if warn != nil {
				what := "container"
				if r.VM != nil {
					what = "VM"
				}
				warn(fmt.Sprintf("stopping run of %s (pid %d, %s %s)", sb.Name, r.PID, what, r.ID))
			}
			errs = append(errs, warnIncomplete(book.Stop(ctx, r), warn))
			if r.VM != nil && r.VM.Upper != "" {
				errs = append(errs, stageRescued(ctx, e, sb.Name, r.VM.Dir, warn))
			}
		}
		return errors.Join(errs...)
	}
}

// rescueOrphans gets back the changes of the sandbox's VM runs whose
// spillway died (kill -9) before applying them (container.Book.Orphans):
// a rescue guest streams each one's scratch disk into the upper layer, and
// what it refuses goes to the recovery area with the session's close. A
// rescue that fails stops the caller, the run's directory kept; with force
// the run is given up on, its directory still kept and named.
//
// mounted says the sandbox's root stays mounted for what follows (a run):
// the rescue then writes the upper layer with the root unmounted
// (Env.ApplyToUpper), so that no stale view of it stays cached; before, a
// container run right after saw the old files and its writes to them were
// lost.
func rescueOrphans(ctx context.Context, e *persist.Env, book *container.Book, sandbox string, force, mounted bool, warn func(string)) error {
	orphans, err := book.Orphans(sandbox)
	if err != nil {
		return err
	}
	say := func(msg string) {
		if warn != nil {
			warn(msg)
		}
	}
	for _, r := range orphans {
		if _, err := os.Lstat(r.VM.Upper); errors.Is(err, os.ErrNotExist) {
			// Its session was closed without it (close --force gave up on
			// it, or closed it while its run could not apply): its upper
			// layer is gone, and a later session's is no place for it.
			say(fmt.Sprintf("the VM run of %s by pid %d belonged to a session closed since: its changes are not applied (its scratch disk is kept in %s)", sandbox, r.PID, r.VM.Dir))
			if err := book.DropOrphan(ctx, r); err != nil {
				return err
			}
			continue
		}
		say(fmt.Sprintf("the VM run of %s by pid %d ended before its changes were applied: rescuing them from its scratch disk", sandbox, r.PID))
		rescue := func() error { return warnIncomplete(book.RescueOrphan(ctx, r), warn) }
		var err error
		if mounted {
			err = e.ApplyToUpper(ctx, sandbox, func(string) error { return rescue() })
		} else {
			err = rescue()
		}
		if err == nil {
			err = stageRescued(ctx, e, sandbox, r.VM.Dir, warn)
		}
		if err == nil {
			continue
		}
		if !force {
			return fmt.Errorf("rescue the changes of the VM run of %s by pid %d (its scratch disk is kept in %s; close --force gives up on them): %w", sandbox, r.PID, r.VM.Dir, err)
		}
		say(fmt.Sprintf("giving up on the changes of the VM run of %s by pid %d (%v): its scratch disk is kept in %s", sandbox, r.PID, err, r.VM.Dir))
		if err := book.DropOrphan(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// warnIncomplete turns a rescue that applied only part of a VM's changes
// into a warning: what arrived was applied, and the scratch disk is kept.
func warnIncomplete(err error, warn func(string)) error {
	var ri *container.RescueIncomplete
	if errors.As(err, &ri) {
		if warn != nil {
			warn(ri.Error())
		}
		return nil
	}
	return err
}

// stageRescued stages for the recovery area what the rescue of a stopped
// VM refused from its stream (vm.RefusedFile in its run directory), and
// names each, as a run that applies its own changes does.
func stageRescued(ctx context.Context, e *persist.Env, sandbox, dir string, warn func(string)) error {
	b, err := os.ReadFile(filepath.Join(dir, vm.RefusedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var refused []vm.Refusal
	if err := json.Unmarshal(b, &refused); err != nil {
		return fmt.Errorf("%s: %w", vm.RefusedFile, err)
	}
	if err := e.KeepVMRefused(ctx, sandbox, VMRefusals(refused), filepath.Join(dir, "refused")); err != nil {
		return err
	}
	if warn != nil {
		for _, r := range refused {
			warn(RefusedWarning(r))
		}
	}
	return os.Remove(filepath.Join(dir, vm.RefusedFile))
}

// VMRefusals are what the host refused of a VM's changes stream, as the
// recovery area keeps them (Env.KeepVMRefused).
func VMRefusals(refused []vm.Refusal) []persist.VMRefusal {
	out := make([]persist.VMRefusal, len(refused))
	for i, r := range refused {
		out[i] = persist.VMRefusal{Path: "/" + strings.TrimSuffix(r.Name, "/"), Type: r.FileType(), Size: r.Size, Reason: r.Reason}
	}
	return out
}

// RefusedWarning names one entry the host refused of a VM's changes.
func RefusedWarning(r vm.Refusal) string {
	return fmt.Sprintf("refused %s from the VM's changes: %s", escape.Name(r.Name), escape.Name(r.Reason))
}

// RunningError refuses to close a sandbox that a live run uses (the oldest
// one is named). It is of class errdefs.ErrFailedPrecondition.
type RunningError struct {
	Sandbox   string
	PID       int    // the spillway that owns the run
	Container string // the run's container id (a VM's run id)
	VM        bool   // the run is a VM (run --vm)
}

func (e *RunningError) Error() string {
	if e.VM {
		return fmt.Sprintf("sandbox %s is in use by `spillway run --vm` (pid %d, VM %s)", e.Sandbox, e.PID, e.Container)
	}
	return fmt.Sprintf("sandbox %s is in use by `spillway run` (pid %d, container %s)", e.Sandbox, e.PID, e.Container)
}

// Unwrap gives the error's class.
func (e *RunningError) Unwrap() error { return errdefs.ErrFailedPrecondition }
