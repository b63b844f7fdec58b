package persist

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

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
// recovery area holds sessions after the ledger's last one: the ledger
// lost their open and close (each is then kept like a lost commit), or
// they are left from an earlier sandbox of the same name. The next open
// would reuse the first one's number and recovery directory. It matches
// errdefs.ErrFailedPrecondition.
type LaterSessionsError struct {
	Sandbox  string
	Ledger   uint64   // the ledger's last session
	Sessions []uint64 // this host's, after it
}

func (e *LaterSessionsError) Error() string {
	n := e.Sessions[0]
	return fmt.Sprintf("sandbox %s: this host's recovery area holds session %d, after the ledger's last session (%d): the ledger lost that session (a database failover to a standby that had not received it, or a restore of an older backup), or it is left from an earlier sandbox of this name; the next open would reuse its number. Take what you need from it (spillway recover ls %s --session %d; recover restore or export with --session %d), then spillway recover purge %s --session %d, and open again",
		e.Sandbox, n, e.Ledger, e.Sandbox, n, n, e.Sandbox, n)
}

func (e *LaterSessionsError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// checkNoLaterSessions returns a *LaterSessionsError when this host's
// recovery area holds sessions of the closed sandbox sb after its last,
// first keeping what those with a committed note had persisted (so that
// recover ls shows it). Sessions of an earlier sandbox of the same name
// (removed on another host, whose rm could not reach this host's area)
// are removed, as rm removes them on its own host, and said so.
func (e *Env) checkNoLaterSessions(ctx context.Context, sb *store.Sandbox) error {
	sessions, err := e.recoverySessions(sb.Name)
	if err != nil {
		return err
	}
	var later []uint64
	for _, rs := range sortedByNumber(sessions) {
		if rs.earlierIncarnation(sb) {
			if err := e.removeSessionDir(sb.Name, rs.n); err != nil {
				return err
			}
			e.warnf("removed session %d of an earlier sandbox named %s (removed on another host) from this host's recovery area", rs.n, sb.Name)
			continue
		}
		if rs.n > sb.Session {
			later = append(later, rs.n)
		}
	}
	if len(later) == 0 {
		return nil
	}
	for _, n := range later {
		if _, _, ok := e.committedHere(sb.Name, n); ok {
			if _, err := e.keepLostCommit(ctx, sb.Name, n); err != nil {
				e.warnf("recovery area of %s session %d: %v", sb.Name, n, err)
			}
		}
	}
	return &LaterSessionsError{Sandbox: sb.Name, Ledger: sb.Session, Sessions: later}
}

// earlierIncarnation says whether the session belongs to a sandbox of
// sb's name that existed before sb: its info names another incarnation.
// Info that names none (written before incarnations were, or by a fence)
// never counts as earlier: nothing is removed on a guess, and a later
// session of such info is refused as any other.
func (rs *recoverySession) earlierIncarnation(sb *store.Sandbox) bool {
	return rs.hasInfo && rs.info.Incarnation != 0 && rs.info.Incarnation != incarnation(sb)
}
