// Command spillway manages disposable sandboxes whose only surviving state
// is what an explicit persistence exception lets through.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// Exit codes (SPEC.md).
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitVerifyKO = 3
	// exitInterrupted is the status of a command that SIGINT or SIGTERM
	// stopped (128 + SIGINT, as shells report it).
	exitInterrupted = 130
)

func main() {
	os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// Main runs the CLI with args and returns the process exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := &term{in: stdin, out: stdout, err: stderr}
	quietLibraries(t)
	app := newApp(t)
	if n := len(args); n > 1 && args[n-1] == completionFlag {
		// A shell asks for completions: urfave/cli wants the flag last,
		// so the arguments stay as typed.
		t.completingFlag = n > 2 && strings.HasPrefix(args[n-2], "-")
		return t.exit(app.RunContext(ctx, args))
	}
	args = helpArgs(app, args)
	t.jsonAsked = jsonAsked(args)
	err := app.RunContext(ctx, reorderArgs(app, args))
	return t.exit(unknownCommand(app, args, interrupted(ctx, err)))
}

// jsonAsked says whether args ask for --json before any "--": an error
// found before the flag was parsed (a bad flag or value ahead of it) is
// JSON too, as scripting.md promises whatever the flags' order.
func jsonAsked(args []string) bool {
	for _, a := range args[1:] {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "-json" {
			return true
		}
		for _, p := range []string{"--json=", "-json="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				b, err := strconv.ParseBool(v)
				return err == nil && b
			}
		}
	}
	return false
}

// unknownCommand turns urfave/cli's error for a command it does not know
// ("No help topic for 'exec'", its exit status 3) into a usage error that
// points at the help of the command it was given to.
func unknownCommand(app *cli.App, args []string, err error) error {
	var ec cli.ExitCoder
	name, ok := strings.CutPrefix(fmt.Sprint(err), "No help topic for '")
	if !errors.As(err, &ec) || ec.ExitCode() != 3 || !ok {
		return err
	}
	path, _ := commandWords(app, args)
	name = strings.TrimSuffix(name, "'")
	where := strings.Join(append([]string{"spillway"}, path...), " ")
	if hint := otherName[strings.Join(append(path, name), " ")]; hint != "" {
		return usageError("unknown command %q: %s (see %s --help)", name, hint, where)
	}
	return usageError("unknown command %q (see %s --help)", name, where)
}

// otherName points the names users reach for at what spillway calls it.
var otherName = map[string]string{
	"exception rm":     "an exception is revoked, not removed: spillway exception revoke ID --reason TEXT (--purge also takes what it let through out of the persisted state)",
	"exception delete": "an exception is revoked, not removed: spillway exception revoke ID --reason TEXT (--purge also takes what it let through out of the persisted state)",
	"exception remove": "an exception is revoked, not removed: spillway exception revoke ID --reason TEXT (--purge also takes what it let through out of the persisted state)",
}

// helpArgs turns `spillway [GLOBAL FLAGS] help [COMMAND…]` into
// `spillway [GLOBAL FLAGS] [COMMAND…] --help`. urfave/cli's help command
// is left out of the command list (HideHelpCommand), and with it
// `spillway help` failed as an unknown help topic; a command of our own
// named help would drop the --help flag.
func helpArgs(app *cli.App, args []string) []string {
	path, next := commandWords(app, args)
	if len(path) > 0 || next >= len(args) || args[next] != "help" {
		return args
	}
	out := append(slices.Clone(args[:next]), args[next+1:]...)
	return append(out, "--help")
}

// interrupted turns an error caused by a signal's cancelling ctx into the
// interrupted status; it leaves any other error as it is.
func interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return &exitStatus{code: exitInterrupted, err: errors.New("interrupted")}
	}
	return err
}

// quietLibraries routes containerd's log output (logrus) through spillway's
// own error format, warnings and errors only, so that nothing prints
// outside the "spillway: " form.
func quietLibraries(t *term) {
	l := log.L.Logger
	l.SetLevel(logrus.WarnLevel)
	l.SetOutput(io.Discard)
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(&libraryLogHook{t: t})
}

// libraryLogHook prints a library's warning as one "spillway:" line.
type libraryLogHook struct{ t *term }

func (h *libraryLogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h *libraryLogHook) Fire(e *logrus.Entry) error {
	msg := strings.TrimSuffix(strings.TrimSpace(e.Message), ".")
	if err, ok := e.Data[logrus.ErrorKey].(error); ok {
		msg += ": " + err.Error()
	}
	h.t.warnf("%s", msg)
	return nil
}
