package sandboxrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/persist"
)

// newState makes a state directory with image base and sandbox docs.
func newState(t *testing.T) persist.Options {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts overlay filesystems and needs root")
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "busybox")
	if err := testrootfs.Build(rootfs); err != nil {
		t.Fatal(err)
	}
	o := persist.Options{Root: filepath.Join(dir, "state")}
	ctx := context.Background()
	e, err := persist.OpenEnv(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.ImportImage(ctx, "base", persist.ImageSource{Dir: rootfs}); err != nil {
		t.Fatal(err)
	}
	if err := e.CreateSandbox("docs", "base"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e, err := persist.OpenEnv(ctx, o)
		if err == nil {
			e.RemoveSandbox(ctx, "docs", true, nil)
			e.Close()
		}
	})
	return o
}

// liveRuns counts the registered runs of docs.
func liveRuns(t *testing.T, o persist.Options) int {
	t.Helper()
	live, err := (&container.Book{Dir: filepath.Join(o.Root, "run")}).Live(context.Background(), "docs")
	if err != nil {
		t.Fatal(err)
	}
	return len(live)
}

// TestRunWithAnotherRunner plugs a runner of its own (as a VM runner would)
// into Run: it gets the opened root with the run registered and the state
// directory free, its status comes back, the entry is gone after, and the
// close hook runs.
func TestRunWithAnotherRunner(t *testing.T) {
	o := newState(t)
	ctx := context.Background()
	closed := false
	code, err := Run(ctx, o, "docs", func(ctx context.Context, sb *Sandbox) (int, error) {
		if _, err := os.Stat(filepath.Join(sb.Opened.Path, "home/user/Documents")); err != nil {
			t.Errorf("the runner's root is not the sandbox's: %v", err)
		}
		if n := liveRuns(t, o); n != 1 {
			t.Errorf("%d runs registered while CMD runs, want 1", n)
		}
		// The state directory is free: another command opens it.
		e, err := persist.OpenEnv(ctx, persist.Options{Root: o.Root, LockTimeout: 1})
		if err != nil {
			t.Errorf("state directory held while CMD runs: %v", err)
		} else {
			e.Close()
		}
		return 3, nil
	}, Options{Close: func(ctx context.Context) error { closed = true; return nil }})
	if err != nil || code != 3 {
		t.Fatalf("Run = %d, %v; want 3, nil", code, err)
	}
	if !closed {
		t.Error("the close hook did not run")
	}
	if n := liveRuns(t, o); n != 0 {
		t.Errorf("%d runs registered after the run, want 0", n)
	}

	// CMD never started: NotStarted hears why, the status is the error's,
	// and a failing close comes back as a *CloseError.
	var heard *container.StartError
	code, err = Run(ctx, o, "docs", func(context.Context, *Sandbox) (int, error) {
		return 0, &container.StartError{Code: container.ExitNotFound, Err: errors.New("nope: command not found in the sandbox")}
	}, Options{
		NotStarted: func(se *container.StartError) { heard = se },
		Close:      func(context.Context) error { return errors.New("disk on fire") },
	})
	var ce *CloseError
	if code != container.ExitNotFound || !errors.As(err, &ce) || heard == nil {
		t.Fatalf("Run = %d, %v (heard %v); want 127, a CloseError, the start error heard", code, err, heard)
	}
	if got, want := err.Error(), "close docs: disk on fire"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}
