package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spillway/spillway/internal/pgtest"
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

// TestPGConnectErrorsClassed: a failed connection is said in one line,
// without the password; a server that refuses it for good (a wrong
// password, no such database) is ErrRefused, which no retry loop takes
// for ErrUnavailable.
func TestPGConnectErrorsClassed(t *testing.T) {
	ctx := context.Background()
	_, err := OpenURL(ctx, "postgres://postgres:secret@127.0.0.1:1/fleet?connect_timeout=2", "")
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) {
		t.Errorf("connection refused: %v", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, "secret") || strings.Count(msg, "connection refused") != 1 {
		t.Errorf("connection refused: not one line, once, without the password: %q", msg)
	}
	for _, code := range []string{"28P01", "28000", "3D000", "42501"} {
		pe := &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "no entry"}
		for _, err := range []error{pgConnErr(pe), pgErr(fmt.Errorf("acquire: %w", pe))} {
			if !errors.Is(err, ErrRefused) || !errdefs.IsFailedPrecondition(err) || errors.Is(err, ErrUnavailable) || pgRetryable(err) {
				t.Errorf("%s: %v is not ErrRefused alone", code, err)
			}
			if !strings.Contains(err.Error(), "the database refused the connection: no entry (SQLSTATE "+code+")") {
				t.Errorf("%s: %q", code, err)
			}
		}
	}
	shutdown := &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}
	if err := pgErr(shutdown); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) || !pgRetryable(err) {
		t.Errorf("57P01: %v", err)
	}

	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/nosuch"
	_, err = OpenURL(ctx, u.String(), "")
	if !errors.Is(err, ErrRefused) || errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), `database "nosuch" does not exist (SQLSTATE 3D000)`) {
		t.Errorf("no such database: %v", err)
	}
}
