package persist

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// TestCurrentIndexBuiltForAnOlderStore: a sandbox whose index was never
// built (a store from before it) reads its state from the records, and the
// next opening of the state directory builds the index, which then gives
// the same state; check finds the two in agreement, and a wrong index
// entry is reported.
func TestCurrentIndexBuiltForAnOlderStore(t *testing.T) {
	f := newFixture(t, "overlayfs")
	f.except(nil, "/home/user/Documents/**")
	for i := range 3 {
		root := f.open()
		write(t, root, docs+fmt.Sprintf("/f%d.txt", i), "v", 0o644)
		write(t, root, docs+"/same.txt", fmt.Sprint(i), 0o644)
		f.close()
	}
	want := fmt.Sprint(persistedPaths(t, f))
	if err := f.e.store.Update(func(tx *store.Tx) error { return tx.DeleteMeta(currentReady("docs")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.store.DropCurrent(f.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(persistedPaths(t, f)); got != want {
		t.Fatalf("derived state %s, want %s", got, want)
	}
	f.reopenEnv()
	f.e.store.View(func(tx *store.Tx) error {
		if !currentIsReady(tx, "docs") {
			t.Error("index not built when the state directory was opened")
		}
		return nil
	})
	if got := fmt.Sprint(persistedPaths(t, f)); got != want {
		t.Fatalf("indexed state %s, want %s", got, want)
	}
	if p, err := f.e.Check(f.ctx); err != nil || len(p) != 0 {
		t.Fatalf("check: %q %v", p, err)
	}
	// A wrong entry is found.
	if err := f.e.store.Update(func(tx *store.Tx) error {
		sb, _ := tx.GetSandbox("docs")
		return tx.PutCurrent("docs", "/"+docs+"/f0.txt", sb.Generation, 9999)
	}); err != nil {
		t.Fatal(err)
	}
	p, err := f.e.Check(f.ctx)
	if err != nil || len(p) != 1 || !strings.Contains(p[0], "current-state index of docs: /"+docs+"/f0.txt names record r9999") {
		t.Fatalf("check of a corrupt index: %q %v", p, err)
	}
}

func persistedPaths(t *testing.T, f *fixture) map[string]uint64 {
	t.Helper()
	recs, err := f.e.Persisted(f.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, r := range recs {
		out[r.Path] = r.ID
	}
	return out
}

// TestCurrentCopiesOfAnOlderIndex: an index written before it held copies
// of its records (bare record ids, as spillway wrote them until then) is
// listed as before, rewritten by the store's migration from schema 2 when
// the state directory is opened, and then lists the same records from its
// copies; check agrees.
func TestCurrentCopiesOfAnOlderIndex(t *testing.T) {
	f := newFixture(t, "overlayfs")
	f.except(nil, "/home/user/Documents/**")
	for i := range 3 {
		root := f.open()
		write(t, root, docs+fmt.Sprintf("/f%d.txt", i), "v", 0o644)
		write(t, root, docs+"/same.txt", fmt.Sprint(i), 0o644)
		f.close()
	}
	want := fmt.Sprint(persistedRows(t, f))
	n, err := f.e.store.BareCurrentForTest(f.ctx, "docs")
	if err != nil || n == 0 {
		t.Fatalf("BareCurrentForTest = %d, %v", n, err)
	}
	if err := f.e.store.SetSchemaForTest(2); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(persistedRows(t, f)); got != want {
		t.Fatalf("listed from bare ids: %s, want %s", got, want)
	}
	f.reopenEnv()
	if n, err := f.e.store.CopyCurrent(f.ctx, "docs"); err != nil || n != 0 {
		t.Fatalf("%d bare ids left after the state directory was opened (%v)", n, err)
	}
	if got := fmt.Sprint(persistedRows(t, f)); got != want {
		t.Fatalf("listed from copies: %s, want %s", got, want)
	}
	if p, err := f.e.Check(f.ctx); err != nil || len(p) != 0 {
		t.Fatalf("check: %q %v", p, err)
	}
}

// TestCurrentCopiesFollowReview: approving a change already in effect
// (review after) changes no generation, and the listing, read from the
// index's copies, shows it approved; check agrees.
func TestCurrentCopiesFollowReview(t *testing.T) {
	f := newFixture(t, "overlayfs")
	f.except(func(x *exceptions.Exception) { x.Review = change.ReviewAfter }, "/home/user/Documents/**")
	root := f.open()
	write(t, root, docs+"/a.txt", "v", 0o644)
	f.close()
	rows := persistedRows(t, f)
	var id uint64
	for _, r := range rows {
		if r.Path == "/"+docs+"/a.txt" && r.Status == change.StatusPending {
			id = r.ID
		}
	}
	if id == 0 {
		t.Fatalf("no pending record of a.txt listed: %v", rows)
	}
	if _, err := f.e.Approve(f.ctx, []uint64{id}, "fine"); err != nil {
		t.Fatal(err)
	}
	for _, r := range persistedRows(t, f) {
		if r.ID == id && (r.Status != change.StatusApproved || r.Note != "fine") {
			t.Fatalf("listed after the approval: %+v", r)
		}
	}
	if p, err := f.e.Check(f.ctx); err != nil || len(p) != 0 {
		t.Fatalf("check: %q %v", p, err)
	}
}

// persistedRows lists docs's persisted state as persisted ls reads it.
func persistedRows(t *testing.T, f *fixture) []store.Record {
	t.Helper()
	var out []store.Record
	if err := f.e.PersistedEach(f.ctx, "docs", func(r *store.Record) error {
		out = append(out, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
