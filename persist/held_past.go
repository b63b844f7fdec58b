package persist

import (
	"context"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/store"
)

// Before store.Replaces knew better, a new directory replaced every older
// record beneath it, including records held back for review (review
// before) that its session never saw and that were approved after it
// closed: such an approved file dropped out of the persisted state. The
// records were kept; the counters and the layers followed the old rule.
// The next release also took such a record out again when a record in
// between deleted its directory or made it a file (store.Replaces,
// removedBetween), and made a directory whose mode alone changed stand
// for the record it changed. fixHeldPast puts a ledger right once for the
// rule of today, whichever of the two older rules it followed: the
// counters once per ledger (heldPastMeta), this host's layers once per
// host (heldPastLayersMeta). The marks of the first fix ("rule/held-past",
// "rule/held-past-layers/HOST") are no longer read.
const heldPastMeta = "rule/held-past-2"

func (e *Env) heldPastLayersMeta() string { return "rule/held-past-2-layers/" + e.hostID }

// heldPastWaiting is the prefix of the marks of sandboxes whose layers on
// this host wait for their close to be dropped (the host mark then says
// "waiting").
func (e *Env) heldPastWaiting() string { return e.heldPastLayersMeta() + "/waiting/" }

// fixHeldPast finds the sandboxes whose state keeps a record the old rule
// dropped; for each it recounts the counters and forgets the change log
// (once per ledger), and removes this host's layers of it so that its
// next open builds them by the new rule. A sandbox open on this host keeps
// its layers until a later command finds it closed (marked waiting: only
// those are looked at again). It names each sandbox.
func (e *Env) fixHeldPast(ctx context.Context) error {
	var affected []*store.Sandbox
	var ledgerDone bool
	var hostMark string
	if err := e.store.View(func(tx *store.Tx) error {
		// One round trip for both on PostgreSQL: every command asks.
		if err := tx.ReadAheadMeta([]string{heldPastMeta, e.heldPastLayersMeta()}); err != nil {
			return err
		}
		var err error
		if _, ledgerDone, err = tx.GetMeta(heldPastMeta); err != nil {
			return err
		}
		if hostMark, _, err = tx.GetMeta(e.heldPastLayersMeta()); err != nil || (ledgerDone && hostMark != "") {
			return err
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if !currentIsReady(tx, sb.Name) {
				continue // built later from the records, by the new rule
			}
			st, err := indexedState(ctx, tx, sb)
			if err != nil {
				return err
			}
			if st.ruleChanged(tx) > 0 {
				affected = append(affected, sb)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if ledgerDone && hostMark == "1" {
		return nil
	}
	if ledgerDone && hostMark == "waiting" {
		return e.dropWaitingLayers(ctx)
	}
	if len(affected) > 0 && !e.lk.exclusive {
		// Counters rewritten outright, layers removed: nothing else meanwhile.
		if err := e.Exclusive(); err != nil {
			return err
		}
		return e.fixHeldPast(ctx)
	}
	if !ledgerDone {
		if err := e.store.Update(func(tx *store.Tx) error {
			for _, sb := range affected {
				sb, err := tx.GetSandbox(sb.Name)
				if err != nil {
					return err
				}
				st, err := indexedState(ctx, tx, sb)
				if err != nil {
					return err
				}
				if err := setCounts(ctx, tx, sb); err != nil {
					return err
				}
				if err := forgetChangeLog(tx, sb.Name); err != nil {
					return err
				}
				e.warnf("sandbox %s: %s under a directory made again now follow today's rule (an older spillway counted them otherwise; see persisted ls)", sb.Name, plural(int64(st.ruleChanged(tx)), "record"))
			}
			return tx.PutMeta(heldPastMeta, "1")
		}); err != nil {
			return err
		}
	}
	if hostMark != "" {
		return nil
	}
	var waiting []string
	for _, sb := range affected {
		if e.layersInUse(sb) {
			waiting = append(waiting, sb.Name)
			continue
		}
		if err := e.dropLayers(ctx, sb); err != nil {
			return err
		}
	}
	return e.store.Update(func(tx *store.Tx) error {
		for _, n := range waiting {
			if err := tx.PutMeta(e.heldPastWaiting()+n, "1"); err != nil {
				return err
			}
		}
		mark := "1"
		if len(waiting) > 0 {
			mark = "waiting"
		}
		return tx.PutMeta(e.heldPastLayersMeta(), mark)
	})
}

// layersInUse says whether sb is open on this host (its open journal
// names a session): its layers are lowers of a mounted root.
func (e *Env) layersInUse(sb *store.Sandbox) bool {
	_, open := e.openHere(sb.Name)
	return open
}

// dropWaitingLayers drops the layers of the sandboxes marked waiting that
// are no longer open here, and clears the host mark once none waits.
func (e *Env) dropWaitingLayers(ctx context.Context) error {
	var names []string
	if err := e.store.View(func(tx *store.Tx) error {
		return tx.ForEachMeta(ctx, e.heldPastWaiting(), func(k, _ string) error {
			names = append(names, strings.TrimPrefix(k, e.heldPastWaiting()))
			return nil
		})
	}); err != nil {
		return err
	}
	var ready []*store.Sandbox
	left := 0
	for _, n := range names {
		sb, err := e.getSandbox(n)
		switch {
		case errdefs.IsNotFound(err):
			ready = append(ready, &store.Sandbox{Name: n, State: store.StateClosed}) // removed: only its mark goes
		case err != nil:
			return err
		case e.layersInUse(sb):
			left++
		default:
			ready = append(ready, sb)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	if !e.lk.exclusive {
		if err := e.Exclusive(); err != nil {
			return err
		}
		return e.dropWaitingLayers(ctx)
	}
	for _, sb := range ready {
		if err := e.dropLayers(ctx, sb); err != nil {
			return err
		}
	}
	return e.store.Update(func(tx *store.Tx) error {
		for _, sb := range ready {
			if err := tx.DeleteMeta(e.heldPastWaiting() + sb.Name); err != nil {
				return err
			}
		}
		if left == 0 {
			return tx.PutMeta(e.heldPastLayersMeta(), "1")
		}
		return nil
	})
}

// dropLayers removes this host's layers of closed sandbox sb and what
// names them: its next open builds a flat layer.
func (e *Env) dropLayers(ctx context.Context, sb *store.Sandbox) error {
	if err := e.store.Update(func(tx *store.Tx) error {
		if e.sharedLedger() {
			if err := tx.DeleteMeta(e.cacheMeta(sb.Name)); err != nil {
				return err
			}
		}
		return forgetLayers(tx, sb.Name)
	}); err != nil {
		return err
	}
	keys, err := e.snap.Keys(ctx)
	if err != nil {
		return err
	}
	var gone []string
	for _, k := range keys {
		if strings.HasPrefix(k, sandboxKeyPrefix(sb.Name)) {
			gone = append(gone, k)
		}
	}
	return e.removeLeafFirst(ctx, gone)
}

// ruleChanged counts the entries of a state (before dropReplaced) that
// store.Replaces places otherwise than either older rule did: the first
// (a newer record on an ancestor replaced it, whatever it was) and the
// next (Replaces without the history of the ancestor's path).
func (st State) ruleChanged(seen store.Seen) int {
	n := 0
	for p, r := range st {
		first, next, now := false, false, false
		for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
			if anc, ok := st[a]; ok {
				first = first || anc.ID > r.ID
				next = next || store.Replaces(anc, r, noHistory{seen})
				now = now || store.Replaces(anc, r, seen)
			}
		}
		if first != now || next != now {
			n++
		}
	}
	return n
}

// noHistory is a Seen that knows when sessions opened and no path's
// history: Replaces as the release before removedBetween had it.
type noHistory struct{ store.Seen }

func (noHistory) PathInEffect(string, string) ([]*store.Record, error) { return nil, nil }
