package sandboxrun

import (
	"context"
	"errors"
	"fmt"

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
			r := live[0]
			return fmt.Errorf("sandbox %s is in use by `spillway run` (pid %d, container %s); stop it or use close --force", sb.Name, r.PID, r.ID)
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
