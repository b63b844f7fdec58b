package persist

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
)

// TestErrorClasses checks that each kind of failure carries its errdefs
// class and a message that names no flag and gives no hint (the command
// line adds those).
func TestErrorClasses(t *testing.T) {
	f := newFixture(t, "")
	is := func(name string, err error, class func(error) bool, msg string) {
		t.Helper()
		if err == nil || !class(err) {
			t.Errorf("%s: %v has the wrong class", name, err)
		} else if err.Error() != msg {
			t.Errorf("%s: message %q, want %q", name, err, msg)
		}
	}
	var nf *NotFoundError
	_, err := f.e.OpenSandbox(f.ctx, "nosuch")
	is("open", err, errdefs.IsNotFound, `no sandbox named "nosuch"`)
	if !errors.As(err, &nf) || nf.Kind != "sandbox" || nf.Name != "nosuch" {
		t.Errorf("open: %#v is no NotFoundError of the sandbox", err)
	}
	is("create", f.e.CreateSandbox("x", "nosuch"), errdefs.IsNotFound, `no image named "nosuch"`)
	is("image rm", f.e.RemoveImage(f.ctx, "nosuch"), errdefs.IsNotFound, `no image named "nosuch"`)
	_, err = f.e.RevokeException(context.Background(), "ex9", "r", false)
	is("revoke", err, errdefs.IsNotFound, `no exception "ex9"`)
	_, err = f.e.Approve(context.Background(), []uint64{99}, "")
	is("approve", err, errdefs.IsNotFound, "no record r99")

	is("create twice", f.e.CreateSandbox("docs", "base"), errdefs.IsAlreadyExists, "sandbox docs already exists")
	_, err = f.e.ImportImage(f.ctx, "base", snapshot.Source{Dir: busyboxRootfs(t)})
	is("import twice", err, errdefs.IsAlreadyExists, "image base already exists")

	is("bad name", f.e.CreateSandbox("a/b", "base"), errdefs.IsInvalidArgument,
		`invalid sandbox name "a/b": use letters, digits, '.', '_' and '-' (up to 63, starting with a letter or digit)`)
	_, err = f.e.AddException(context.Background(), &exceptions.Exception{Sandbox: "docs", Patterns: []string{"/x/**"}})
	is("no reason", err, errdefs.IsInvalidArgument, "reason is required: say why this exception exists")
	var in *InputError
	if !errors.As(err, &in) || in.Input != "reason" {
		t.Errorf("no reason: %#v is no InputError of the reason", err)
	}
	_, err = f.e.AddException(context.Background(), &exceptions.Exception{Sandbox: "docs", Patterns: []string{"/x/**"}, Reason: "r",
		Limits: exceptions.Limits{MaxFiles: -1}})
	is("negative limit", err, errdefs.IsInvalidArgument, "limits must not be negative")
	_, err = f.e.AddException(context.Background(), &exceptions.Exception{Sandbox: "docs", Patterns: []string{"/ok", "rel"}, Reason: "r"})
	if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `pattern "rel"`) {
		t.Errorf("bad pattern: %v", err)
	}
	_, err = f.e.Reject(context.Background(), []uint64{1}, " ")
	is("reject", err, errdefs.IsInvalidArgument, "reason is required: say why the change is rejected")
	_, err = f.e.AddException(context.Background(), &exceptions.Exception{Sandbox: "docs", Patterns: []string{"/home/user/.bashrc"}, Reason: "r"})
	is("risky", err, errdefs.IsFailedPrecondition, "risky exception refused:\n  shell-startup: could let through a shell start-up file (~/.bashrc)")

	is("image in use", f.e.RemoveImage(f.ctx, "base"), errdefs.IsFailedPrecondition, "image base is in use by sandbox docs")
	// a sandbox never opened is closed: its close is no error (SPEC)
	if sum, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{}); err != nil || !sum.NeverOpened || !sum.AlreadyClosed {
		t.Errorf("close of a sandbox never opened: %+v, %v; want closed, never opened", sum, err)
	}
	f.open()
	is("rm open", f.e.RemoveSandbox(f.ctx, "docs", false, nil), errdefs.IsFailedPrecondition, "sandbox docs is open")
}
