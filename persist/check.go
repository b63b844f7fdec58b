package persist

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/holders"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// expected is what the store accounts for outside badger: snapshots, mounts
// and blobs. check reports what disagrees with it; gc removes what is not in
// it.
type expected struct {
	// snapshots maps each key the store accounts for to whether it must
	// exist (images, open roots and their layers) or may (the layer of a
	// closed sandbox's current generation, built lazily at the next open).
	snapshots map[string]bool
	owner     map[string]string // snapshot key → what needs it, for messages
	mounts    map[string]bool   // roots of open sandboxes
	closing   []string          // sandboxes whose close was interrupted
	blobs     map[string]*blobUse
}

// blobUse says which records keep a blob and which sandboxes' current state
// needs it.
type blobUse struct {
	records  []uint64
	inEffect []string // "SANDBOX PATH (rN)" of the records in a current state
}

// loadExpected reads what the store accounts for. On a shared ledger
// (shared) images are imported host by host: one this host lacks is not
// imported here, not missing.
func loadExpected(ctx context.Context, tx *store.Tx, host string, shared bool, topOf func(*store.Tx, *store.Sandbox) string) (*expected, error) {
	x := &expected{snapshots: map[string]bool{}, owner: map[string]string{}, mounts: map[string]bool{}, blobs: map[string]*blobUse{}}
	need := func(key string, must bool, owner string) {
		if key == "" {
			return
		}
		x.snapshots[key] = x.snapshots[key] || must
		if _, ok := x.owner[key]; !ok || must {
			x.owner[key] = owner
		}
	}
	imgs, err := tx.ListImages()
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		need(img.Snapshot, !shared, "image "+img.Name)
	}
	sbs, err := tx.ListSandboxes()
	if err != nil {
		return nil, err
	}
	for _, sb := range sbs {
		state := sb.State
		if state == store.StateOpen || state == store.StateClosing {
			// In a shared ledger another host's session is that host's
			// root, mount and close to account for, not this one's.
			ses, err := tx.GetSession(sb.Name, sb.Session)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			if ses != nil && ses.Host != "" && ses.Host != host {
				state = store.StateClosed
			}
		}
		switch state {
		case store.StateOpen:
			need(sb.Snapshot, true, "the root of open sandbox "+sb.Name)
			need(sb.Layer, true, "the persisted layer under open sandbox "+sb.Name)
			x.mounts[resolved(sb.Path)] = true
		case store.StateClosing:
			x.closing = append(x.closing, sb.Name)
			need(sb.Snapshot, false, "the root of closing sandbox "+sb.Name)
			need(sb.Layer, false, "the persisted layer under closing sandbox "+sb.Name)
		}
		need(layerKey(sb.Name, sb.Generation), false, "sandbox "+sb.Name)
		need(topOf(tx, sb), false, "sandbox "+sb.Name)
		// From the records, not the index: check compares the two.
		st, err := recordState(ctx, tx, sb)
		if err != nil {
			return nil, err
		}
		for _, r := range st.Sorted() {
			if r.Digest != "" {
				u := x.blob(r.Digest)
				u.inEffect = append(u.inEffect, fmt.Sprintf("%s %s (r%d)", sb.Name, r.Path, r.ID))
			}
		}
	}
	err = tx.ForEachRecord(ctx, "", func(r *store.Record) error {
		if r.Digest != "" {
			u := x.blob(r.Digest)
			u.records = append(u.records, r.ID)
		}
		return nil
	})
	return x, err
}

func (x *expected) blob(digest string) *blobUse {
	u := x.blobs[digest]
	if u == nil {
		u = &blobUse{}
		x.blobs[digest] = u
	}
	return u
}

// loadExpected reads what the store accounts for, in one read transaction.
func (e *Env) loadExpected(ctx context.Context) (x *expected, err error) {
	err = e.store.View(func(tx *store.Tx) error {
		x, err = loadExpected(ctx, tx, e.hostID, e.sharedLedger(), e.layerTop)
		return err
	})
	if err == nil {
		// A session this host opened and did not close stays until an
		// open, close or rm of its sandbox keeps its changes
		// (open_journal.go), whatever the ledger says.
		for name, n := range e.openSessions() {
			k := sessionKey(name, n)
			if _, ok := x.snapshots[k]; !ok {
				// The ledger does not account for it (another host took
				// the sandbox over, or rewrote its row).
				x.snapshots[k] = false
				x.owner[k] = fmt.Sprintf("session %d of %s, which this host opened and has not closed", n, name)
				x.mounts[resolved(e.MountPath(name))] = true
			}
		}
		e.expectParents(ctx, x)
	}
	return x, err
}

// expectParents adds the parents of the expected snapshots (the layers of
// a delta chain), as the snapshotter records them.
func (e *Env) expectParents(ctx context.Context, x *expected) {
	for _, k := range sortedKeys(x.snapshots) {
		for p := k; ; {
			info, err := e.snap.Stat(ctx, p)
			if err != nil || info.Parent == "" {
				break
			}
			p = info.Parent
			if _, ok := x.snapshots[p]; ok {
				break
			}
			x.snapshots[p] = false
			x.owner[p] = "a layer under " + x.owner[k]
		}
	}
}

// Check lists every disagreement between the store, the blobs, the
// snapshots and the mounts. An empty list means all agree.
func (e *Env) Check(ctx context.Context) ([]string, error) {
	if err := e.Exclusive(); err != nil {
		return nil, err
	}
	x, err := e.loadExpected(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, name := range x.closing {
		problems = append(problems, fmt.Sprintf("sandbox %s: close was interrupted (run: spillway close %s)", name, name))
	}
	removed, err := e.unfinishedRemovals(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range removed {
		problems = append(problems, fmt.Sprintf("sandbox %s: its removal was interrupted and left its records, snapshots or recovery sessions (run: spillway gc)", n))
	}
	purging, err := e.PurgeUnfinished(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range purging {
		problems = append(problems, fmt.Sprintf("exception %s: its revoke --purge was interrupted; records of it are still in the persisted state (run: spillway exception revoke %s --purge --reason …)", id, id))
	}
	blobProblems, err := e.checkBlobs(ctx, x)
	if err != nil {
		return nil, err
	}
	problems = append(problems, blobProblems...)
	orphans, err := e.checkStates(ctx)
	if err != nil {
		return nil, err
	}
	problems = append(problems, orphans...)
	index, err := e.checkCurrent(ctx)
	if err != nil {
		return nil, err
	}
	problems = append(problems, index...)
	dangling, err := e.checkPendingIndex(ctx)
	if err != nil {
		return nil, err
	}
	problems = append(problems, dangling...)
	snaps, err := e.snap.Keys(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, k := range snaps {
		have[k] = true
		if _, ok := x.snapshots[k]; !ok {
			problems = append(problems, fmt.Sprintf("stray snapshot %s (spillway gc removes it)", k))
		}
	}
	for _, k := range sortedKeys(x.snapshots) {
		if x.snapshots[k] && !have[k] {
			problems = append(problems, fmt.Sprintf("snapshot %s of %s is missing", k, x.owner[k]))
		}
	}
	mounts, err := snapshot.MountsUnder(e.root)
	if err != nil {
		return nil, err
	}
	closing := map[string]string{}
	for _, name := range x.closing {
		closing[resolved(e.MountPath(name))] = name
	}
	for _, m := range mounts {
		if x.mounts[m] {
			continue
		}
		msg := fmt.Sprintf("stray mount %s (unmount it: umount %s)", escape.Name(m), escape.Name(m))
		if name, ok := closing[m]; ok {
			msg = fmt.Sprintf("sandbox %s: its root is still mounted at %s (run: spillway close %s)", name, escape.Name(m), name)
		}
		if hs, err := holders.Find(m); err == nil && len(hs) > 0 {
			msg += "; busy: " + (&BusyError{Holders: hs}).List()
		}
		problems = append(problems, msg)
	}
	for _, p := range sortedKeys(x.mounts) {
		if ok, err := snapshot.IsMounted(p); err == nil && !ok {
			problems = append(problems, fmt.Sprintf("open sandbox root %s is not mounted (spillway open mounts it again)", p))
		}
	}
	return problems, nil
}

// checkBlobs rehashes every blob a record keeps.
func (e *Env) checkBlobs(ctx context.Context, x *expected) ([]string, error) {
	var problems []string
	for _, d := range sortedKeys(x.blobs) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := e.blobs.Verify(d)
		if err == nil {
			continue
		}
		u := x.blobs[d]
		msg := fmt.Sprintf("%v (kept by record %s", err, recordList(u.records))
		if len(u.inEffect) > 0 {
			msg += "; in the persisted state of " + strings.Join(u.inEffect, ", ")
		}
		problems = append(problems, msg+")")
	}
	return problems, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func recordList(ids []uint64) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("r%d", id))
	}
	return strings.Join(s, ", ")
}

// checkPendingIndex lists the entries of the pending indexes that name
// records that do not exist. Review walks skip them (store.
// ForEachPendingMissing); spillway never writes one.
func (e *Env) checkPendingIndex(ctx context.Context) ([]string, error) {
	var out []string
	err := e.store.View(func(tx *store.Tx) error {
		out = out[:0] // a retried read lists afresh
		return tx.DanglingPending(ctx, func(sandbox string, id uint64) error {
			of := "of all sandboxes"
			if sandbox != "" {
				of = "of sandbox " + escape.Name(sandbox)
			}
			out = append(out, fmt.Sprintf("the pending index %s names record %d, which does not exist (a damaged ledger, or a host that wrote rows it should not)", of, id))
			return nil
		})
	})
	return out, err
}
