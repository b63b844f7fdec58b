package store

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/dgraph-io/badger/v4"

	"github.com/spillway/spillway/internal/errclass"
)

var (
	// ErrNotFound is wrapped by every lookup of a missing object; it
	// matches errdefs.ErrNotFound too.
	ErrNotFound = errclass.New(errdefs.ErrNotFound, "not found")
	// ErrExists reports an object that is already there; it matches
	// errdefs.ErrAlreadyExists too.
	ErrExists = errclass.New(errdefs.ErrAlreadyExists, "already exists")
	// ErrTooBig reports a transaction over badger's size limit; split the work
	// into several Updates.
	ErrTooBig = errors.New("transaction too big")
	// ErrLocked reports a store directory held by another process.
	ErrLocked = errors.New("store is in use by another process")
	// ErrStop is returned by an iteration callback to end the iteration early
	// without error.
	ErrStop = errors.New("stop")
)

// translate maps badger's errors to the package's own at the boundary.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTooBig), errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrLocked):
		return err
	case errors.Is(err, badger.ErrTxnTooBig):
		return ErrTooBig
	case errors.Is(err, badger.ErrConflict):
		return errors.New("store: transaction conflict, retry")
	case errors.Is(err, badger.ErrDBClosed), errors.Is(err, badger.ErrBlockedWrites):
		return errors.New("store: database is closed")
	}
	return err
}

// translateOpen turns badger's directory-lock failure into ErrLocked.
func translateOpen(dir string, err error) error {
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) ||
		strings.Contains(err.Error(), "Another process is using this Badger database") {
		return fmt.Errorf("%w: %s", ErrLocked, dir) // not "store DIR: store is …"
	}
	return fmt.Errorf("store %s: open: %w", dir, translate(err))
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
