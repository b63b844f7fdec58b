package persist

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// Leases (docs/fleet.md): open takes the sandbox's lease for this host
// and records its fencing token in the session; every later write of the
// session (marking it closing, staging records, the commit) checks the
// token in its own transaction. A host whose lease went to another host
// is fenced: it writes nothing to the ledger and keeps the session's
// changes in its own recovery area.

// hostIDFile is where a state directory records the host it is.
const hostIDFile = "host-id"

// HostID is the id of the host this state directory is.
func (e *Env) HostID() string { return e.hostID }

// OwnsHostRow says whether h, a row of the ledger's host list, is this
// state directory's: its id, and no other directory's root id recorded
// in it (a clone refused for the id has the id but not the row).
func (e *Env) OwnsHostRow(h *store.Host) bool {
	return h.ID == e.hostID && (h.Root == "" || h.Root == e.rootID)
}

// resolveHostID sets e.hostID: the one the root recorded, else asked, else
// the hostname, recorded at first use (recordHostID). A root is one host:
// asking for another id than the recorded one is an error.
func (e *Env) resolveHostID(asked string) error {
	p := filepath.Join(e.root, hostIDFile)
	b, err := readPrivate(p)
	recorded := strings.TrimSpace(string(b))
	switch {
	case err == nil && recorded != "":
		if asked != "" && asked != recorded {
			return &InputError{Input: "host-id", Problem: fmt.Sprintf("%s names another host than this state directory's, %s (recorded in %s; to rename a host, or give a cloned machine its own id, remove that file and root-id beside it first)", asked, recorded, p)}
		}
		e.hostID = recorded
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	id := asked
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return fmt.Errorf("host id: %w", err)
		}
	}
	if err := ValidateName("host", id); err != nil {
		return err
	}
	e.hostID, e.hostIDNew = id, true
	return nil
}

// recordHostID records a host id resolveHostID chose in the root, once the
// ledger opened: a command that fails before (a mistyped store URL) leaves
// the root free to take the id the next one asks for. It also gives the
// root its random id (rootIDFile) when it has none.
func (e *Env) recordHostID() error {
	if e.hostIDNew {
		if err := writePrivate(e.root, hostIDFile, []byte(e.hostID+"\n")); err != nil {
			return fmt.Errorf("record host id: %w", err)
		}
		e.hostIDNew = false
		e.idsWritten = append(e.idsWritten, hostIDFile)
	}
	b, err := readPrivate(filepath.Join(e.root, rootIDFile))
	if id := strings.TrimSpace(string(b)); err == nil && id != "" {
		e.rootID = id
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	e.rootID = hex.EncodeToString(id)
	if err := writePrivate(e.root, rootIDFile, []byte(e.rootID+"\n")); err != nil {
		return fmt.Errorf("record the state directory's id: %w", err)
	}
	e.idsWritten = append(e.idsWritten, rootIDFile)
	return nil
}

// removeNewIDs removes the files recordHostID and recordBlobsDir wrote
// into a new root in this command.
func (e *Env) removeNewIDs() {
	for _, f := range e.idsWritten {
		os.Remove(filepath.Join(e.root, f))
	}
}

// heartbeat renews this host's row in tx (store.Tx.HeartbeatFrom). When
// the id is another state directory's and this command recorded it in a
// new root, the record goes again: the id was a mistake, and the next
// command may give another (--host-id) without removing files by hand.
// Should a later heartbeat of this Env succeed (the id freed meanwhile:
// an agent that tries again), they are written back as they were.
func (e *Env) heartbeat(tx *store.Tx, ttl time.Duration) error {
	_, err := tx.HeartbeatFrom(e.hostID, e.rootID, ttl)
	var taken *store.HostIDTakenError
	switch {
	case errors.As(err, &taken) && slices.Contains(e.idsWritten, hostIDFile) && !e.idsRemoved:
		e.removeNewIDs()
		e.idsRemoved = true
	case err == nil && e.idsRemoved:
		for f, id := range map[string]string{hostIDFile: e.hostID, rootIDFile: e.rootID, blobsDirFile: e.blobsDirRecord(e.blobs.dir), ledgerIDFile: e.ledgerID} {
			if slices.Contains(e.idsWritten, f) {
				if err := writePrivate(e.root, f, []byte(id+"\n")); err != nil {
					return err
				}
			}
		}
		e.idsRemoved = false
	}
	return err
}

// rootIDFile holds the state directory's random id: the ledger's host row
// names the directory that uses the host id, so that two directories
// given one id (two roots, cloned machines) are told apart. A directory
// copied whole, this file with it, must have the file removed.
const rootIDFile = "root-id"

// takeLease takes sandbox's lease for this host (renewing the host's
// heartbeat in the same transaction) and returns its token. Taking it
// from a host that died or was evicted while its session was open or
// closing abandons that session: its staged records never take effect,
// and that host is fenced when it comes back.
func (e *Env) takeLease(name string) (uint64, error) {
	var token uint64
	err := e.store.UpdateLeaseTaker(name, func(tx *store.Tx) error {
		if err := e.heartbeat(tx, e.hostTTL); err != nil {
			return err
		}
		l, prev, err := tx.TakeLease(name, e.hostID)
		if err != nil {
			return err
		}
		token = l.Token
		sb, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		data := map[string]string{"token": fmt.Sprint(l.Token), "host": e.hostID}
		if prev != nil {
			data["from"], data["from_token"] = prev.Host, fmt.Sprint(prev.Token)
		}
		if sb.State != store.StateClosed {
			// Open or closing on another host (whose lease expired), or
			// on any host under a lease that is gone (freed by an
			// eviction): that session is abandoned.
			ses, err := tx.GetSession(name, sb.Session)
			if err != nil {
				return err
			}
			other := ses.Host != "" && ses.Host != e.hostID
			lost := ses.Host == e.hostID && ses.Token != 0 && ses.Token != l.Token
			if other || lost {
				why := fmt.Sprintf("host %s lost its lease to %s", ses.Host, e.hostID)
				if lost {
					why = fmt.Sprintf("host %s lost its lease (token %d) while its session was open", ses.Host, ses.Token)
				}
				if err := abandonSession(tx, sb, ses, why); err != nil {
					return err
				}
				data["from"], data["abandoned_session"] = ses.Host, fmt.Sprint(ses.N)
			}
		}
		if data["from"] == "" {
			return nil // a free lease of a closed sandbox: nothing to tell
		}
		_, err = tx.Append(tx.Now(), "lease.takeover", name, data)
		return err
	})
	return token, err
}

// abandonSession ends session ses of sb without a close: its staged
// records never take effect, the sandbox is closed at its generation, and
// the host that had it is fenced when it comes back (fenceAbandoned).
func abandonSession(tx *store.Tx, sb *store.Sandbox, ses *store.Session, why string) error {
	ses.State, ses.Closed, ses.ClosedGeneration = store.StateClosed, tx.Now(), sb.Generation
	ses.Abandoned = why
	if err := tx.PutSession(ses); err != nil {
		return err
	}
	sb.Abandoned = append(sb.Abandoned, sb.Session)
	sb.State, sb.Path, sb.Snapshot, sb.Layer, sb.BaseDir = store.StateClosed, "", "", "", ""
	return tx.PutSandbox(sb)
}

// releaseLeaseIfClosed gives up this host's lease of a sandbox that is
// closed (an open that failed after taking it), so other hosts need not
// wait for this one to die. Trouble is only warned about.
func (e *Env) releaseLeaseIfClosed(name string, token uint64) {
	err := e.store.Update(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(name)
		if err != nil || sb.State != store.StateClosed {
			return err
		}
		if err := tx.CheckLease(name, e.hostID, token); err != nil {
			return nil // not ours any more: nothing to give up
		}
		return tx.ReleaseLease(name, e.hostID, token)
	})
	if err != nil {
		e.warnf("lease of %s: %v", name, err)
	}
}

// sessionLease returns the token of the lease session n of sandbox was
// opened with, taking the lease now for a session opened before leases
// existed (token 0). A session another host opened, or one abandoned to
// another host, is fenced.
func (e *Env) sessionLease(name string, n uint64) (uint64, error) {
	var ses *store.Session
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		ses, err = tx.GetSession(name, n)
		return err
	}); err != nil {
		return 0, err
	}
	switch {
	case ses.Abandoned != "":
		return 0, &store.FencedError{Sandbox: name, Host: e.hostID, Token: ses.Token}
	case ses.Host != "" && ses.Host != e.hostID:
		return 0, &openOnHostError{Sandbox: name, Host: ses.Host}
	case ses.Token == 0:
		return e.takeLease(name)
	}
	return ses.Token, nil
}

// openOnHostError is a close of a sandbox whose session another host
// opened; it matches errdefs.ErrUnavailable.
type openOnHostError struct{ Sandbox, Host string }

func (e *openOnHostError) Error() string {
	// The host comes from a session row, which any host can write.
	h := escape.Name(e.Host)
	return fmt.Sprintf("sandbox %s is open on host %s: close it there (if that host is dead: spillway fleet evict %s --reason TEXT)", e.Sandbox, h, h)
}

func (e *openOnHostError) Unwrap() error { return errdefs.ErrUnavailable }

// FencedSession is the error of a close by a host that lost the lease: the
// session's changes are in this host's recovery area, nothing is in the
// ledger.
type FencedSession struct {
	Err     error // the *store.FencedError
	Sandbox string
	Session uint64
	Entries int64 // changes kept for recovery
	// LostGeneration (non-zero) is the generation this host's close of
	// the session committed and the ledger lost before the takeover.
	LostGeneration uint64
}

func (f *FencedSession) Error() string {
	are := "are"
	if f.Entries == 1 {
		are = "is"
	}
	if f.LostGeneration != 0 {
		return fmt.Sprintf("%v: this host's close of session %d had committed generation %d, which the ledger lost (a database failover to a standby that had not received it, or a restore of an older backup) before another host took the sandbox over; %s %s in this host's recovery area, with what that close persisted where the area still held its files (spillway recover ls %s --session %d)",
			f.Err, f.Session, f.LostGeneration, plural(f.Entries, "change"), are, f.Sandbox, f.Session)
	}
	return fmt.Sprintf("%v: nothing of session %d was persisted; its %s %s in this host's recovery area (spillway recover ls %s --session %d)",
		f.Err, f.Session, plural(f.Entries, "change"), are, f.Sandbox, f.Session)
}

func (f *FencedSession) Unwrap() error { return f.Err }

// abandonedHere returns the newest session of sandbox that another host
// took over while this host still has its root, and the lease's holder
// now (nil: none). It reads only the abandoned sessions, never the
// sandbox's whole history.
func (e *Env) abandonedHere(ctx context.Context, name string) (*store.Session, string, error) {
	var mine []*store.Session
	var holder string
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		for i := len(sb.Abandoned) - 1; i >= 0; i-- {
			ses, err := tx.GetSession(name, sb.Abandoned[i])
			if err != nil {
				return err
			}
			if ses.Host == e.hostID {
				mine = append(mine, ses)
			}
		}
		if l, err := tx.GetLease(name); err == nil {
			holder = l.Host
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	for _, ses := range mine {
		if ok, err := e.snap.Exists(ctx, sessionKey(name, ses.N)); err != nil {
			return nil, "", err
		} else if ok {
			return ses, holder, nil
		}
	}
	return nil, "", nil
}

// fence ends this host's session n of a sandbox whose lease went to
// another host: it unmounts the root, lists every change of the session
// in the recovery area (verdict refuse, reason "fenced") with the content,
// and removes the root. It writes nothing to the ledger.
func (e *Env) fence(ctx context.Context, name string, n uint64, cause error) error {
	local := &store.Sandbox{Name: name, Session: n, Snapshot: sessionKey(name, n), State: store.StateClosed}
	if ok, err := e.snap.Exists(ctx, local.Snapshot); err != nil {
		return err
	} else if !ok {
		// Fenced before (a close run again), or never this host's: what
		// the recovery area holds of the session stays as it is.
		return e.fencedBefore(name, n, cause)
	}
	if err := e.refuseHeld(&store.Sandbox{Name: name, Path: e.MountPath(name), State: store.StateOpen}); err != nil {
		return err
	}
	if err := e.unmountRoot(name, e.MountPath(name), store.StateOpen); err != nil {
		return err
	}
	man, err := e.createManifest(name, n)
	if err != nil {
		return err
	}
	var entries, bytes, disk int64
	err = e.walkChanges(ctx, local, func(_ string, c hostile.Change) error {
		entries++
		if c.Kind != change.KindDelete {
			bytes += c.Size
			disk += c.Disk
		}
		man.add(ManifestEntry{Path: c.Path, PathBytes: exactBytes(c.Path), Kind: c.Kind, Type: c.Type, Size: c.Size, Verdict: change.VerdictRefuse, Reason: RefuseFenced})
		return nil
	})
	if ferr := man.finish(); err == nil {
		err = ferr
	}
	man.f.Close()
	if err != nil {
		return fmt.Errorf("fenced session %d of %s: list its changes: %w", n, name, err)
	}
	var none int64
	info := sessionInfo{Closed: e.Now(), Snapshotter: e.snap.Kind(), Entries: entries, Refused: entries, Bytes: bytes, Fenced: true,
		DiskBytes: &disk, DiscardedDiskBytes: &none}
	if err := e.writeSessionInfo(name, n, info); err != nil {
		return err
	}
	if err := e.keepForRecovery(ctx, local); err != nil {
		return err
	}
	if err := e.snap.RemoveDeferred(ctx, local.Snapshot, e.TrashDir()); err != nil {
		return err
	}
	os.Remove(e.MountPath(name))
	if m, ok := e.openHere(name); ok && m == n {
		e.noteClosed(name)
	}
	return &FencedSession{Err: cause, Sandbox: name, Session: n, Entries: entries}
}

// fencedEarlier is what a close run again on this host after a fence
// answers, when the sandbox has since been opened (or opened and closed)
// by another host: the fence again (FencedSession, the count of the
// changes kept) when this host's last session of the sandbox was
// abandoned to another host and its changes are in the recovery area;
// nil otherwise. It reads the sandbox's sessions: it runs only when the
// close would otherwise fail or find nothing to do.
func (e *Env) fencedEarlier(name string) (fenced, err error) {
	var last *store.Session
	var holder string
	err = e.store.View(func(tx *store.Tx) error {
		sessions, err := tx.ListSessions(name)
		if err != nil {
			return err
		}
		for _, ses := range sessions {
			if ses.Host == e.hostID && (last == nil || ses.N > last.N) {
				last = ses
			}
		}
		if l, err := tx.GetLease(name); err == nil {
			holder = l.Host
		}
		return nil
	})
	if err != nil || last == nil || last.Abandoned == "" || strings.HasPrefix(last.Abandoned, abandonedHerePrefix) || !e.loadSession(name, last.N).hasInfo {
		return nil, err
	}
	return e.fencedBefore(name, last.N, &store.FencedError{Sandbox: name, Host: e.hostID, Token: last.Token, Holder: holder}), nil
}

// fencedBefore is fence's answer for a session whose root this host no
// longer has: the recovery area's count of its changes when an earlier
// fence kept them, else cause and that there is nothing here to keep.
func (e *Env) fencedBefore(name string, n uint64, cause error) error {
	if g, _, ok := e.committedHere(name, n); ok {
		// This host's close of the session committed, and the ledger
		// lost it before another host took the sandbox over: keep what
		// it persisted (ledger_lost.go) and say so.
		if _, err := e.keepLostCommit(context.Background(), name, n); err != nil {
			e.warnf("recovery area of %s session %d: %v", name, n, err)
		}
		return &FencedSession{Err: cause, Sandbox: name, Session: n, Entries: e.loadSession(name, n).info.Entries, LostGeneration: g}
	}
	if rs := e.loadSession(name, n); rs.hasInfo {
		return &FencedSession{Err: cause, Sandbox: name, Session: n, Entries: rs.info.Entries}
	}
	return fmt.Errorf("%w: this host has no root of session %d, so nothing of it is kept here", cause, n)
}

// RefuseFenced is the manifest reason of every change of a session whose
// host lost the lease before its close committed.
const RefuseFenced = "fenced"

// FleetHosts lists the hosts sharing the ledger and the leases each holds,
// with the ledger's clock.
func (e *Env) FleetHosts() ([]*store.Host, []*store.Lease, time.Time, error) {
	var hosts []*store.Host
	var leases []*store.Lease
	var now time.Time
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		now = tx.Now()
		if hosts, err = tx.ListHosts(); err != nil {
			return err
		}
		leases, err = tx.ListLeases()
		return err
	})
	return hosts, leases, now, err
}

// ErrHeartbeatNeedsLocks is Heartbeat's answer in an Env opened without
// locks (Options.Heartbeat) when the ledger's row does not name this root
// yet: only a renewal is done unlocked; the agent opens again with the
// locks for a first heartbeat, so that it never races the first command
// of a new root (which takes its ids back if it fails).
var ErrHeartbeatNeedsLocks = errors.New("a first heartbeat takes the root's locks")

// Heartbeat renews this host's liveness row (`spillway fleet agent`).
func (e *Env) Heartbeat(ttl time.Duration) error {
	return e.store.Update(func(tx *store.Tx) error {
		if e.unlocked {
			h, err := tx.GetHost(e.hostID)
			if errors.Is(err, store.ErrNotFound) || err == nil && (h.Root != e.rootID || !h.Evicted.IsZero()) {
				return ErrHeartbeatNeedsLocks
			}
			if err != nil {
				return err
			}
		}
		return e.heartbeat(tx, ttl)
	})
}

// EvictHost frees every lease of a dead host at once, audited. A host that
// looks live (its last heartbeat within its TTL) is evicted only with
// force: its sessions would be fenced while it works.
func (e *Env) EvictHost(id, reason string, force bool) ([]string, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the host is evicted"}
	}
	if id == e.hostID {
		return nil, invalidf("%s is this host: evict a host from another one", id)
	}
	var freed []string
	err := e.store.Update(func(tx *store.Tx) error {
		if h, err := tx.GetHost(id); err == nil && h.Live(tx.Now()) && !force {
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "host %s looks live (last seen %s ago, TTL %s): evicting it fences the sessions it is working in; if it is dead or must stop, run again with --force",
				id, tx.Now().Sub(h.LastSeen).Round(time.Second), h.TTL)
		}
		var err error
		if freed, err = tx.EvictHost(id, reason); err != nil {
			return err
		}
		var abandoned []string
		for _, name := range freed {
			// The evicted host's open sessions end now, not when another
			// host takes the lease: the host is fenced when it comes
			// back, whoever opens the sandbox first.
			ok, err := abandonHostSession(tx, name, id, reason)
			if err != nil {
				return err
			}
			if ok {
				abandoned = append(abandoned, name)
			}
		}
		data := map[string]string{"host": id, "by": e.hostID, "reason": reason, "sandboxes": strings.Join(freed, " ")}
		if len(abandoned) > 0 {
			data["abandoned"] = strings.Join(abandoned, " ")
		}
		_, err = tx.Append(tx.Now(), "fleet.evict", "", data)
		return err
	})
	return freed, err
}

// ForgetHost removes a host that is gone for good from the ledger's list
// (store.Tx.ForgetHost says when it may), audited.
func (e *Env) ForgetHost(id, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return &InputError{Input: "reason", Problem: "is required: say why the host is forgotten"}
	}
	if id == e.hostID {
		return invalidf("%s is this host: forget a host from another one", id)
	}
	return e.store.Update(func(tx *store.Tx) error {
		if err := tx.ForgetHost(id); err != nil {
			return err
		}
		_, err := tx.Append(tx.Now(), "fleet.forget", "", map[string]string{"host": id, "by": e.hostID, "reason": reason})
		return err
	})
}

// abandonHostSession abandons sandbox's session when it is open or
// closing on host, and says whether it did.
func abandonHostSession(tx *store.Tx, name, host, reason string) (bool, error) {
	sb, err := tx.GetSandbox(name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil || sb.State == store.StateClosed || sb.Session == 0 {
		return false, err
	}
	ses, err := tx.GetSession(name, sb.Session)
	if err != nil || ses.Host != host {
		return false, err
	}
	return true, abandonSession(tx, sb, ses, fmt.Sprintf("host %s was evicted: %s", host, reason))
}

// fenceLocal fences this host's root of sandbox when its session was
// abandoned to another host; the open or close that finds it goes on and
// warns what happened. Nothing to do when the root is this host's live
// session, or there is none.
func (e *Env) fenceLocal(ctx context.Context, name string) error {
	err := e.fenceAbandoned(ctx, name)
	var fs *FencedSession
	if errors.As(err, &fs) {
		e.warnf("%v", fs)
		return nil
	}
	return err
}

// fenceAbandoned fences this host's root of sandbox when its session was
// abandoned to another host, and returns the *FencedSession; nil when
// there is no such root.
func (e *Env) fenceAbandoned(ctx context.Context, name string) error {
	ses, holder, err := e.abandonedHere(ctx, name)
	if err != nil || ses == nil {
		return err
	}
	return e.fence(ctx, name, ses.N, &store.FencedError{Sandbox: name, Host: e.hostID, Token: ses.Token, Holder: holder})
}

// dropLease removes the lease of a sandbox being removed, unless another
// live host holds it: a sandbox in use elsewhere is never removed from
// under that host.
func (e *Env) dropLease(tx *store.Tx, name string) error {
	l, err := tx.GetLease(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Host != e.hostID {
		h, err := tx.GetHost(l.Host)
		if err == nil && h.Live(tx.Now()) {
			return &store.HeldError{Sandbox: name, Holder: l.Host, LastSeen: h.LastSeen, Now: tx.Now()}
		}
	}
	return tx.DropLease(name)
}

// Checkpoint writes the head of every sandbox's audit chain into the fleet
// chain (`spillway fleet checkpoint`), so that a chain later removed whole
// is caught by `audit verify`. It returns the entry's number and how many
// chains it covers.
func (e *Env) Checkpoint() (seq uint64, chains int, err error) {
	err = e.store.Update(func(tx *store.Tx) error {
		ev, err := tx.Checkpoint(e.Now())
		if err != nil {
			return err
		}
		seq = ev.Seq
		// Append adds keys of its own (the writing host's id on a shared
		// ledger): the count is the entry's own.
		chains, err = strconv.Atoi(ev.Data["chains"])
		return err
	})
	return seq, chains, err
}

// hasIDs says whether the state directory root has recorded its host id
// and its own id (it is not new).
func hasIDs(root string) bool {
	for _, f := range []string{hostIDFile, rootIDFile} {
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			return false
		}
	}
	return true
}

// ErrAgentRunning says another fleet agent holds the root's agent lock;
// it matches errdefs.ErrFailedPrecondition.
var ErrAgentRunning = errclass.New(errdefs.ErrFailedPrecondition, "another fleet agent runs")

// LockAgent takes ROOT/agent.lock for a long-running fleet agent and
// returns its release: a second agent on one root (a unit and a hand-run
// one) is refused, naming the first, rather than heartbeat beside it
// with another TTL.
func (e *Env) LockAgent() (release func(), err error) {
	p := filepath.Join(e.root, "agent.lock")
	l, err := lock.TryAcquire(p, "fleet agent")
	if err != nil {
		return nil, err
	}
	if l == nil {
		holder := lock.Holder(p)
		if holder == "" {
			holder = "unknown holder"
		}
		return nil, fmt.Errorf("%w for the state directory %s (%s): one agent a root", ErrAgentRunning, e.root, holder)
	}
	return func() { l.Release() }, nil
}
