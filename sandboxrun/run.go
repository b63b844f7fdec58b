// Package sandboxrun runs a command inside a sandbox: it opens the sandbox,
// registers the run, runs the command with nothing of spillway's state held,
// cleans the run up and, when asked, closes the sandbox.
//
// How the command runs is the Runner's business: Container runs it as an
// OCI container; a VM runner (run --vm) plugs into the same flow, so that
// open, the run registry that close consults, and close stay one code path:
//
//	code, err := sandboxrun.Run(ctx, envOpts, "dev", sandboxrun.Container(proc), opts)
package sandboxrun

import (
	"context"
	"errors"
	"fmt"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist"
)

// Sandbox is an opened sandbox as a Runner sees it.
type Sandbox struct {
	Name   string
	Opened *persist.Opened  // its mounted root: path, mounts, session
	Book   *container.Book  // the state directory's run registry
	Entry  *container.Entry // this run's entry in Book
	// KeepEntry, set by the runner, leaves the entry in the book when the
	// run ends: a VM run whose guest's changes could not be applied (a
	// lock held past --lock-timeout) stays an orphan that the next close,
	// run or rm --force rescues from its scratch disk.
	KeepEntry bool
}

// Runner runs CMD in an opened sandbox and returns CMD's exit status. It
// runs with no lock, store or snapshotter held. A *container.StartError
// says CMD never started (exit 125, 126 or 127).
//
// The run is registered under this process (Sandbox.Entry), so close
// refuses while it lives; close --force stops runs through the OCI runtime
// (BeforeUnmount), so a runner that is not a container (a VM) must also
// be stopped another way before its sandbox can close.
type Runner func(ctx context.Context, sb *Sandbox) (int, error)

// Options change what Run does around the Runner.
type Options struct {
	// Runtime is the OCI runtime recorded with the run (Book.Runtime).
	Runtime string
	// Warn is told about trouble that does not stop the run: persisted
	// paths that open did not apply (names escaped).
	Warn func(msg string)
	// NotStarted is told why CMD never started; Run then returns that
	// error's exit status and goes on (with Close) as after any exit.
	NotStarted func(err *container.StartError)
	// Close, when set, closes the sandbox once CMD has exited (run
	// --close). Its failure comes back as a *CloseError.
	Close func(ctx context.Context) error
	// Alone refuses the run while another run of the sandbox lives (a VM
	// without a shared file system writes the upper layer at its end).
	Alone string
	// Locked, when set, runs with the state directory held once the run
	// is registered (a VM reads the sandbox's layers there); its error
	// ends the run before CMD starts.
	Locked func(ctx context.Context, e *persist.Env, sb *Sandbox) error
}

// CloseError is a failure of Options.Close after CMD ran; the exit status
// Run returns with it is still CMD's.
type CloseError struct {
	Sandbox string
	Err     error
}

func (e *CloseError) Error() string { return fmt.Sprintf("close %s: %v", e.Sandbox, e.Err) }
func (e *CloseError) Unwrap() error { return e.Err }

// Run opens sandbox (opening a closed one) with the state directory env
// names, registers the run under the lock so that a close that takes the
// lock next sees it, releases the state directory, runs CMD with run,
// removes the run's entry and, with o.Close, closes the sandbox. It returns
// CMD's exit status; an error means CMD did not run, the clean up failed
// (then the status is 0), or the close failed (a *CloseError).
func Run(ctx context.Context, env persist.Options, sandbox string, run Runner, o Options) (int, error) {
	var sb *Sandbox
	e, err := persist.OpenEnv(ctx, env)
	if err != nil {
		return 0, err
	}
	err = func() error {
		opened, err := e.OpenSandbox(ctx, sandbox)
		if err != nil {
			return err
		}
		if o.Warn != nil {
			for _, s := range opened.Skipped {
				o.Warn("persisted path not applied: " + escape.Name(s))
			}
		}
		book := &container.Book{Dir: e.RunDir(), Runtime: o.Runtime}
		// A VM run killed before it applied its guest's changes: apply
		// them before this run writes anything.
		if err := rescueOrphans(ctx, e, book, sandbox, false, true, o.Warn); err != nil {
			return err
		}
		entry, err := book.Register(ctx, sandbox)
		if err != nil {
			return err
		}
		sb = &Sandbox{Name: sandbox, Opened: opened, Book: book, Entry: entry}
		if err := refuseBesideVM(ctx, book, entry, sandbox, o.Alone); err != nil {
			return err
		}
		if o.Locked != nil {
			return o.Locked(ctx, e, sb)
		}
		return nil
	}()
	if cerr := e.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if sb != nil {
			sb.Book.Done(context.WithoutCancel(ctx), sb.Entry)
		}
		return 0, err
	}

	// CMD runs without the store, the snapshotter or the lock held; a
	// signal goes to CMD, not to this context.
	ctx = context.WithoutCancel(ctx)
	code, runErr := run(ctx, sb)
	if sb.KeepEntry {
		// left for the rescue of its changes
	} else if err := sb.Book.Done(ctx, sb.Entry); err != nil && runErr == nil {
		runErr = err
	}
	var se *container.StartError
	if errors.As(runErr, &se) {
		if o.NotStarted != nil {
			o.NotStarted(se)
		}
		code, runErr = se.Code, nil
	}
	if runErr != nil {
		return 0, runErr
	}
	if o.Close != nil {
		if err := o.Close(ctx); err != nil {
			return code, &CloseError{Sandbox: sandbox, Err: err}
		}
	}
	return code, nil
}

// Container is the Runner that runs p as an OCI container in the
// sandbox's root (p's RootFS and Hostname are set from the sandbox).
func Container(p container.Process) Runner {
	return func(ctx context.Context, sb *Sandbox) (int, error) {
		p.RootFS, p.Hostname = sb.Opened.Path, sb.Name
		return sb.Book.Exec(ctx, sb.Entry, p)
	}
}

// refuseBesideVM refuses a run while a VM without a shared file system
// (`run --vm`, --share none) runs on the sandbox: the VM's changes are
// written into the root's upper layer when it ends, and nothing else may
// write there meanwhile. With alone set (such a VM starting), any other
// live run is refused, alone saying why.
func refuseBesideVM(ctx context.Context, book *container.Book, entry *container.Entry, sandbox, alone string) error {
	live, err := book.Live(ctx, sandbox)
	if err != nil {
		return err
	}
	for _, r := range live {
		if r.ID != entry.ID && alone != "" {
			return fmt.Errorf("sandbox %s is in use by another `spillway run` (pid %d); %s", sandbox, r.PID, alone)
		}
		if r.ID != entry.ID && r.VM != nil && r.VM.Upper != "" {
			return fmt.Errorf("sandbox %s is in use by a VM without a shared file system (spillway run --vm, pid %d): its changes come back when it ends; wait for it, or use close --force", sandbox, r.PID)
		}
	}
	return nil
}
