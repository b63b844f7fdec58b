package store

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// TestErrorsCarryClasses: a caller may test a store error either with the
// store's sentinel or with its errdefs class.
func TestErrorsCarryClasses(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		err := s.View(func(tx *Tx) error { _, err := tx.GetSandbox("nosuch"); return err })
		if !errors.Is(err, ErrNotFound) || !errdefs.IsNotFound(err) || errdefs.IsAlreadyExists(err) {
			t.Errorf("missing sandbox: %v", err)
		}
		if err.Error() != `sandbox "nosuch": not found` {
			t.Errorf("message %q", err)
		}
		if !errdefs.IsAlreadyExists(ErrExists) || errdefs.IsNotFound(ErrExists) || ErrExists.Error() != "already exists" {
			t.Errorf("ErrExists: %v", ErrExists)
		}
	})
}
