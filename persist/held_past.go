package persist

import (
	"context"
	"path"
	"strings"

	"github.com/spillway/spillway/store"
)

// Before store.Replaces knew better, a new directory replaced every older
// record beneath it, including records held back for review (review
// before) that its session never saw and that were approved after it
// closed: such an approved file dropped out of the persisted state. The
// records were kept; the counters and the layers followed the old rule.
// fixHeldPast puts that right once: the counters once per ledger
// (heldPastMeta), this host's layers once per host (heldPastLayersMeta).
const heldPastMeta = "rule/held-past"

func (e *Env) heldPastLayersMeta() string { return "rule/held-past-layers/" + e.hostID }

// fixHeldPast finds the sandboxes whose state keeps a record the old rule
// dropped; for each it recounts the counters and forgets the change log
// (once per ledger), and removes this host's layers of it so that its
// next open builds them by the new rule (a sandbox open here keeps its
// layers until a later command finds it closed). It names each sandbox.
func (e *Env) fixHeldPast(ctx context.Context) error {
	var affected []*store.Sandbox
	var ledgerDone, hostDone bool
	if err := e.store.View(func(tx *store.Tx) error {
		// One round trip for both on PostgreSQL: every command asks.
		if err := tx.ReadAheadMeta([]string{heldPastMeta, e.heldPastLayersMeta()}); err != nil {
			return err
		}
		var err error
		if _, ledgerDone, err = tx.GetMeta(heldPastMeta); err != nil {
			return err
		}
		if _, hostDone, err = tx.GetMeta(e.heldPastLayersMeta()); err != nil || (ledgerDone && hostDone) {
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
			if st.heldPastKept() > 0 {
				affected = append(affected, sb)
			}
		}
		return nil
	}); err != nil || (ledgerDone && hostDone) {
		return err
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
				e.warnf("sandbox %s: %s approved after a newer directory's session closed: back in its persisted state (an older spillway left them out; see persisted ls)", sb.Name, plural(int64(st.heldPastKept()), "record"))
			}
			return tx.PutMeta(heldPastMeta, "1")
		}); err != nil {
			return err
		}
	}
	if hostDone {
		return nil
	}
	allClosed := true
	for _, sb := range affected {
		if sb.State != store.StateClosed {
			allClosed = false
			continue
		}
		if err := e.dropLayers(ctx, sb); err != nil {
			return err
		}
	}
	if !allClosed {
		return nil // again once they are closed
	}
	return e.store.Update(func(tx *store.Tx) error { return tx.PutMeta(e.heldPastLayersMeta(), "1") })
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

// heldPastKept counts the entries of a state (before dropReplaced) that a
// newer record on an ancestor replaced by the rule before store.Replaces
// and that none replaces now.
func (st State) heldPastKept() int {
	n := 0
	for p, r := range st {
		before, now := false, false
		for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
			if anc, ok := st[a]; ok {
				before = before || anc.ID > r.ID
				now = now || store.Replaces(anc, r)
			}
		}
		if before && !now {
			n++
		}
	}
	return n
}
