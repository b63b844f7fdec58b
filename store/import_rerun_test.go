package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
)

var rerunOpts = ImportOptions{Source: "/src", SourceHost: "solo", Host: "h1", Chunk: 4}

// srcClose closes one more session of sb in the source: a pending record
// at path, current from the next generation on, its audit entry; with
// approve, a pending record of an earlier session is approved too.
func srcClose(t *testing.T, src *Store, sb, path string, approve bool) {
	t.Helper()
	mustUpdate(t, src, func(tx *Tx) error {
		s, err := tx.GetSandbox(sb)
		if err != nil {
			return err
		}
		xs, err := tx.ListExceptions(sb)
		if err != nil {
			return err
		}
		if approve {
			var pend *Record
			if err := tx.ForEachPending(context.Background(), sb, func(r *Record) error { pend = r; return ErrStop }); err != nil && !errors.Is(err, ErrStop) {
				return err
			}
			pend.Status = change.StatusApproved
			if err := tx.PutRecord(pend); err != nil {
				return err
			}
		}
		id, err := tx.NextRecordID()
		if err != nil {
			return err
		}
		s.Session++
		s.Generation++
		if err := tx.PutSession(&Session{Sandbox: sb, N: s.Session, State: StateClosed, Generation: s.Generation - 1, ClosedGeneration: s.Generation}); err != nil {
			return err
		}
		r := &Record{ID: id, Sandbox: sb, Session: s.Session, Path: path, Kind: change.KindAdd, Type: change.TypeFile,
			Size: 7, Digest: fmt.Sprintf("sha256:%064x", id), Exception: xs[0].ID, Status: change.StatusPending}
		if err := tx.PutRecord(r); err != nil {
			return err
		}
		if err := tx.PutCurrent(sb, path, s.Generation, id); err != nil {
			return err
		}
		if err := tx.PutSandbox(s); err != nil {
			return err
		}
		_, err = tx.Append(time.Now(), "sandbox.close", sb, map[string]string{"record": fmt.Sprint(id)})
		return err
	})
}

// srcRemove removes sb from s as `spillway rm` does: its row and records
// go, its chain gets a sandbox.rm entry.
func srcRemove(t *testing.T, s *Store, sb string) {
	t.Helper()
	mustUpdate(t, s, func(tx *Tx) error {
		var ids []uint64
		if err := tx.ForEachRecord(context.Background(), sb, func(r *Record) error { ids = append(ids, r.ID); return nil }); err != nil {
			return err
		}
		for _, id := range ids {
			if err := tx.DeleteRecord(id); err != nil {
				return err
			}
		}
		if err := tx.DeleteSandbox(sb); err != nil {
			return err
		}
		_, err := tx.Append(time.Now(), "sandbox.rm", sb, nil)
		return err
	})
	if _, err := s.DropCurrent(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
}

// crashWhen interrupts imports of src after 1, 2, … chunks until the
// progress left satisfies cond, and returns that ledger.
func crashWhen(t *testing.T, src *Store, cond func(p *importProgress) bool) *Store {
	t.Helper()
	for k := 1; k < 100; k++ {
		dst, _ := newStore(t)
		o := rerunOpts
		o.failAfter = k
		if _, err := Import(context.Background(), src, dst, o); !errors.Is(err, errImportFailpoint) {
			t.Fatalf("k=%d: %v", k, err)
		}
		if p := progressOf(t, dst); p != nil && cond(p) {
			return dst
		}
		dst.Close()
	}
	t.Fatal("no interrupted import left the progress wanted")
	return nil
}

func progressOf(t *testing.T, dst *Store) *importProgress {
	t.Helper()
	var p *importProgress
	mustView(t, dst, func(tx *Tx) error {
		var err error
		p, err = getProgress(tx, SourceID(rerunOpts.SourceHost, rerunOpts.Source))
		return err
	})
	return p
}

// recordIDs maps what each record of the ledger says (its sandbox and
// digest) to its id, and returns the highest id.
func recordIDs(t *testing.T, s *Store) (map[string]uint64, uint64) {
	t.Helper()
	ids := map[string]uint64{}
	var top uint64
	mustView(t, s, func(tx *Tx) error {
		return tx.ForEachRecord(context.Background(), "", func(r *Record) error {
			ids[r.Sandbox+" "+r.Digest] = r.ID
			top = max(top, r.ID)
			return nil
		})
	})
	return ids, top
}

// checkImported: the ledger holds exactly the source's content, with an
// intact audit log of the source's entries plus bridges, and every record
// id drawn once (the highest id is the number of records plus those of
// copies taken back).
func checkImported(t *testing.T, src, dst *Store, bridges int, takenBack uint64) {
	t.Helper()
	if got, want := ledgerView(t, dst), ledgerView(t, src); got != want {
		t.Fatalf("imported\n%s\nwant\n%s", got, want)
	}
	if p, err := dst.VerifyAudit(context.Background()); err != nil || p != nil {
		t.Fatalf("audit: %v %v", p, err)
	}
	if n, want := countEvents(t, dst), countEvents(t, src)+bridges; n != want {
		t.Fatalf("%d audit entries, want %d", n, want)
	}
	ids, top := recordIDs(t, dst)
	if top != uint64(len(ids))+takenBack {
		t.Fatalf("%d records, the highest id %d: ids drawn twice or orphans left", len(ids), top)
	}
}

func begun(sb string) func(p *importProgress) bool {
	return func(p *importProgress) bool {
		_, ok := p.Heads[sb]
		return ok && !p.done(sb) && p.RecordsAfter[sb] > 0
	}
}

// TestImportRerunChangedBegun: the source changes a sandbox whose copy
// was interrupted; the rerun copies it again as it is now, keeping the
// record ids drawn before, and leaves no orphan.
func TestImportRerunChangedBegun(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		src := importSource(t)
		dst := crashWhen(t, src, func(p *importProgress) bool { return p.done("docs") && begun("notes")(p) })
		before, _ := recordIDs(t, dst)
		srcClose(t, src, "notes", "/d/new", true)
		// The source drops notes's oldest record (superseded, copied).
		mustUpdate(t, src, func(tx *Tx) error {
			return tx.ForEachRecord(context.Background(), "notes", func(r *Record) error {
				delete(before, r.Sandbox+" "+r.Digest)
				if err := tx.DeleteRecord(r.ID); err != nil {
					return err
				}
				return ErrStop
			})
		})
		res, err := Import(context.Background(), src, dst, rerunOpts)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Resumed || fmt.Sprint(res.Restarted) != "[notes]" {
			t.Fatalf("resumed %v restarted %v", res.Resumed, res.Restarted)
		}
		checkImported(t, src, dst, 1, 1)
		after, _ := recordIDs(t, dst)
		for k, id := range before {
			if after[k] != id {
				t.Fatalf("record %s: id %d before the rerun, %d after", k, id, after[k])
			}
		}
		if res, err := Import(context.Background(), src, dst, rerunOpts); err != nil || !res.Already {
			t.Fatalf("third run: %+v %v", res, err)
		}
	})
}

// TestImportRerunChangedFinished: the source changes a sandbox whose copy
// an interrupted import finished: the rerun is refused, naming it, with
// nothing written; either way on (remove the ledger's copy, or the
// source's) then imports the rest.
func TestImportRerunChangedFinished(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		for _, way := range []string{"ledger", "source"} {
			t.Run(way, func(t *testing.T) {
				src := importSource(t)
				dst := crashWhen(t, src, func(p *importProgress) bool { return p.done("docs") && !p.done("notes") })
				docsAsImported := ledgerView(t, src)
				srcClose(t, src, "docs", "/d/new", false)
				view, events, prog := ledgerView(t, dst), countEvents(t, dst), progressOf(t, dst)
				_, err := Import(context.Background(), src, dst, rerunOpts)
				var ce *ImportConflictError
				if !errors.As(err, &ce) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("rerun: %v, want a refusal", err)
				}
				for _, want := range []string{"docs was copied as it was at entry 12 of its audit chain, the source has moved on to entry 13 since (sandbox.close)", "spillway rm NAME", "nothing imported"} {
					if !contains(err.Error(), want) {
						t.Fatalf("refusal %q lacks %q", err, want)
					}
				}
				if ledgerView(t, dst) != view || countEvents(t, dst) != events || fmt.Sprint(progressOf(t, dst)) != fmt.Sprint(prog) {
					t.Fatal("the refused rerun wrote to the ledger")
				}
				if way == "ledger" {
					srcRemove(t, dst, "docs")
					res, err := Import(context.Background(), src, dst, rerunOpts)
					if err != nil || fmt.Sprint(res.Restarted) != "[docs]" {
						t.Fatalf("rerun: %+v %v", res, err)
					}
					if got, want := ledgerView(t, dst), ledgerView(t, src); got != want {
						t.Fatalf("imported\n%s\nwant\n%s", got, want)
					}
					// A new incarnation: no host's cache of the removed
					// copy passes for it.
					var was, now *Sandbox
					mustView(t, src, func(tx *Tx) (err error) { was, err = tx.GetSandbox("docs"); return })
					mustView(t, dst, func(tx *Tx) (err error) { now, err = tx.GetSandbox("docs"); return })
					if now.Created.Equal(was.Created) {
						t.Fatalf("docs copied again keeps its incarnation %v", was.Created)
					}
					if p, err := dst.VerifyAudit(context.Background()); err != nil || p != nil {
						t.Fatalf("audit: %v %v", p, err)
					}
					return
				}
				srcRemove(t, src, "docs")
				if _, err := Import(context.Background(), src, dst, rerunOpts); err != nil {
					t.Fatal(err)
				}
				if got := ledgerView(t, dst); got != docsAsImported {
					t.Fatalf("imported\n%s\nwant\n%s", got, docsAsImported)
				}
				if p, err := dst.VerifyAudit(context.Background()); err != nil || p != nil {
					t.Fatalf("audit: %v %v", p, err)
				}
				// docs's history stops where its copy was made.
				n := 0
				if err := dst.ForEachEvent(context.Background(), "docs", func(e *Event) error {
					if e.Type == "sandbox.rm" || e.Data["record"] == "23" {
						t.Fatalf("the source's later entry %s %v imported", e.Type, e.Data)
					}
					n++
					return nil
				}); err != nil || n != 12 {
					t.Fatalf("docs has %d entries (%v), want 12", n, err)
				}
			})
		}
	})
}

// TestImportRerunChangedOpen: a sandbox the source changed and left open
// since its copy: the refusal also says to close it there first.
func TestImportRerunChangedOpen(t *testing.T) {
	src := importSource(t)
	dst := crashWhen(t, src, func(p *importProgress) bool { return p.done("docs") && !p.done("notes") })
	srcClose(t, src, "docs", "/d/new", false)
	mustUpdate(t, src, func(tx *Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb.Session++
		sb.State = StateOpen
		if err := tx.PutSession(&Session{Sandbox: "docs", N: sb.Session, State: StateOpen, Generation: sb.Generation}); err != nil {
			return err
		}
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		_, err = tx.Append(tx.Now(), "sandbox.open", "docs", map[string]string{"session": fmt.Sprint(sb.Session)})
		return err
	})
	_, err := Import(context.Background(), src, dst, rerunOpts)
	if err == nil || !contains(err.Error(), "and it is open there now (session 4): close it there first") {
		t.Fatalf("rerun: %v, want a refusal saying docs is open in the source", err)
	}
}

// TestImportRerunFinishedChanged: a finished import of a source that
// gained a sandbox since imports just that one, with a second bridge; a
// source that changed an imported sandbox since is refused, saying so.
func TestImportRerunFinishedChanged(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		src := importSource(t)
		dst, _ := newStore(t)
		first, err := Import(context.Background(), src, dst, rerunOpts)
		if err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, src, func(tx *Tx) error {
			if err := tx.PutSandbox(&Sandbox{Name: "extra", Image: "base", State: StateClosed}); err != nil {
				return err
			}
			_, err := tx.Append(time.Now(), "sandbox.create", "extra", nil)
			return err
		})
		res, err := Import(context.Background(), src, dst, rerunOpts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Earlier != first.Bridge || res.Resumed || res.Already || res.Events != 1 {
			t.Fatalf("second import: %+v", res)
		}
		checkImported(t, src, dst, 2, 0)
		if res, err := Import(context.Background(), src, dst, rerunOpts); err != nil || !res.Already {
			t.Fatalf("third run: %+v %v", res, err)
		}
		srcClose(t, src, "notes", "/d/late", false)
		_, err = Import(context.Background(), src, dst, rerunOpts)
		if want := fmt.Sprintf("since its import (bridge entry %d): notes was copied as it was at entry 12 of its audit chain", res.Bridge); err == nil || !contains(err.Error(), want) {
			t.Fatalf("rerun: %v, want %q", err, want)
		}
	})
}

// TestImportRerunGone: a sandbox whose copy was interrupted and that the
// source removed since is taken back whole; another root's import of a
// sandbox of the same name waits for the first import.
func TestImportRerunGone(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		src := importSource(t)
		dst := crashWhen(t, src, begun("docs"))
		other := importSource(t)
		o := rerunOpts
		o.Source = "/other"
		_, err := Import(context.Background(), other, dst, o)
		if err == nil || !contains(err.Error(), "sandbox docs is being imported from /src (source host solo) by an unfinished import: rerun that import first") {
			t.Fatalf("another root: %v", err)
		}
		copied, _ := recordIDs(t, dst)
		srcRemove(t, src, "docs")
		if _, err := Import(context.Background(), src, dst, rerunOpts); err != nil {
			t.Fatal(err)
		}
		checkImported(t, src, dst, 1, uint64(len(copied)))
		mustView(t, dst, func(tx *Tx) error {
			ses, err := tx.ListSessions("docs")
			if len(ses) != 0 {
				t.Fatalf("sessions of docs left: %d", len(ses))
			}
			return err
		})
		n := 0
		if err := dst.View(func(tx *Tx) error {
			return tx.ForEachRecord(context.Background(), "docs", func(*Record) error { n++; return nil })
		}); err != nil || n != 0 {
			t.Fatalf("%d records of docs left (%v)", n, err)
		}
	})
}

// TestImportRerunEveryChunk interrupts an import after every chunk in
// turn, then changes a sandbox in the source and reruns, interrupted once
// more early on: a sandbox the first run had finished is refused with
// nothing written; otherwise the last run gives exactly the source's
// content, every record id drawn once.
func TestImportRerunEveryChunk(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		refused := 0
		for k := 1; ; k++ {
			src := importSource(t)
			dst, _ := newStore(t)
			o := rerunOpts
			o.failAfter = k
			_, err := Import(context.Background(), src, dst, o)
			if err == nil {
				if k < 10 || refused == 0 {
					t.Fatalf("an import in %d chunks, %d refusals", k-1, refused)
				}
				break
			}
			if !errors.Is(err, errImportFailpoint) {
				t.Fatalf("k=%d: %v", k, err)
			}
			p := progressOf(t, dst)
			notesDone := p != nil && p.done("notes")
			srcClose(t, src, "notes", "/d/new", true)
			view, events := ledgerView(t, dst), countEvents(t, dst)
			o.failAfter = 2
			_, err = Import(context.Background(), src, dst, o)
			if notesDone {
				var ce *ImportConflictError
				if !errors.As(err, &ce) || ledgerView(t, dst) != view || countEvents(t, dst) != events {
					t.Fatalf("k=%d: notes finished, then changed: %v", k, err)
				}
				refused++
				dst.Close()
				continue
			}
			if !errors.Is(err, errImportFailpoint) {
				t.Fatalf("k=%d: second run: %v", k, err)
			}
			if _, err := Import(context.Background(), src, dst, rerunOpts); err != nil {
				t.Fatalf("k=%d: third run: %v", k, err)
			}
			checkImported(t, src, dst, 1, 0)
			dst.Close()
		}
	})
}
