package sandboxrun

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/persist"
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
			return &RunningError{Sandbox: sb.Name, PID: live[0].PID, Container: live[0].ID}
		}
		var errs []error
		for _, r := range live {
			if warn != nil {
				warn(fmt.Sprintf("stopping run of %s (pid %d, container %s)", sb.Name, r.PID, r.ID))
			}
			errs = append(errs, book.Stop(ctx, r))
		}
		return errors.Join(errs...)
	}
}

// RunningError refuses to close a sandbox that a live run uses (the oldest
// one is named). It is of class errdefs.ErrFailedPrecondition.
type RunningError struct {
	Sandbox   string
	PID       int    // the spillway that owns the run
	Container string // the run's container id
}

func (e *RunningError) Error() string {
	return fmt.Sprintf("sandbox %s is in use by `spillway run` (pid %d, container %s)", e.Sandbox, e.PID, e.Container)
}

// Unwrap gives the error's class.
func (e *RunningError) Unwrap() error { return errdefs.ErrFailedPrecondition }
