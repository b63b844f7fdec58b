package errclass

import (
	"errors"
	"io"
	"testing"

	"github.com/containerd/errdefs"
)

func TestClassKeepsMessageAndChain(t *testing.T) {
	err := Errorf(errdefs.ErrInvalidArgument, "bad %s: %w", "thing", io.EOF)
	if got := err.Error(); got != "bad thing: EOF" {
		t.Fatalf("message %q", got)
	}
	if !errdefs.IsInvalidArgument(err) || !errors.Is(err, io.EOF) {
		t.Fatalf("%v lost its class or its cause", err)
	}
	if errdefs.IsNotFound(err) {
		t.Fatalf("%v matches a class it was not given", err)
	}
	sentinel := New(errdefs.ErrNotFound, "not found")
	if wrapped := errors.Join(errors.New("x"), sentinel); !errors.Is(wrapped, sentinel) || !errdefs.IsNotFound(wrapped) {
		t.Fatalf("a wrapped sentinel lost its identity or class")
	}
}
