package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/persist"
)

// busyError says that a CLI command held the state directory for longer
// than a request waits.
type busyError struct{ holder string }

func (b *busyError) Error() string {
	return fmt.Sprintf("the state directory is busy: another spillway command holds it (%s)", b.holder)
}

// withEnv opens the state directory for one request, runs fn and closes
// it again, so that CLI commands run between requests. Requests of this
// server take turns; a CLI command that holds the state for longer than
// the lock timeout makes it return a *busyError.
func (s *Server) withEnv(ctx context.Context, fn func(e *persist.Env) error) error {
	return s.withEnvOptions(ctx, s.cfg.Persist, fn)
}

// withLedger is withEnv for a page that only reads records, their blobs
// and the rules, as `review ls` and `review show` do: it
// opens the ledger and the blobs alone (persist.Options.LedgerOnly), not
// the snapshotter and the current-state index.
func (s *Server) withLedger(ctx context.Context, fn func(e *persist.Env) error) error {
	o := s.cfg.Persist
	o.LedgerOnly = true
	return s.withEnvOptions(ctx, o, fn)
}

func (s *Server) withEnvOptions(ctx context.Context, o persist.Options, fn func(e *persist.Env) error) (err error) {
	s.envMu.Lock()
	defer s.envMu.Unlock()
	holder := ""
	o.Wait = func(h string) { holder = h }
	if o.Warn == nil {
		o.Warn = s.cfg.Warn
	}
	e, err := persist.OpenEnv(ctx, o)
	if err != nil {
		if holder != "" && ctx.Err() == nil {
			return &busyError{holder: holder}
		}
		return err
	}
	defer func() {
		if cerr := e.Close(); err == nil {
			err = cerr
		}
	}()
	e.SetReviewer(s.cfg.Reviewer)
	return fn(e)
}

// fail answers a request whose work failed: 503 with Retry-After when the
// state was busy (a page that reloads itself for a GET), 404 for what does
// not exist, 400 for bad input, else 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	err = asBusy(err)
	var busy *busyError
	errors.As(err, &busy)
	code := statusOf(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", fmt.Sprint(int(s.retryWait.Seconds())))
	}
	s.render(w, r, code, "error", errorPage{
		Code: code, Message: err.Error(), Busy: busy != nil,
		Retry: busy != nil && r.Method == http.MethodGet,
	})
}

// asBusy words a lock held past the wait inside a request (a sandbox's
// lock, taken by an approve while a close of that sandbox runs) as the
// state directory's: busy, nothing changed, try again; not the CLI's
// advice to raise --lock-timeout.
func asBusy(err error) error {
	var held *lock.HeldError
	var busy *busyError
	if errors.As(err, &held) && !errors.As(err, &busy) {
		return &busyError{holder: held.Holder}
	}
	return err
}

// statusOf maps an error's class to an HTTP status, as
// cmd/spillway/errors.go maps it to an exit status.
func statusOf(err error) int {
	var busy *busyError
	var held *lock.HeldError
	switch {
	case errors.As(err, &busy), errors.As(err, &held):
		return http.StatusServiceUnavailable
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest
	case errdefs.IsFailedPrecondition(err), errdefs.IsAlreadyExists(err):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

type errorPage struct {
	Code    int
	Message string
	Busy    bool
	Retry   bool // reload the page by itself after Retry-After
}
