package persist

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// NoRootError is an open or close of a session the ledger shows open (or
// closing) on this host, whose root this host does not have. It matches
// errdefs.ErrFailedPrecondition.
type NoRootError struct {
	Sandbox string
	Session uint64
	Host    string
	State   string // the ledger's: open or closing
	// Ledger is the generation the ledger holds; Committed (non-zero) the
	// one this host's close of the session committed, at At.
	Ledger, Committed uint64
	At                time.Time
	token             uint64 // the session's lease token, as the ledger has it
}

func (e *NoRootError) Error() string {
	end := fmt.Sprintf("end the session in the ledger with: spillway close %s --abandon --reason TEXT", e.Sandbox)
	if e.Committed != 0 {
		return fmt.Sprintf("sandbox %s: the ledger shows session %d %s on this host (%s) at generation %d, but this host closed it and committed generation %d at %s: the ledger lost that commit (a database failover to a standby that had not received it, or a restore of an older backup); %s (what the commit persisted is then kept in this host's recovery area where it still holds the session's files: spillway recover ls %s --session %d)",
			e.Sandbox, e.Session, e.State, escape.Name(e.Host), e.Ledger, e.Committed, e.At.UTC().Format("2006-01-02 15:04:05 UTC"), end, e.Sandbox, e.Session)
	}
	return fmt.Sprintf("sandbox %s: the ledger shows session %d %s on this host (%s), but this host has no root of it (its state directory was replaced or cleaned, or the ledger lost this host's close of it): nothing of it can be closed here; %s",
		e.Sandbox, e.Session, e.State, escape.Name(e.Host), end)
}

func (e *NoRootError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// checkRootHere returns a *NoRootError when the ledger shows sb open or
// closing on this host and this host has no root of that session. A
// close's root goes only after its commit, so a close interrupted before
// it always finds its root.
func (e *Env) checkRootHere(ctx context.Context, sb *store.Sandbox) error {
	if sb.State == store.StateClosed || sb.Session == 0 {
		return nil
	}
	// The root first: it is local, and almost always there.
	if ok, err := e.snap.Exists(ctx, sessionKey(sb.Name, sb.Session)); err != nil || ok {
		return err
	}
	var ses *store.Session
	if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(sb.Name, sb.Session); return err }); err != nil {
		return err
	}
	if ses.Host != e.hostID || ses.Abandoned != "" {
		return nil // another host's, or not open: not this check's
	}
	nr := &NoRootError{Sandbox: sb.Name, Session: sb.Session, Host: e.hostID, State: sb.State, Ledger: sb.Generation, token: ses.Token}
	// The note says this host's close of the session committed; the
	// ledger showing the session not closed is the loss (whatever its
	// generation is now: a review decision may have raised it since).
	if g, at, ok := e.committedHere(sb.Name, sb.Session); ok {
		nr.Committed, nr.At = g, at
	}
	return nr
}

// Abandoned is what `close --abandon` did.
type Abandoned struct {
	Sandbox    string `json:"sandbox"`
	Session    uint64 `json:"session"`
	Generation uint64 `json:"generation"` // the ledger's, at which the sandbox is now closed
	// LostGeneration (non-zero) is the generation this host's close of
	// the session committed and the ledger lost; Kept counts the files of
	// that commit kept in the recovery area (reason ledger-lost).
	LostGeneration uint64 `json:"lost_generation,omitempty"`
	Kept           int64  `json:"kept"`
}

// AbandonSession ends, in the ledger, this host's session of a sandbox
// whose root this host no longer has (a *NoRootError): the session
// closes without persisting anything, the sandbox stays at the ledger's
// generation, the lease is released, and the ledger's audit log says who
// did it and why. When this host's close of the session committed a
// generation the ledger lost, what that close persisted is listed in the
// session's recovery manifest (reason ledger-lost) and kept as a fenced
// session is: `recover restore` brings it back, reviewable.
func (e *Env) AbandonSession(ctx context.Context, name, reason string) (*Abandoned, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the session is abandoned"}
	}
	if err := e.lockSandbox(name); err != nil {
		return nil, err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.State == store.StateClosed {
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is closed: there is no session to abandon", name)
	}
	nrErr := e.checkRootHere(ctx, sb)
	nr, ok := nrErr.(*NoRootError)
	if !ok {
		if nrErr != nil {
			return nil, nrErr
		}
		var ses *store.Session
		if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(name, sb.Session); return err }); err != nil {
			return nil, err
		}
		if ses.Host != e.hostID {
			return nil, &openOnHostError{Sandbox: name, Host: ses.Host}
		}
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "session %d of %s has its root on this host: close it (spillway close %s); --abandon only ends a session whose root this host no longer has", sb.Session, name, name)
	}
	n := sb.Session
	if later := e.laterSessionsHere(name, n); len(later) > 0 {
		// The ledger lost more than this session of this host's: the
		// next open would reuse those sessions' numbers and recovery
		// directories. Not handled: refuse, losing nothing, after
		// keeping what lost commits among them persisted (so that
		// recover ls shows it).
		e.keepLostSessions(ctx, name, later)
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "this host's recovery area holds sessions %v of %s, after session %d, which the ledger does not know: it lost more than one of this host's sessions, and --abandon handles one; nothing was changed. Take what you need from each (spillway recover ls %s --session N), then spillway recover purge %s --session N, and run it again (docs/fleet.md, \"When a failover loses a commit\")", later, name, n, name, name)
	}
	token := nr.token
	if token == 0 {
		// A session opened before leases existed: take the lease now,
		// as its close would (sessionLease).
		if token, err = e.takeLease(name); err != nil {
			return nil, err
		}
	}
	out := &Abandoned{Sandbox: name, Session: n, LostGeneration: nr.Committed}
	// The local part first: it is idempotent, so an abandon that stops
	// after it (or whose ledger update fails) can be run again.
	if nr.Committed != 0 {
		kept, err := e.keepLostCommit(ctx, name, n)
		out.Kept = kept
		if err != nil {
			return nil, fmt.Errorf("keep what session %d of %s persisted before the ledger lost it: %w (nothing was changed in the ledger)", n, name, err)
		}
	}
	err = e.store.UpdateLeasedAudited(name, e.hostID, token, func(tx *store.Tx) error {
		// The ledger's host row must name this state directory: a root
		// that is not the one which opened the session has no say on it.
		if err := e.heartbeat(tx, e.hostTTL); err != nil {
			return err
		}
		sb, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		if sb.State == store.StateClosed || sb.Session != n {
			return errclass.Errorf(errdefs.ErrConflict, "sandbox %s changed meanwhile: run again", name)
		}
		ses, err := tx.GetSession(name, n)
		if err != nil {
			return err
		}
		if err := abandonSession(tx, sb, ses, abandonedHerePrefix+reason); err != nil {
			return err
		}
		if err := tx.ReleaseLease(name, e.hostID, token); err != nil {
			return err
		}
		out.Generation = sb.Generation
		data := map[string]string{"session": fmt.Sprint(n), "host": e.hostID, "reason": reason, "generation": fmt.Sprint(sb.Generation)}
		if nr.Committed != 0 {
			data["lost_generation"] = fmt.Sprint(nr.Committed)
		}
		_, err = tx.Append(tx.Now(), "session.abandon", name, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Forget the open-session journal only if it names this session: a
	// later one of this host's (its open lost with the close) keeps its
	// root, which cleanup then fences instead of removing.
	if m, ok := e.openHere(name); ok && m == n {
		e.noteClosed(name)
	}
	return out, nil
}

// laterSessionsHere lists the sessions of sandbox after n that this
// host's recovery area holds, ascending (names only: an open runs it).
func (e *Env) laterSessionsHere(sandbox string, n uint64) []uint64 {
	ents, err := os.ReadDir(filepath.Join(e.recoveryDir(), sandbox))
	if err != nil {
		return nil
	}
	var later []uint64
	for _, d := range ents {
		if m, err := strconv.ParseUint(d.Name(), 10, 64); err == nil && d.IsDir() && m > n {
			later = append(later, m)
		}
	}
	slices.Sort(later)
	return later
}
