package persist

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// reviewEnv is a state directory with one closed sandbox "docs" whose
// records are written straight into the store: decisions need no snapshot.
func reviewEnv(t *testing.T) *Env {
	t.Helper()
	e, err := OpenEnv(context.Background(), Options{Root: filepath.Join(t.TempDir(), "state"), LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	rvUpdate(t, e, func(tx *store.Tx) error {
		return tx.PutSandbox(&store.Sandbox{Name: "docs", Image: "base", State: store.StateClosed, Session: 3, Generation: 3})
	})
	return e
}

func rvUpdate(t *testing.T, e *Env, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := e.store.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// rvRecord stores a record of docs with content (when not refused).
func rvRecord(t *testing.T, e *Env, session uint64, path string, kind change.Kind, review change.ReviewMode, status change.Status, content string) *store.Record {
	t.Helper()
	r := &store.Record{Sandbox: "docs", Session: session, Path: path, Kind: kind, Type: "file", Mode: 0o644,
		Exception: "ex1", Review: review, Status: status}
	if status == change.StatusRefused {
		r.Reason = RefuseSymlink
	} else if kind != change.KindDelete {
		d, n, err := e.blobs.Put(strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		r.Digest, r.Size = d, n
	}
	rvUpdate(t, e, func(tx *store.Tx) error {
		id, err := tx.NextRecordID()
		r.ID = id
		if err == nil {
			err = tx.PutRecord(r)
		}
		return err
	})
	return r
}

func rvState(t *testing.T, e *Env) (State, *store.Sandbox) {
	t.Helper()
	var st State
	var sb *store.Sandbox
	if err := e.store.View(func(tx *store.Tx) (err error) {
		if sb, err = tx.GetSandbox("docs"); err != nil {
			return err
		}
		st, err = LoadState(context.Background(), tx, sb)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st, sb
}

func rvLastEvent(t *testing.T, e *Env) *store.Event {
	t.Helper()
	var last *store.Event
	if err := e.store.ForEachEvent(context.Background(), "", func(ev *store.Event) error { last = ev; return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}

func TestRejectBringsBackPreviousVersion(t *testing.T) {
	e := reviewEnv(t)
	const p = "/home/user/Documents/report.txt"
	v1 := rvRecord(t, e, 1, p, change.KindAdd, "after", change.StatusPending, "v1\n")
	v2 := rvRecord(t, e, 2, p, change.KindModify, "after", change.StatusPending, "v2\n")
	if st, _ := rvState(t, e); st[p].ID != v2.ID {
		t.Fatalf("before: %s is r%d, want r%d", p, st[p].ID, v2.ID)
	}
	d, err := e.Reject(context.Background(), []uint64{v2.ID}, "wrong figures")
	if err != nil {
		t.Fatal(err)
	}
	st, sb := rvState(t, e)
	if st[p].ID != v1.ID || sb.Generation != 4 || !d.Sandboxes[0].Changed || d.Sandboxes[0].Generation != 4 {
		t.Fatalf("after reject: r%d at generation %d (%+v)", st[p].ID, sb.Generation, d.Sandboxes)
	}
	ev := rvLastEvent(t, e)
	if ev.Type != "review.reject" || ev.Sandbox != "docs" || ev.Data["records"] != fmt.Sprintf("r%d", v2.ID) ||
		ev.Data["reason"] != "wrong figures" || ev.Data["generation"] != "4" {
		t.Fatalf("audit entry %+v", ev)
	}
	if r := d.Records[0]; r.Status != change.StatusRejected || r.Reason != "wrong figures" || r.DecidedBy == "" || r.DecidedAt.IsZero() {
		t.Fatalf("decided record %+v", r)
	}
	// rejecting v1 too: the path goes
	if _, err := e.Reject(context.Background(), []uint64{v1.ID}, "no"); err != nil {
		t.Fatal(err)
	}
	if st, sb := rvState(t, e); st[p] != nil || sb.Generation != 5 {
		t.Fatalf("path still there (%v) or generation %d", st[p], sb.Generation)
	}
	if prob, err := e.store.VerifyAudit(context.Background()); prob != nil || err != nil {
		t.Fatal(prob, err)
	}
}

func TestApproveBeforeEntersState(t *testing.T) {
	e := reviewEnv(t)
	const p = "/home/user/Documents/held.txt"
	r := rvRecord(t, e, 1, p, change.KindAdd, "before", change.StatusPending, "held")
	after := rvRecord(t, e, 1, "/home/user/Documents/now.txt", change.KindAdd, "after", change.StatusPending, "now")
	if st, _ := rvState(t, e); st[p] != nil || st[after.Path] == nil {
		t.Fatal("a review-before change is in effect before approval, or a review-after one is not")
	}
	d, err := e.Approve(context.Background(), []uint64{after.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Sandboxes[0].Changed || d.Sandboxes[0].Generation != 3 {
		t.Fatalf("approving an in-effect change made a new generation: %+v", d.Sandboxes[0])
	}
	if _, err := e.Approve(context.Background(), []uint64{r.ID}, "read it"); err != nil {
		t.Fatal(err)
	}
	st, sb := rvState(t, e)
	if st[p] == nil || st[p].Note != "read it" || sb.Generation != 4 {
		t.Fatalf("approved change not in generation 4: %v, generation %d", st[p], sb.Generation)
	}
	if ev := rvLastEvent(t, e); ev.Type != "review.approve" || ev.Data["note"] != "read it" {
		t.Fatalf("audit entry %+v", ev)
	}
}

func TestDecisionErrorsChangeNothing(t *testing.T) {
	e := reviewEnv(t)
	ok := rvRecord(t, e, 1, "/a", change.KindAdd, "after", change.StatusPending, "a")
	refused := rvRecord(t, e, 1, "/link", change.KindAdd, "after", change.StatusRefused, "")
	if _, err := e.Approve(context.Background(), []uint64{ok.ID}, ""); err != nil {
		t.Fatal(err)
	}
	pending := rvRecord(t, e, 2, "/b", change.KindAdd, "after", change.StatusPending, "b")
	closing := rvRecord(t, e, 4, "/c", change.KindAdd, "after", change.StatusPending, "c")
	_, before := rvState(t, e)
	var seqBefore uint64
	if ev := rvLastEvent(t, e); ev != nil {
		seqBefore = ev.Seq
	}
	_, err := e.Reject(context.Background(), []uint64{pending.ID, ok.ID}, "no")
	wantErr(t, err, fmt.Sprintf("record r%d is already approved (by ", ok.ID))
	_, err = e.Approve(context.Background(), []uint64{ok.ID}, "")
	wantErr(t, err, fmt.Sprintf("record r%d is already approved (by ", ok.ID))
	_, err = e.Reject(context.Background(), []uint64{refused.ID}, "x")
	wantErr(t, err, fmt.Sprintf("record r%d was refused at close (symlink): it kept no content, there is nothing to reject", refused.ID))
	_, err = e.Approve(context.Background(), []uint64{pending.ID, 999}, "")
	wantErr(t, err, "no record r999")
	_, err = e.Reject(context.Background(), []uint64{pending.ID}, " ")
	wantErr(t, err, "reason is required")
	// a record of a close that has not committed is no review matter yet
	rvUpdate(t, e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err == nil {
			sb.State, sb.Session = store.StateClosing, 4
			err = tx.PutSandbox(sb)
		}
		return err
	})
	_, err = e.Approve(context.Background(), []uint64{closing.ID}, "")
	wantErr(t, err, "whose close has not finished")
	list, err := e.ReviewList(context.Background(), "docs")
	if err != nil || len(list) != 1 || list[0].ID != pending.ID {
		t.Fatalf("review list %v %v, want only r%d", list, err, pending.ID)
	}
	_, after := rvState(t, e)
	if after.Generation != before.Generation || rvLastEvent(t, e).Seq != seqBefore {
		t.Fatal("a failed decision changed the generation or the audit log")
	}
	if rec := rvGet(t, e, pending.ID); rec.Status != change.StatusPending {
		t.Fatalf("r%d is %s after failed decisions", pending.ID, rec.Status)
	}
}

func rvGet(t *testing.T, e *Env, id uint64) *store.Record {
	t.Helper()
	var r *store.Record
	if err := e.store.View(func(tx *store.Tx) (err error) { r, err = tx.GetRecord(id); return err }); err != nil {
		t.Fatal(err)
	}
	return r
}

// Approving more records than fit one transaction makes one generation and
// one audit entry per batch; every record ends approved.
func TestApproveAllInBatches(t *testing.T) {
	e := reviewEnv(t)
	const n = 2*decisionBatch + 7
	rvUpdate(t, e, func(tx *store.Tx) error {
		for i := 0; i < n; i++ {
			id, err := tx.NextRecordID()
			if err != nil {
				return err
			}
			r := &store.Record{ID: id, Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/d/%04d", i), Kind: change.KindAdd,
				Type: "file", Exception: "ex1", Review: "before", Status: change.StatusPending}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
		}
		return nil
	})
	d, err := e.ApproveAll(context.Background(), "docs", "bulk")
	if err != nil {
		t.Fatal(err)
	}
	st, sb := rvState(t, e)
	if len(d.Records) != n || len(st) != n || sb.Generation != 3+3 || d.Sandboxes[0].Generation != 6 || len(d.Sandboxes[0].Records) != n {
		t.Fatalf("decided %d, state %d, generation %d, %d sandboxes", len(d.Records), len(st), sb.Generation, len(d.Sandboxes))
	}
	var approvals int
	e.store.ForEachEvent(context.Background(), "docs", func(ev *store.Event) error {
		if ev.Type == "review.approve" {
			approvals++
		}
		return nil
	})
	if approvals != 3 {
		t.Fatalf("%d audit entries, want 3", approvals)
	}
	if list, _ := e.ReviewList(context.Background(), ""); len(list) != 0 {
		t.Fatalf("%d records still pending", len(list))
	}
}

func TestReviewShowDiff(t *testing.T) {
	e := reviewEnv(t)
	const p = "/doc.txt"
	v1 := rvRecord(t, e, 1, p, change.KindAdd, "after", change.StatusPending, "a\nb\nc\n")
	v2 := rvRecord(t, e, 2, p, change.KindModify, "after", change.StatusPending, "a\nB\nc")
	rep, err := e.ReviewShow(v2.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("--- /doc.txt (r%d, session 1)\n+++ /doc.txt (r%d, session 2)\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n%s\n", v1.ID, v2.ID, NoNewline)
	if rep.Previous == nil || rep.Previous.ID != v1.ID || rep.Diff.Text != want || !rep.InEffect {
		t.Fatalf("previous %v, diff:\n%s\nwant:\n%s", rep.Previous, rep.Diff.Text, want)
	}
	// a rejected previous version is still shown when none is in effect
	if _, err := e.Reject(context.Background(), []uint64{v1.ID}, "x"); err != nil {
		t.Fatal(err)
	}
	if rep, _ = e.ReviewShow(v2.ID); rep.Previous == nil || rep.Previous.ID != v1.ID {
		t.Fatalf("previous %v", rep.Previous)
	}
	bin := rvRecord(t, e, 3, p, change.KindModify, "after", change.StatusPending, "\x00\x01")
	if rep, _ = e.ReviewShow(bin.ID); !rep.Diff.Binary || rep.Diff.Text != "" || rep.Diff.OldDigest != v2.Digest || rep.Diff.NewSize != 2 {
		t.Fatalf("binary: %+v", rep.Diff)
	}
	big := rvRecord(t, e, 3, "/big", change.KindAdd, "after", change.StatusPending, strings.Repeat("x\n", MaxDiffSize/2+1))
	if rep, _ = e.ReviewShow(big.ID); rep.Diff.Text != "" || !strings.Contains(rep.Diff.Note, "larger than 1 MiB") {
		t.Fatalf("large: %+v", rep.Diff)
	}
	bad := rvRecord(t, e, 3, "/bad", change.KindAdd, "after", change.StatusPending, "ok\xff")
	if rep, _ = e.ReviewShow(bad.ID); !rep.Diff.Binary {
		t.Fatalf("invalid UTF-8 shown as text: %+v", rep.Diff)
	}
	del := rvRecord(t, e, 3, "/bad", change.KindDelete, "after", change.StatusPending, "")
	if rep, _ = e.ReviewShow(del.ID); !bytes.Contains([]byte(rep.Diff.Note), []byte("binary")) {
		t.Fatalf("delete after binary: %+v", rep.Diff)
	}
	if _, err := e.ReviewShow(12345); err == nil || err.Error() != "no record r12345" {
		t.Fatal(err)
	}
}

// TestDecisionCheckedInItsTransaction: ApproveChecked and RejectChecked
// run their check on the record as the deciding transaction reads it. The
// record is rewritten after the check of the read-only pass (as another
// host of a shared ledger could between a page and a click); the check
// in the decision sees the rewrite and nothing is decided. An unchanged
// record is decided.
func TestDecisionCheckedInItsTransaction(t *testing.T) {
	e := reviewEnv(t)
	ctx := context.Background()
	for _, verb := range []string{"approve", "reject"} {
		r := rvRecord(t, e, 2, "/"+verb, change.KindAdd, "after", change.StatusPending, verb)
		calls := 0
		check := func(got *store.Record) error {
			calls++
			if got.Path != "/"+verb {
				return fmt.Errorf("r%d changed: %s", got.ID, got.Path)
			}
			if calls == 1 { // the read-only pass; now another writer rewrites it
				rvUpdate(t, e, func(tx *store.Tx) error {
					c := *got
					c.Path = "/elsewhere"
					return tx.PutRecord(&c)
				})
			}
			return nil
		}
		decide := func(check func(*store.Record) error) error {
			var err error
			if verb == "approve" {
				_, err = e.ApproveChecked(ctx, []uint64{r.ID}, "", check)
			} else {
				_, err = e.RejectChecked(ctx, []uint64{r.ID}, "no", check)
			}
			return err
		}
		if err := decide(check); err == nil || !strings.Contains(err.Error(), "changed: /elsewhere") || calls != 2 {
			t.Fatalf("%s of a record rewritten after its first check: %v (%d checks)", verb, err, calls)
		}
		if got := rvGet(t, e, r.ID); got.Status != change.StatusPending {
			t.Fatalf("%s: r%d is %s after a failed check", verb, r.ID, got.Status)
		}
		if err := decide(func(*store.Record) error { return nil }); err != nil {
			t.Fatalf("%s with a check that passes: %v", verb, err)
		}
		want := change.StatusApproved
		if verb == "reject" {
			want = change.StatusRejected
		}
		if got := rvGet(t, e, r.ID); got.Status != want {
			t.Fatalf("%s: r%d is %s, want %s", verb, r.ID, got.Status, want)
		}
	}
}
