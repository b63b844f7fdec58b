package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/sandboxrun"
)

// Errors reach the command line with an errdefs class (persist/errors.go).
// This file is the one place that turns a class into an exit status and
// adds the hints that name commands and flags.

// exitStatus is an error that carries its own exit status (run, verify).
type exitStatus struct {
	code int
	err  error // printed when not nil
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// usageError marks bad input on the command line (exit 2).
func usageError(format string, args ...any) error {
	return errclass.Errorf(errdefs.ErrInvalidArgument, format, args...)
}

// exit prints err the documented way and returns the exit status.
func (t *term) exit(err error) int {
	if err == nil {
		return exitOK
	}
	var st *exitStatus
	if errors.As(err, &st) {
		if st.err != nil {
			t.errorf(st.err)
		}
		return st.code
	}
	t.errorf(err)
	return exitCode(err)
}

// exitCode maps an error's class to its exit status: bad input is a usage
// error, any other class a plain error.
func exitCode(err error) int {
	if errdefs.IsInvalidArgument(err) {
		return exitUsage
	}
	return exitError
}

// listCommand names the command that lists each kind of object.
var listCommand = map[string]string{
	"sandbox":   "spillway ls",
	"image":     "spillway image ls",
	"exception": "spillway exception ls --all",
	"record":    "spillway review ls",
	"host":      "spillway fleet hosts",
}

// overlayFix words what would make overlay mounts work.
var overlayFix = map[string]string{
	persist.FixPath:       ": choose another --root, or use --snapshotter native",
	persist.FixFilesystem: ": put --root on ext4, xfs, btrfs or tmpfs, or use --snapshotter native",
	persist.FixPrivilege:  ": run as root, or use --snapshotter native",
	persist.FixKernel:     ", or use --snapshotter native",
}

// positionalInputs are the inputs of persist's calls that the command
// line takes as arguments, not flags: their name is said without dashes.
var positionalInputs = map[string]bool{"pattern": true, "path": true}

// message is err as the command line says it: a library's input named as
// its flag, and a hint where one helps.
func message(err error) string {
	msg := err.Error()
	var in *persist.InputError
	if errors.As(err, &in) {
		msg = strings.Replace(msg, in.Error(), inputName(in.Input)+" "+in.Problem, 1)
	}
	return msg + hint(err)
}

// inputName is how the command line names input (InputError names it
// without dashes): a flag with its two dashes, an argument as it is.
func inputName(input string) string {
	if positionalInputs[input] {
		return input
	}
	return "--" + input
}

// hint is what to do about err, or "".
func hint(err error) string {
	var (
		nf    *persist.NotFoundError
		ex    *persist.ExistsError
		nc    *persist.NotClosedError
		use   *persist.InUseError
		risky *persist.RiskyError
		link  *persist.LinkedPatternError
		busy  *persist.BusyError
		run   *sandboxrun.RunningError
		limit *persist.LimitError
		ovl   *persist.OverlayError
	)
	switch {
	case errors.As(err, &nf) && listCommand[nf.Kind] != "":
		return " (see " + listCommand[nf.Kind] + ")"
	case errors.As(err, &ex) && ex.Kind == "image":
		return " (remove it first with: spillway image rm " + ex.Name + ")"
	case errors.As(err, &nc) && nc.Host != "":
		return fmt.Sprintf(" on host %s (close it there first; if that host is dead: spillway fleet evict %s --reason TEXT)", name(nc.Host), name(nc.Host))
	case errors.As(err, &nc) && nc.Op == "rm":
		return " (close it first, or use rm --force to discard everything)"
	case errors.As(err, &nc):
		return " (finish its close first: spillway close " + nc.Sandbox + ")"
	case errors.As(err, &use):
		return " (remove the sandbox first: spillway rm " + use.Sandbox + ")"
	case errors.As(err, &risky) && risky.Restore:
		return "\nuse --force to restore there anyway"
	case errors.As(err, &risky):
		return "\nuse --force to add it anyway (it will be marked as forced)"
	case errors.As(err, &link):
		return " or use --force"
	case errors.As(err, &run):
		return "; stop it or use close --force"
	case errors.As(err, &busy):
		return "; close --force stops only `spillway run` processes"
	case errors.As(err, &limit) && limit.Limit == "MaxBytes":
		return " (--max-bytes)"
	case errors.As(err, &limit) && limit.Limit == "MaxFiles":
		return " (--max-files)"
	case errors.As(err, &ovl):
		return overlayFix[ovl.Fix]
	case errors.Is(err, persist.ErrNoRoot):
		return ": set --root or SPILLWAY_ROOT"
	case errors.Is(err, persist.ErrLedgerRefused):
		return " (check --store or SPILLWAY_STORE)"
	}
	return ""
}
