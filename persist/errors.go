package persist

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// Errors carry one of containerd's errdefs classes: a missing object is
// errdefs.ErrNotFound, one already there errdefs.ErrAlreadyExists, bad input
// errdefs.ErrInvalidArgument, an object in the wrong state
// errdefs.ErrFailedPrecondition. Messages name no command-line flag and
// give no hint: the command line adds those (cmd/spillway/errors.go).

// NotFoundError reports a missing object; it matches errdefs.ErrNotFound.
type NotFoundError struct {
	Kind string // "sandbox", "image", "exception" or "record"
	Name string // a record's is "r" and its id
}

func (e *NotFoundError) Error() string {
	switch e.Kind {
	case "sandbox", "image":
		return fmt.Sprintf("no %s named %q", e.Kind, e.Name)
	case "record":
		return "no record " + e.Name
	}
	return fmt.Sprintf("no %s %q", e.Kind, e.Name)
}

func (e *NotFoundError) Unwrap() error { return errdefs.ErrNotFound }

// noSandbox, noImage, noException and noRecord turn a lookup's
// store.ErrNotFound into a NotFoundError; other errors pass unchanged.
func noSandbox(name string, err error) error { return notFound(err, "sandbox", name) }
func noImage(name string, err error) error   { return notFound(err, "image", name) }
func noException(id string, err error) error { return notFound(err, "exception", id) }
func noRecord(id uint64, err error) error    { return notFound(err, "record", fmt.Sprintf("r%d", id)) }

func notFound(err error, kind, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &NotFoundError{Kind: kind, Name: name}
	}
	return err
}

// ExistsError reports an object that is already there; it matches
// errdefs.ErrAlreadyExists.
type ExistsError struct{ Kind, Name string }

func (e *ExistsError) Error() string { return fmt.Sprintf("%s %s already exists", e.Kind, e.Name) }
func (e *ExistsError) Unwrap() error { return errdefs.ErrAlreadyExists }

// InputError reports a bad value of one input of a call, named as the
// command line's option for it without the dashes; it matches
// errdefs.ErrInvalidArgument.
type InputError struct {
	Input   string // "reason", "review", "expires"
	Problem string // "is required: say why …"
}

func (e *InputError) Error() string { return e.Input + " " + e.Problem }
func (e *InputError) Unwrap() error { return errdefs.ErrInvalidArgument }

// invalidf reports bad input that no single option holds.
func invalidf(format string, args ...any) error {
	return errclass.Errorf(errdefs.ErrInvalidArgument, format, args...)
}

// NotClosedError reports a sandbox that must be closed first; it matches
// errdefs.ErrFailedPrecondition.
type NotClosedError struct {
	Sandbox, State string
	Op             string // the command refused: "rm", "prune"
	Host           string // on a shared ledger, the other host it is open on
}

func (e *NotClosedError) Error() string { return fmt.Sprintf("sandbox %s is %s", e.Sandbox, e.State) }
func (e *NotClosedError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// InUseError reports an image that a sandbox still uses; it matches
// errdefs.ErrFailedPrecondition.
type InUseError struct{ Image, Sandbox string }

func (e *InUseError) Error() string {
	return fmt.Sprintf("image %s is in use by sandbox %s", e.Image, e.Sandbox)
}
func (e *InUseError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// RiskyError refuses an exception (or a restore target) that lint found
// risky, unless forced; it matches errdefs.ErrFailedPrecondition.
type RiskyError struct {
	Findings []exceptions.Finding
	Restore  bool // the targets of recover restore, not an exception
}

func (e *RiskyError) Error() string {
	msgs := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		msgs[i] = fmt.Sprintf("%s: %s", f.Code, f.Message)
	}
	what := "risky exception refused"
	if e.Restore {
		what = "risky restore target refused"
	}
	return what + ":\n  " + strings.Join(msgs, "\n  ")
}
func (e *RiskyError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// LinkedPatternError refuses, unless forced, a pattern that goes through a
// symlink of the image and so would never match; it matches
// errdefs.ErrInvalidArgument.
type LinkedPatternError struct{ Image, Link, Pattern, Suggest string }

func (e *LinkedPatternError) Error() string {
	return fmt.Sprintf("in image %s, %s is a symlink, so %q would never match; write the real path (%s)",
		e.Image, e.Link, e.Pattern, e.Suggest)
}
func (e *LinkedPatternError) Unwrap() error { return errdefs.ErrInvalidArgument }
