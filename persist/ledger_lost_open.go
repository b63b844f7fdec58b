package persist

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// keepLostTakenOver keeps, for an open, what a close of this host's had
// persisted when the ledger lost that commit and another host then took
// the sandbox over (the session abandoned to it): the close path says so
// through fencedBefore, an open warns. Sessions kept before are passed
// over.
func (e *Env) keepLostTakenOver(ctx context.Context, sb *store.Sandbox) error {
	for _, n := range sb.Abandoned {
		g, _, ok := e.committedHere(sb.Name, n)
		if !ok || e.loadSession(sb.Name, n).info.Fenced {
			continue
		}
		var ses *store.Session
		if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(sb.Name, n); return err }); err != nil {
			return err
		}
		if ses.Host != e.hostID || strings.HasPrefix(ses.Abandoned, abandonedHerePrefix) {
			continue
		}
		if _, err := e.keepLostCommit(ctx, sb.Name, n); err != nil {
			e.warnf("recovery area of %s session %d: %v", sb.Name, n, err)
		}
		fs := &FencedSession{Err: fmt.Errorf("sandbox %s", sb.Name), Sandbox: sb.Name, Session: n, Entries: e.loadSession(sb.Name, n).info.Entries, LostGeneration: g}
		e.warnf("%v", fs)
	}
	return nil
}

// LaterSessionsError is an open of a sandbox for which this host's
// recovery area holds sessions the ledger does not account for: after
// its last one (the ledger lost their open and close: each is then kept
// like a lost commit), or of a newer sandbox of the same name (the ledger
// was rolled back to an older one). The next opens would reuse their
// numbers and recovery directories. It matches
// errdefs.ErrFailedPrecondition.
type LaterSessionsError struct {
	Sandbox  string
	Ledger   uint64   // the ledger's last session
	Sessions []uint64 // this host's, ascending
}

func (e *LaterSessionsError) Error() string {
	ns := make([]string, len(e.Sessions))
	for i, n := range e.Sessions {
		ns[i] = strconv.FormatUint(n, 10)
	}
	n, what := e.Sessions[0], "session "+ns[0]
	if len(ns) > 1 {
		what = "sessions " + strings.Join(ns, ", ")
	}
	return fmt.Sprintf("sandbox %s: this host's recovery area holds %s, which the ledger (last session %d) does not account for: it lost them (a database failover to a standby that had not received them, or a restore of an older backup), or they are left from another sandbox of this name; the next opens would reuse their numbers. Take what you need from each (spillway recover ls %s --session %d; recover restore or export with --session %d), then spillway recover purge %s --session %d, and open again",
		e.Sandbox, what, e.Ledger, e.Sandbox, n, n, e.Sandbox, n)
}

func (e *LaterSessionsError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// checkNoLaterSessions returns a *LaterSessionsError when this host's
// recovery area holds sessions of the closed sandbox sb that the ledger
// does not account for (after its last, or of a newer incarnation),
// first keeping what those with a committed note had persisted (so that
// recover ls shows it). Sessions of an older sandbox of the same name
// (removed on another host, whose rm could not reach this host's area)
// are removed, as rm removes them on its own host, and said so.
func (e *Env) checkNoLaterSessions(ctx context.Context, sb *store.Sandbox) error {
	sessions, err := e.recoverySessions(sb.Name)
	if err != nil {
		return err
	}
	var later []uint64
	for _, rs := range sortedByNumber(sessions) {
		switch inc := rs.info.Incarnation; {
		case (!rs.hasInfo || inc == 0) && !(rs.hasInfo && !rs.info.Fenced && !rs.info.Closed.IsZero() && rs.info.Closed.Before(sb.Created)):
			// Written before incarnations were, or by a fence: judged by
			// its number alone (but one closed before this sandbox was
			// created is an earlier sandbox's, below).
			if rs.n > sb.Session {
				later = append(later, rs.n)
			}
		case inc < incarnation(sb) || inc == 0:
			// An earlier sandbox of this name: its removal did not reach
			// this host's area (interrupted, or run on another host).
			if err := e.removeSessionDir(sb.Name, rs.n); err != nil {
				return err
			}
			e.warnf("removed session %d of an earlier sandbox named %s from this host's recovery area (left by its removal)", rs.n, sb.Name)
		case inc > incarnation(sb) || rs.n > sb.Session:
			later = append(later, rs.n)
		}
	}
	if len(later) == 0 {
		return nil
	}
	e.keepLostSessions(ctx, sb.Name, later)
	return &LaterSessionsError{Sandbox: sb.Name, Ledger: sb.Session, Sessions: later}
}

// keepLostSessions keeps what the lost commits among sessions ns of
// sandbox persisted (those with a committed note), so that recover ls
// shows it; trouble is warned about.
func (e *Env) keepLostSessions(ctx context.Context, sandbox string, ns []uint64) {
	for _, n := range ns {
		if _, _, ok := e.committedHere(sandbox, n); ok {
			if _, err := e.keepLostCommit(ctx, sandbox, n); err != nil {
				e.warnf("recovery area of %s session %d: %v", sandbox, n, err)
			}
		}
	}
}

// sessionDirTaken returns an error when session n's recovery directory
// holds a session that is not the one sb is closing now: a fenced or
// kept one, or another incarnation's. A close would replace its manifest
// and lose track of what it holds. It is a backstop: open refuses first
// (checkNoLaterSessions).
func (e *Env) sessionDirTaken(sb *store.Sandbox, n uint64) error {
	rs := e.loadSession(sb.Name, n)
	if !rs.hasInfo || (!rs.info.Fenced && (rs.info.Incarnation == 0 || rs.info.Incarnation == incarnation(sb))) {
		return nil
	}
	return errclass.Errorf(errdefs.ErrFailedPrecondition, "this host's recovery area already holds a session %d of %s that this close is not (fenced, kept after a lost commit, or of another sandbox of this name): take what you need from it (spillway recover ls %s --session %d), then spillway recover purge %s --session %d, and close again",
		n, sb.Name, sb.Name, n, sb.Name, n)
}
