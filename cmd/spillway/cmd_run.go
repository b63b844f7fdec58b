package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/sandboxrun"
)

// runOptions are the options of run and shell.
type runOptions struct {
	Sandbox string
	Args    []string // CMD and its arguments
	User    string
	Net     string
	Close   bool
	TTY     bool
	Runtime string
	Env     []string // K=V for CMD
	Workdir string   // CMD's working directory ("": /)
}

// checkEnvWorkdir refuses --env without K=V and a relative --workdir.
func checkEnvWorkdir(env []string, workdir string) error {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return usageError("invalid --env %q: use K=V", kv)
		}
	}
	if workdir != "" && !strings.HasPrefix(workdir, "/") {
		return usageError("invalid --workdir %q: use an absolute path", workdir)
	}
	return nil
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
	return &cli.StringFlag{Name: "runtime", Usage: "the OCI runtime `PATH` (runc, crun)", Value: container.DefaultRuntime}
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
			o := runOptions{Sandbox: c.Args().First(), Args: c.Args().Tail(),
				User: c.String("user"), Net: c.String("net"), Close: c.Bool("close"), TTY: c.Bool("t"), Runtime: c.String("runtime"),
				Env: c.StringSlice("env"), Workdir: c.String("workdir")}
			return runRun(c.Context, o, globals(c), t)
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
			o := runOptions{Sandbox: c.Args().First(), Args: []string{"/bin/sh"}, Net: container.NetNone, TTY: true, Runtime: c.String("runtime"),
				Env: c.StringSlice("env"), Workdir: c.String("workdir")}
			return runRun(c.Context, o, globals(c), t)
		},
	}
}

// runRun checks the options, then runs CMD as a container through
// sandboxrun.Run (open, register, run, clean up and, with --close, close).
func runRun(ctx context.Context, o runOptions, g globalOptions, t *term) error {
	sandbox, args := o.Sandbox, o.Args
	if o.Net != container.NetNone && o.Net != container.NetHost {
		return usageError("unknown --net %q: use none or host", o.Net)
	}
	if o.User != "" {
		if _, _, _, err := container.ParseUser(o.User); err != nil {
			return usageError("%v", err)
		}
	}
	if err := checkEnvWorkdir(o.Env, o.Workdir); err != nil {
		return err
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

	proc := container.Process{Args: args, User: o.User, Net: o.Net, TTY: o.TTY, Env: o.Env, Workdir: o.Workdir, Stdin: t.in, Stdout: t.out, Stderr: t.err}
	ro := sandboxrun.Options{
		Runtime: rt,
		Warn:    func(msg string) { t.warnf("%s", msg) },
		// CMD never ran (127, 126, 125): one line, then --close as usual.
		NotStarted: func(se *container.StartError) { t.errorf(fmt.Errorf("run %s: %w", sandbox, se)) },
	}
	return runAndClose(ctx, g, t, sandbox, o.Close, sandboxrun.Container(proc), ro)
}

// runAndClose runs runner on sandbox through sandboxrun (closing after it
// with closeAfter) and turns its outcome into run's exit status: CMD's
// own, or 1 when only the close failed (its error printed).
func runAndClose(ctx context.Context, g globalOptions, t *term, sandbox string, closeAfter bool, runner sandboxrun.Runner, ro sandboxrun.Options) error {
	if closeAfter {
		ro.Close = func(ctx context.Context) error { return closeAfterRun(ctx, g, t, sandbox) }
	}
	code, err := sandboxrun.Run(ctx, envOptions(g, t), sandbox, runner, ro)
	var ce *sandboxrun.CloseError
	if errors.As(err, &ce) && errors.Is(ce.Err, context.Canceled) {
		// A signal stopped the close (CMD had exited): as for close, 130
		// and the way on, not "context canceled".
		return &exitStatus{code: exitInterrupted, err: fmt.Errorf("interrupted: the close of %s stopped; spillway close %s finishes it", sandbox, sandbox)}
	}
	if errors.As(err, &ce) {
		t.errorf(ce)
		if code == 0 {
			code = exitError
		}
	} else if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatus{code: code}
	}
	return nil
}

// closeAfterRun closes the sandbox for run --close, printing the summary on
// stderr: stdout is CMD's. Signals now interrupt the close (which a later
// close finishes) instead of going to CMD.
func closeAfterRun(ctx context.Context, g globalOptions, t *term, sandbox string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runClose(ctx, closeOptions{Sandbox: sandbox}, g, &term{in: t.in, out: t.err, err: t.err})
}

// beforeUnmount is close's hook that refuses while `spillway run` uses the
// sandbox, or stops those runs with force (package sandboxrun).
func beforeUnmount(e *persist.Env, t *term, force bool) func(context.Context, *persist.Sandbox) error {
	return sandboxrun.BeforeUnmount(e, force, func(msg string) { t.warnf("%s", msg) })
}
