package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/whoami"
	"github.com/spillway/spillway/store"
)

// CreateSandbox makes a closed sandbox bound to an image.
func (e *Env) CreateSandbox(name, image string) error {
	if err := e.lockSandbox(name); err != nil {
		return err
	}
	if err := ValidateName("sandbox", name); err != nil {
		return err
	}
	if _, err := e.getSandbox(name); err != nil {
		if !errdefs.IsNotFound(err) {
			return err // not "no such sandbox": nothing of a name in use is dropped
		}
		// Records a crashed rm of the same name left must not become the
		// new sandbox's state.
		if err := e.deleteOrphanRecords(context.Background(), name); err != nil {
			return err
		}
		if _, err := e.store.DropCurrent(context.Background(), name); err != nil {
			return err
		}
	}
	return e.store.Update(func(tx *store.Tx) error {
		if _, err := tx.GetImage(image); err != nil {
			return noImage(image, err)
		}
		if _, err := tx.GetSandbox(name); err == nil {
			return &ExistsError{Kind: "sandbox", Name: name}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		sb := &store.Sandbox{Name: name, Image: image, Created: e.Now(), State: store.StateClosed}
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		// The index is empty: rm (or gc) dropped a former one of this name.
		// So is its pending count, whatever deleting a crashed rm's records
		// of that name moved it to (an older spillway's rm left records its
		// counters never counted: the count went to -1).
		if err := errors.Join(tx.PutMeta(currentReady(name), "1"), forgetLayers(tx, name), tx.SetPendingCount(name, 0)); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "sandbox.create", name, map[string]string{"image": image})
		return err
	})
}

// SandboxInfo is one line of `spillway ls`.
type SandboxInfo struct {
	Name           string `json:"name"`
	Image          string `json:"image"`
	State          string `json:"state"`
	Session        uint64 `json:"session"`
	Generation     uint64 `json:"generation"`
	OpenGeneration uint64 `json:"open_generation,omitempty"`
	PersistedFiles int64  `json:"persisted_files"`
	PersistedBytes int64  `json:"persisted_bytes"`
	Pending        int64  `json:"pending"`
	// Host holds the sandbox's lease while it is open or closing: on a
	// shared ledger, where it is open.
	Host string `json:"host,omitempty"`
}

// SharedLedger says whether the ledger is one several hosts may share
// (PostgreSQL), not the badger store in the root.
func (e *Env) SharedLedger() bool { return e.sharedLedger() }

// Sandboxes lists every sandbox with its persisted state's size.
func (e *Env) Sandboxes(ctx context.Context) ([]SandboxInfo, error) {
	var out []SandboxInfo
	err := e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		leases, err := tx.ListLeases()
		if err != nil {
			return err
		}
		holder := map[string]string{}
		for _, l := range leases {
			holder[l.Sandbox] = l.Host
		}
		return eachStateCounts(ctx, tx, sbs, func(sb *store.Sandbox, c store.Counts, pending int64) error {
			info := SandboxInfo{Name: sb.Name, Image: sb.Image, State: sb.State, Session: sb.Session,
				Generation: sb.Generation, PersistedFiles: c.Files, PersistedBytes: c.Bytes, Pending: pending}
			if sb.State == store.StateOpen {
				info.OpenGeneration = sb.OpenGeneration
			}
			if sb.State != store.StateClosed {
				info.Host = holder[sb.Name]
			}
			out = append(out, info)
			return nil
		})
	})
	if out == nil {
		out = []SandboxInfo{}
	}
	return out, err
}

// RemoveSandbox deletes a closed sandbox and its persisted state; force
// first rolls an open one back, discarding everything (beforeUnmount, when
// set, runs first, e.g. to stop processes using the root). Its history
// stays in the audit log.
func (e *Env) RemoveSandbox(ctx context.Context, name string, force bool, beforeUnmount func(context.Context, *store.Sandbox) error) error {
	if err := e.lockSandbox(name); err != nil {
		return err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		// A removal that crashed after its commit left snapshots, records
		// or recovery sessions behind: finish it.
		if e.removalLeftovers(ctx, name) {
			return e.finishRemoval(ctx, name, false)
		}
		return err
	}
	if n, ok := e.openHere(name); ok && !force && sb.State == store.StateClosed && e.exists(ctx, sessionKey(name, n)) {
		// The ledger says closed, but this host opened a session it has
		// not closed (open_journal.go): as for an open sandbox, close it
		// first (its changes are then kept) or rm --force.
		return &NotClosedError{Sandbox: name, State: store.StateOpen, Op: "rm"}
	}
	if sb.State != store.StateClosed {
		if !force {
			host, err := e.openElsewhere(sb)
			if err != nil {
				return err
			}
			return &NotClosedError{Sandbox: name, State: sb.State, Op: "rm", Host: host}
		}
		if beforeUnmount != nil && sb.State == store.StateOpen {
			if err := beforeUnmount(ctx, sb); err != nil {
				return err
			}
		}
		if err := e.refuseHeld(sb); err != nil {
			return err
		}
		if err := e.refuseForeignMounts(ctx, sb); err != nil {
			return err
		}
		if err := e.unmountRoot(name, e.MountPath(name), sb.State); err != nil {
			return err
		}
		failpoint.Hit("rm.unmounted")
		e.noteClosed(name) // --force: its changes go with it
	}
	now := e.Now()
	// The sandbox goes from the store first, in one small transaction; its
	// records, no longer reachable, are deleted after in chunks (a crash
	// leaves them for the next rm or create of that name).
	err = e.store.Update(func(tx *store.Tx) error {
		xs, err := tx.ListExceptions(name)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if x.State(now) == exceptions.StateActive {
				x.Revoked, x.RevokedBy, x.RevokeReason = now, whoami.Name(), "sandbox removed"
				if err := tx.PutException(x); err != nil {
					return err
				}
			}
			// Its records go with the sandbox: no purge is left to finish.
			if err := tx.DeleteMeta(purgingMeta(x.ID)); err != nil {
				return err
			}
		}
		if err := e.dropLease(tx, name); err != nil {
			return err
		}
		if err := tx.DeleteSandbox(name); err != nil {
			return err
		}
		_, err = tx.Append(e.Now(), "sandbox.rm", name, map[string]string{"forced": fmt.Sprint(force), "sessions": fmt.Sprint(sb.Session)})
		return err
	})
	if err != nil {
		return err
	}
	failpoint.Hit("rm.committed")
	return e.finishRemoval(ctx, name, true)
}

// finishRemoval removes what a sandbox removed from the ledger leaves on
// this host and in the store: its snapshots (an open root is fenced
// first, as cleanup fences one), mount point, recovery sessions, records,
// current-state index and lock. An rm runs it after its commit (here,
// everything goes), and again when it finds the sandbox gone from the
// ledger: its own rm killed before the end, or an rm on another host.
// That one keeps the fenced sessions, this host's only copy of work it
// had open (its root fenced by the cleanup just now, say), and the notes
// of its closes (ledger_lost.go), which age out.
func (e *Env) finishRemoval(ctx context.Context, name string, ownRm bool) error {
	gone := &store.Sandbox{Name: name, State: store.StateClosed, Generation: ^uint64(0)}
	if err := e.cleanupSandbox(ctx, gone); err != nil {
		return err
	}
	os.Remove(e.MountPath(name))
	if ownRm {
		if err := e.pruneManifests(name, ^uint64(0)); err != nil {
			return err
		}
	} else if err := e.pruneUnfenced(name); err != nil {
		return err
	}
	failpoint.Hit("rm.pruned")
	if err := e.deleteOrphanRecords(ctx, name); err != nil {
		return err
	}
	if err := e.dropCurrentOf(ctx, name); err != nil {
		return err
	}
	return e.dropSandboxLock(name)
}

// pruneUnfenced removes sandbox's recovery sessions but the fenced ones,
// warning of those.
func (e *Env) pruneUnfenced(sandbox string) error {
	sessions, err := e.recoverySessions(sandbox)
	if err != nil {
		return fmt.Errorf("recovery area of %s: %w", sandbox, err)
	}
	for _, rs := range sessions {
		if rs.info.Fenced {
			e.warnf("kept session %d of %s, removed from the ledger, in this host's recovery area: it holds work this host had open (spillway recover ls %s --session %d; recover export, then recover purge)", rs.n, sandbox, sandbox, rs.n)
			continue
		}
		if err := e.removeSessionDir(sandbox, rs.n); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(e.recoveryDir(), sandbox)) // only when empty
	return nil
}

// removalLeftovers says whether anything of a sandbox the ledger no
// longer has is left for finishRemoval: snapshots, records, sessions in
// this host's recovery area, or its current-state index.
func (e *Env) removalLeftovers(ctx context.Context, name string) bool {
	if ValidateName("sandbox", name) != nil {
		return false // never a sandbox's: and "../.." is no directory to prune
	}
	if left, err := e.leftovers(ctx, sandboxKeyPrefix(name)); err != nil || left {
		return err == nil
	}
	if ses, err := e.recoverySessions(name); err == nil && len(ses) > 0 {
		return true
	}
	return e.hasRecords(name) || e.hasCurrent(name)
}

// dropCurrentOf forgets a removed sandbox's current-state index.
func (e *Env) dropCurrentOf(ctx context.Context, name string) error {
	if err := e.store.Update(func(tx *store.Tx) error {
		return errors.Join(tx.DeleteMeta(currentReady(name)), forgetLayers(tx, name))
	}); err != nil {
		return err
	}
	if _, err := e.store.DropCurrent(ctx, name); err != nil {
		return err
	}
	// A sandbox created later under this name starts a log of its own.
	_, err := e.store.DropChanges(ctx, name, store.AllGenerations)
	return err
}

// deleteOrphanRecords deletes the records left by a removed sandbox.
func (e *Env) deleteOrphanRecords(ctx context.Context, name string) error {
	var sessions []uint64
	err := e.store.View(func(tx *store.Tx) error {
		seen := map[uint64]bool{}
		return tx.ForEachRecord(ctx, name, func(r *store.Record) error {
			if !seen[r.Session] {
				seen[r.Session] = true
				sessions = append(sessions, r.Session)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, n := range sessions {
		if _, err := e.store.DeleteSessionRecordsChunked(ctx, name, n, recordBatch); err != nil {
			return err
		}
	}
	if err := e.dropMetaPrefix(ctx, restoredByPrefix(name)); err != nil {
		return err
	}
	return e.dropDecidedWhileOpen(ctx, name, 0)
}

// dropMetaPrefix deletes the meta values whose key starts with prefix, in
// batches.
func (e *Env) dropMetaPrefix(ctx context.Context, prefix string) error {
	for {
		var keys []string
		err := e.store.View(func(tx *store.Tx) error {
			return tx.ForEachMeta(ctx, prefix, func(k, _ string) error {
				keys = append(keys, k)
				if len(keys) == recordBatch {
					return store.ErrStop
				}
				return nil
			})
		})
		if err != nil && !errors.Is(err, store.ErrStop) {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := e.store.Update(func(tx *store.Tx) error {
			for _, k := range keys {
				if err := tx.DeleteMeta(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
}

// hasRecords says whether any record of a sandbox name is in the store.
func (e *Env) hasRecords(name string) bool {
	found := false
	e.store.View(func(tx *store.Tx) error {
		return tx.ForEachRecord(context.Background(), name, func(*store.Record) error { found = true; return store.ErrStop })
	})
	return found
}

// OpenPath returns the root path of sandbox name, open on this host. A
// sandbox that is not open, or is open on another host (checkOpenHere),
// is an error that says so.
func (e *Env) OpenPath(name string) (string, error) {
	sb, err := e.getSandbox(name)
	if err != nil {
		return "", err
	}
	if sb.State != store.StateOpen {
		return "", errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is %s (open it with: spillway open %s)", sb.Name, sb.State, sb.Name)
	}
	if err := e.checkOpenHere(sb, "its root is there, not on this host"); err != nil {
		return "", err
	}
	return e.MountPath(sb.Name), nil
}

// checkOpenHere refuses, on a shared ledger, an open sandbox whose
// session another host opened (its root and snapshots are on that host),
// saying what is there (why).
func (e *Env) checkOpenHere(sb *store.Sandbox, why string) error {
	host, err := e.openElsewhere(sb)
	if err != nil || host == "" {
		return err
	}
	// The host comes from a session row, which any host can write.
	return errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is %s on host %s: %s", sb.Name, sb.State, escape.Name(host), why)
}

// openElsewhere returns, on a shared ledger, the host whose session of sb
// is the current one when it is another host ("" otherwise).
func (e *Env) openElsewhere(sb *store.Sandbox) (string, error) {
	if !e.sharedLedger() || sb.Session == 0 || sb.State == store.StateClosed {
		return "", nil
	}
	var host string
	err := e.store.View(func(tx *store.Tx) error {
		ses, err := tx.GetSession(sb.Name, sb.Session)
		if err == nil {
			host = ses.Host
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil || host == e.hostID {
		return "", err
	}
	return host, nil
}

// hasCurrent says whether a sandbox name has a current-state index.
func (e *Env) hasCurrent(name string) bool {
	found := false
	e.store.View(func(tx *store.Tx) error {
		_, found, _ = tx.GetMeta(currentReady(name))
		return nil
	})
	return found
}
