package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
)

// importSource builds a single-host ledger: two sandboxes, exceptions,
// sessions, records (some pending, some decided), their current state at
// generation 2 and an audit chain.
func importSource(t *testing.T) *Store {
	t.Helper()
	src := openStore(t, t.TempDir())
	t.Cleanup(func() { src.Close() })
	now := time.Now().UTC()
	mustUpdate(t, src, func(tx *Tx) error {
		if err := tx.PutImage(&Image{Name: "base", Snapshot: "img/base", Files: 3, Bytes: 30}); err != nil {
			return err
		}
		for _, sb := range []string{"docs", "notes"} {
			if err := tx.PutSandbox(&Sandbox{Name: sb, Image: "base", State: StateClosed, Session: 2, Generation: 2}); err != nil {
				return err
			}
			if _, err := tx.Append(now, "sandbox.create", sb, map[string]string{"image": "base"}); err != nil {
				return err
			}
			id, err := tx.NextExceptionID()
			if err != nil {
				return err
			}
			if err := tx.PutException(&exceptions.Exception{ID: id, Sandbox: sb, Patterns: []string{"/d/**"}, Reason: "r"}); err != nil {
				return err
			}
			for n := uint64(1); n <= 2; n++ {
				if err := tx.PutSession(&Session{Sandbox: sb, N: n, State: StateClosed, Generation: n - 1, ClosedGeneration: n}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for _, sb := range []string{"docs", "notes"} {
		for i := 0; i < 11; i++ {
			mustUpdate(t, src, func(tx *Tx) error {
				xs, err := tx.ListExceptions(sb)
				if err != nil {
					return err
				}
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: id, Sandbox: sb, Session: uint64(1 + i%2), Path: fmt.Sprintf("/d/f%d", i%8), Kind: change.KindAdd, Type: change.TypeFile,
					Size: int64(i), Digest: fmt.Sprintf("sha256:%064x", id), Exception: xs[0].ID, Status: change.StatusApproved}
				if i%3 == 0 {
					r.Status = change.StatusPending
				}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
				if err := tx.PutCurrent(sb, r.Path, 2, id); err != nil {
					return err
				}
				_, err = tx.Append(now, "sandbox.close", sb, map[string]string{"record": fmt.Sprint(id)})
				return err
			})
		}
	}
	return src
}

// ledgerView is what an import must carry over, with record and exception
// ids replaced by what they name.
func ledgerView(t *testing.T, s *Store) string {
	t.Helper()
	var out []string
	mustView(t, s, func(tx *Tx) error {
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			c, err := tx.CountsAt(sb.Name, sb.Generation)
			if err != nil {
				return err
			}
			pend, err := tx.PendingCount(sb.Name)
			if err != nil {
				return err
			}
			ses, err := tx.ListSessions(sb.Name)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%s gen %d sessions %d counts %v pending %d", sb.Name, sb.Generation, len(ses), c, pend))
			err = tx.ForEachCurrentAt(context.Background(), sb.Name, sb.Generation, func(path string, id uint64) error {
				r, err := tx.GetRecord(id)
				if err != nil {
					return err
				}
				x, err := tx.GetException(r.Exception)
				if err != nil {
					return err
				}
				out = append(out, fmt.Sprintf("  %s %s %s %s %v", path, r.Digest, r.Status, x.Sandbox, x.Patterns))
				return nil
			})
			if err != nil {
				return err
			}
			n := 0
			if err := tx.ForEachRecord(context.Background(), sb.Name, func(*Record) error { n++; return nil }); err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("  %d records", n))
		}
		return nil
	})
	sort.Strings(out)
	return fmt.Sprint(out)
}

func countEvents(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.ForEachEvent(context.Background(), "", func(*Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportResume interrupts an import after every chunk in turn: until
// it is finished no half-imported sandbox is listed, and a rerun always
// finishes it into exactly the source's content, with the audit log
// intact; one more run is a no-op.
func TestImportResume(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		src := importSource(t)
		want := ledgerView(t, src)
		events := countEvents(t, src)
		blobs := map[string]bool{}
		o := ImportOptions{Source: "/src", SourceHost: "solo", Host: "h1", Chunk: 4,
			CopyBlob: func(d string, _ int64) error { blobs[d] = true; return nil }}
		for k := 1; ; k++ {
			dst, _ := newStore(t)
			o.failAfter = k
			_, err := Import(context.Background(), src, dst, o)
			if err == nil {
				if k < 10 {
					t.Fatalf("an import in %d chunks: the failpoint is not reached", k-1)
				}
				break
			}
			if !errors.Is(err, errImportFailpoint) {
				t.Fatalf("k=%d: %v", k, err)
			}
			mustView(t, dst, func(tx *Tx) error {
				sbs, err := tx.ListSandboxes()
				for _, sb := range sbs {
					c, err := tx.CountsAt(sb.Name, sb.Generation)
					if err != nil || c.Files != 8 {
						t.Fatalf("k=%d: sandbox %s listed half imported: %v %v", k, sb.Name, c, err)
					}
				}
				return err
			})
			o.failAfter = 0
			res, err := Import(context.Background(), src, dst, o)
			if err != nil {
				t.Fatalf("k=%d: rerun: %v", k, err)
			}
			if res.Already || !res.Resumed {
				t.Fatalf("k=%d: rerun: already %v resumed %v", k, res.Already, res.Resumed)
			}
			if got := ledgerView(t, dst); got != want {
				t.Fatalf("k=%d: imported\n%s\nwant\n%s", k, got, want)
			}
			if p, err := dst.VerifyAudit(context.Background()); err != nil || p != nil {
				t.Fatalf("k=%d: audit: %v %v", k, p, err)
			}
			if n := countEvents(t, dst); n != events+1 {
				t.Fatalf("k=%d: %d audit entries, want %d", k, n, events+1)
			}
			res, err = Import(context.Background(), src, dst, o)
			if err != nil || !res.Already {
				t.Fatalf("k=%d: third run: %+v %v", k, res, err)
			}
			dst.Close()
		}
		if len(blobs) != 22 {
			t.Fatalf("%d blobs copied, want 22", len(blobs))
		}
	})
}

// TestImportRefusals: a broken source chain, an open sandbox, a sandbox
// or image of the same name with other content: refused, nothing written.
func TestImportRefusals(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		dst, _ := newStore(t)
		mustUpdate(t, dst, func(tx *Tx) error { return tx.PutSandbox(&Sandbox{Name: "mine", Image: "base"}) })
		empty := ledgerView(t, dst)
		try := func(what string, src *Store, msg string) {
			t.Helper()
			copied := 0
			_, err := Import(context.Background(), src, dst, ImportOptions{CopyBlob: func(string, int64) error { copied++; return nil }})
			if err == nil || !contains(err.Error(), msg) {
				t.Fatalf("%s: %v, want %q", what, err, msg)
			}
			if copied != 0 || ledgerView(t, dst) != empty || countEvents(t, dst) != 0 {
				t.Fatalf("%s: written: %d blobs, %s", what, copied, ledgerView(t, dst))
			}
		}
		src := importSource(t)
		raw(t, src, func(tx *Tx) error {
			e := rawEvent(t, tx, 3)
			e.Data["image"] = "forged"
			rawPutEvent(t, tx, 3, e)
			return nil
		})
		try("tampered", src, "the source's audit log is broken (entry 3")

		src = importSource(t)
		mustUpdate(t, src, func(tx *Tx) error {
			return tx.PutSandbox(&Sandbox{Name: "docs", Image: "base", State: StateOpen, Session: 3, Generation: 2})
		})
		try("open", src, "sandbox docs is open in the source (session 3)")

		src = importSource(t)
		mustUpdate(t, src, func(tx *Tx) error { return tx.PutSandbox(&Sandbox{Name: "mine", Image: "base", State: StateClosed}) })
		try("conflict", src, "sandbox mine is already in the ledger")

		src = importSource(t)
		mustUpdate(t, dst, func(tx *Tx) error { return tx.PutImage(&Image{Name: "base", Files: 4, Bytes: 30}) })
		empty = ledgerView(t, dst)
		try("image", src, "image base is already in the ledger with other content")

		// the same counts, another tree digest
		src = importSource(t)
		var img *Image
		mustUpdate(t, src, func(tx *Tx) (err error) {
			if img, err = tx.GetImage("base"); err != nil {
				return err
			}
			img.Digest = "sha256:" + strings.Repeat("1", 64)
			return tx.PutImage(img)
		})
		same := *img
		same.Digest = "sha256:" + strings.Repeat("2", 64)
		mustUpdate(t, dst, func(tx *Tx) error { return tx.PutImage(&same) })
		empty = ledgerView(t, dst)
		try("image digest", src, "image base is already in the ledger with other content (its tree digests to sha256:222")
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
