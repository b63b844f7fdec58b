package persist

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// TestLedgerOnlyEnv: an Env opened with LedgerOnly (review ls) lists the
// pending records as a full one does, without opening the snapshotter or
// building a missing current-state index; a snapshotter asked for is still
// checked against the recorded one; the next full Env builds the index.
func TestLedgerOnlyEnv(t *testing.T) {
	ctx := context.Background()
	e := reviewEnv(t) // docs is written straight into the store: no index
	r := rvRecord(t, e, 1, "/home/user/Documents/a.txt", change.KindAdd, "after", change.StatusPending, "a")
	root := e.root
	recorded := e.snap.Kind()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	open := func(o Options) (*Env, error) {
		o.Root, o.LockTimeout = root, 5*time.Second
		return OpenEnv(ctx, o)
	}
	ready := func(e *Env) bool {
		t.Helper()
		var ok bool
		if err := e.store.View(func(tx *store.Tx) error { ok = currentIsReady(tx, "docs"); return nil }); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	lo, err := open(Options{LedgerOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	if err := lo.ReviewEachHost(ctx, "", 0, func(rec *store.Record, _ string) error { ids = append(ids, rec.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != r.ID {
		t.Fatalf("ledger-only review list %v, want [%d]", ids, r.ID)
	}
	// review show reads the record's content from the blobs.
	rep, err := lo.ReviewShow(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Diff == nil || !strings.Contains(rep.Diff.Text, "+a") {
		t.Fatalf("ledger-only review show: diff %+v, want the content's line", rep.Diff)
	}
	if lo.snap != nil || ready(lo) {
		t.Fatalf("a ledger-only Env opened the snapshotter (%v) or built the index (%v)", lo.snap != nil, ready(lo))
	}
	if err := lo.Close(); err != nil {
		t.Fatal(err)
	}

	other := snapshot.KindNative
	if recorded == snapshot.KindNative {
		other = snapshot.KindOverlay
	}
	if lo, err := open(Options{LedgerOnly: true, Snapshotter: other}); err == nil || !strings.Contains(err.Error(), "uses the "+recorded+" snapshotter") {
		if err == nil {
			lo.Close()
		}
		t.Fatalf("ledger-only Env asked for %s on a %s root: %v", other, recorded, err)
	}

	full, err := open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if !ready(full) {
		t.Fatal("the full Env after a ledger-only one did not build the index")
	}
}
