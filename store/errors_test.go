package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/dgraph-io/badger/v4"
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

// TestDriverErrorsMapToClasses: badger's errors become the store's
// classes, the same that the PostgreSQL driver returns.
func TestDriverErrorsMapToClasses(t *testing.T) {
	if err := translate(badger.ErrConflict); !errors.Is(err, ErrConflict) || !errdefs.IsConflict(err) {
		t.Errorf("badger.ErrConflict: %v", err)
	}
	if err := translate(badger.ErrTxnTooBig); !errors.Is(err, ErrTooBig) {
		t.Errorf("badger.ErrTxnTooBig: %v", err)
	}
	if !errdefs.IsUnknown(ErrCommitUnknown) || errors.Is(ErrCommitUnknown, ErrUnavailable) {
		t.Errorf("ErrCommitUnknown: %v", ErrCommitUnknown)
	}
	if !errdefs.IsUnavailable(ErrUnavailable) {
		t.Errorf("ErrUnavailable: %v", ErrUnavailable)
	}
	if err := translate(fmt.Errorf("x: %w", ErrCommitUnknown)); !errors.Is(err, ErrCommitUnknown) {
		t.Errorf("wrapped ErrCommitUnknown: %v", err)
	}
}
