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
			errs = append(errs, book.Stop(ctx, r))
			if r.VM != nil && r.VM.Upper != "" {
				errs = append(errs, stageRescued(ctx, e, sb.Name, r.VM.Dir))
			}
		}
		return errors.Join(errs...)
	}
}

// stageRescued stages for the recovery area what the rescue of a stopped
// VM refused from its stream (vm.RefusedFile in its run directory).
func stageRescued(ctx context.Context, e *persist.Env, sandbox, dir string) error {
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
	staged := make([]persist.VMRefusal, len(refused))
	for i, r := range refused {
		staged[i] = persist.VMRefusal{Path: "/" + strings.TrimSuffix(r.Name, "/"), Type: r.FileType(), Size: r.Size, Reason: r.Reason}
	}
	if err := e.KeepVMRefused(ctx, sandbox, staged, filepath.Join(dir, "refused")); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, vm.RefusedFile))
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
