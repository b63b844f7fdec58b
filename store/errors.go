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
	// ErrConflict reports a transaction that conflicted with another and
	// was not committed (badger's ErrConflict; PostgreSQL's serialization
	// failure or deadlock, SQLSTATE 40001/40P01, after the driver's
	// retries). Nothing was written: run the command again. It matches
	// errdefs.ErrConflict too.
	ErrConflict = errclass.New(errdefs.ErrConflict, "transaction conflict, retry")
	// ErrCommitUnknown reports a transaction whose COMMIT was sent but whose
	// answer was lost with the connection: it may or may not have been
	// committed. The store never guesses: the caller re-reads the state it
	// meant to change and decides. It matches errdefs.ErrUnknown too.
	ErrCommitUnknown = errclass.New(errdefs.ErrUnknown, "the database connection was lost during commit: the outcome is unknown, read the state again")
	// ErrUnavailable reports a database that cannot be reached, or a
	// connection lost before commit (nothing was written). It matches
	// errdefs.ErrUnavailable too.
	ErrUnavailable = errclass.New(errdefs.ErrUnavailable, "the database is unavailable")
	// ErrRefused reports a database that answered but will not take this
	// connection, for a reason no retry cures: a wrong user or password
	// (SQLSTATE class 28), a database that does not exist (3D000), a role
	// without the right to connect (42501). The store's URL must change.
	// It matches errdefs.ErrFailedPrecondition too, not ErrUnavailable.
	ErrRefused = errclass.New(errdefs.ErrFailedPrecondition, "the database refused the connection")
	// ErrStop is returned by an iteration callback to end the iteration early
	// without error.
	ErrStop = errors.New("stop")

	// ErrNewerSchema says the ledger was written by a newer spillway: no
	// retry helps, this binary must be upgraded.
	ErrNewerSchema = errclass.New(errdefs.ErrFailedPrecondition, "written by a newer spillway")

	// ErrMigrationNeeded says a shared ledger's schema is older than this
	// spillway's: it is migrated only by `spillway fleet init`
	// (AllowMigration), never by an ordinary command, so that hosts still
	// running the older spillway go on working until the administrator
	// chooses the moment.
	ErrMigrationNeeded = errclass.New(errdefs.ErrFailedPrecondition, "the shared ledger's schema needs a migration")
)

// translate maps the drivers' errors to the package's own at the boundary
// (PostgreSQL's are mapped in pg.go as they happen).
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTooBig), errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrLocked),
		errors.Is(err, ErrConflict), errors.Is(err, ErrCommitUnknown), errors.Is(err, ErrUnavailable), errors.Is(err, ErrRefused):
		return err
	case errors.Is(err, badger.ErrTxnTooBig):
		return ErrTooBig
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("store: %w", ErrConflict)
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
