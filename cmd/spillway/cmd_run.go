package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/store"
)

// runOptions are the options of run and shell.
type runOptions struct {
	User    string
	Net     string
	Close   bool
	TTY     bool
	Runtime string
}

func runFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "user", Usage: "run CMD as `UID[:GID]` (default root; without GID, the group of the sandbox's /etc/passwd)"},
		&cli.StringFlag{Name: "net", Usage: "network: none (loopback only) or host", Value: container.NetNone},
		&cli.BoolFlag{Name: "close", Usage: "close the sandbox when CMD exits (summary on stderr)"},
		&cli.BoolFlag{Name: "t", Usage: "give CMD a terminal"},
		runtimeFlag(),
	}, vmRunFlags()...)
}

func runtimeFlag() cli.Flag {
	return &cli.StringFlag{Name: "runtime", Usage: "the OCI runtime `PATH` (runc, crun)", Value: "runc"}
}

func runCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run CMD inside the sandbox as an OCI container, opening the sandbox if closed; exit status is CMD's",
		ArgsUsage: "NAME [--user UID[:GID]] [--net none|host] [--close] [-t] -- CMD [ARG…]",
		Flags:     runFlags(),
		Action: func(c *cli.Context) error {
			if c.String("vm") != "" {
				return runVMAction(c, t, c.Args().Slice(), c.Bool("t"), c.Bool("close"))
			} else if err := vmOnlyFlags(c); err != nil {
				return err
			}
			if c.NArg() < 2 {
				return usageError("usage: spillway run NAME [--user UID[:GID]] [--net none|host] [--close] [-t] -- CMD [ARG…]")
			}
			o := runOptions{User: c.String("user"), Net: c.String("net"), Close: c.Bool("close"), TTY: c.Bool("t"), Runtime: c.String("runtime")}
			return runRun(c, t, o, c.Args().First(), c.Args().Tail())
		},
	}
}

func shellCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "shell",
		Usage:     "an interactive shell inside the sandbox (run -t NAME -- /bin/sh)",
		ArgsUsage: "NAME",
		Flags:     append([]cli.Flag{runtimeFlag()}, vmRunFlags()...),
		Action: func(c *cli.Context) error {
			if c.String("vm") != "" {
				return runVMAction(c, t, []string{"/bin/sh"}, true, false)
			} else if err := vmOnlyFlags(c); err != nil {
				return err
			}
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			o := runOptions{Net: container.NetNone, TTY: true, Runtime: c.String("runtime")}
			return runRun(c, t, o, c.Args().First(), []string{"/bin/sh"})
		},
	}
}

// runRun opens the sandbox, registers the run and releases the state
// directory, runs CMD, then cleans up and, with --close, closes.
func runRun(c *cli.Context, t *term, o runOptions, sandbox string, args []string) error {
	if o.Net != container.NetNone && o.Net != container.NetHost {
		return usageError("unknown --net %q: use none or host", o.Net)
	}
	if o.User != "" {
		if _, _, _, err := container.ParseUser(o.User); err != nil {
			return usageError("%v", err)
		}
	}
	if f, ok := t.in.(*os.File); o.TTY && (!ok || !isTerminal(f)) {
		return usageError("-t needs a terminal on stdin")
	}
	rt, err := exec.LookPath(o.Runtime)
	if err != nil {
		return fmt.Errorf("OCI runtime %s not found: install runc (apt-get install runc) or pass --runtime PATH", o.Runtime)
	}
	if rt, err = filepath.Abs(rt); err != nil {
		return err
	}

	var (
		book  *container.Book
		entry *container.Entry
		root  string
	)
	err = withEnv(c, t, func(e *persist.Env) error {
		opened, err := e.OpenSandbox(c.Context, sandbox)
		if err != nil {
			return err
		}
		for _, s := range opened.Skipped {
			t.warnf("persisted path not applied: %s", name(s))
		}
		// Registered under the lock: a close that takes it next sees the run.
		root = opened.Path
		book = &container.Book{Dir: runDir(e.Root), Runtime: rt}
		entry, err = book.Register(c.Context, sandbox)
		return err
	})
	if err != nil {
		if entry != nil {
			book.Done(context.WithoutCancel(c.Context), entry)
		}
		return err
	}

	// CMD runs without the store, the snapshotter or the lock held.
	ctx := context.WithoutCancel(c.Context)
	code, runErr := book.Exec(ctx, entry, container.Process{
		RootFS: root, Args: args, User: o.User, Net: o.Net, TTY: o.TTY, Hostname: sandbox,
		Stdin: t.in, Stdout: t.out, Stderr: t.err,
	})
	if err := book.Done(ctx, entry); err != nil && runErr == nil {
		runErr = err
	}
	// CMD never ran (127, 126, 125): one line, then --close as usual.
	var se *container.StartError
	if errors.As(runErr, &se) {
		t.errorf(fmt.Errorf("run %s: %w", sandbox, se))
		code, runErr = se.Code, nil
	}
	if runErr != nil {
		return runErr
	}
	if o.Close {
		if err := closeAfterRun(c, t, sandbox); err != nil {
			t.errorf(fmt.Errorf("close %s: %w", sandbox, err))
			if code == 0 {
				code = exitError
			}
		}
	}
	if code != 0 {
		return &exitStatus{code: code}
	}
	return nil
}

// closeAfterRun closes the sandbox for run --close, printing the summary on
// stderr: stdout is CMD's. Signals now interrupt the close (which a later
// close finishes) instead of going to CMD.
func closeAfterRun(c *cli.Context, t *term, sandbox string) error {
	ctx, stop := signal.NotifyContext(context.WithoutCancel(c.Context), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.Context = ctx
	return runClose(c, &term{in: t.in, out: t.err, err: t.err}, sandbox, false, false)
}

// runDir is where the runs of a state directory are kept (package container).
func runDir(root string) string { return filepath.Join(root, "run") }

// beforeUnmount refuses to close while a run of the sandbox is alive, or
// stops every such run with force. Runs whose spillway is gone are cleaned.
func beforeUnmount(t *term, force bool) func(context.Context, *store.Sandbox) error {
	return func(ctx context.Context, sb *store.Sandbox) error {
		root, err := stateRootOf(sb)
		if err != nil {
			return err
		}
		book := &container.Book{Dir: runDir(root)}
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
			t.warnf("stopping run of %s (pid %d, container %s)", sb.Name, r.PID, r.ID)
			errs = append(errs, book.Stop(ctx, r))
		}
		return errors.Join(errs...)
	}
}

// stateRootOf finds the state directory from an open sandbox's root, which
// persist mounts at <root>/mnt/<name>.
func stateRootOf(sb *store.Sandbox) (string, error) {
	mnt := filepath.Dir(sb.Path)
	if filepath.Base(mnt) != "mnt" || filepath.Base(sb.Path) != sb.Name {
		return "", fmt.Errorf("sandbox %s: unexpected root path %s", sb.Name, sb.Path)
	}
	return filepath.Dir(mnt), nil
}
