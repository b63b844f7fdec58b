package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// forEachDriver runs fn as one subtest per driver, "badger" and
// "postgres"; newStore in it opens a new store of that driver.
func forEachDriver(t *testing.T, fn func(t *testing.T)) {
	for _, d := range []string{"badger", "postgres"} {
		t.Run(d, fn)
	}
}

// driverOf says which driver t (a forEachDriver subtest or one of its own
// subtests) runs on.
func driverOf(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	for _, p := range parts[1:] {
		if p == "postgres" {
			return "postgres"
		}
	}
	return "badger"
}

// openStore opens the store at where: a badger directory or a PostgreSQL URL.
func openStore(t *testing.T, where string) *Store {
	t.Helper()
	open := func() (*Store, error) { return OpenURL(context.Background(), where, "") }
	if strings.HasPrefix(where, "/") {
		open = func() (*Store, error) { return Open(where) }
	}
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newStore opens a new, empty store of t's driver and returns it with
// where it is (for reopen).
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	if driverOf(t) == "postgres" {
		dir = pgtest.URL(t)
	}
	s := openStore(t, dir)
	if s.Driver() != driverOf(t) {
		t.Fatalf("store driver %s, want %s", s.Driver(), driverOf(t))
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func reopen(t *testing.T, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	t.Cleanup(func() { s2.Close() })
	return s2
}

func mustUpdate(t *testing.T, s *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func mustView(t *testing.T, s *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatal(err)
	}
}

// hostile names: newline, ESC, invalid UTF-8.
var hostile = []string{"a\nb", "x\x1b[2Jy", "bad\xff\xfeutf8", "ok"}

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)

func TestRoundTripEveryKind(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, dir := newStore(t)
		var images []*Image
		var sandboxes []*Sandbox
		var sessions []*Session
		var excs []*exceptions.Exception
		var recs []*Record
		mustUpdate(t, s, func(tx *Tx) error {
			if err := tx.PutMeta("snapshotter", "overlayfs"); err != nil {
				return err
			}
			for i, name := range hostile {
				// Image and sandbox rows hold valid names only (a row with
				// another name is refused when read: TestRowNamesChecked);
				// the hostile names go into the keys of the other kinds.
				im := &Image{Name: fmt.Sprintf("img%d", i), Snapshot: "img/" + name, Files: int64(i), Bytes: 10, Created: t0, Dir: "/d\xff"}
				sb := &Sandbox{Name: fmt.Sprintf("sb%d", i), Image: im.Name, Created: t0, State: StateOpen, Session: 2, Generation: 3, Path: "/p\n" + name}
				images, sandboxes = append(images, im), append(sandboxes, sb)
				if err := tx.PutImage(im); err != nil {
					return err
				}
				if err := tx.PutSandbox(sb); err != nil {
					return err
				}
				for n := uint64(1); n <= 2; n++ {
					se := &Session{Sandbox: name, N: n, State: StateClosed, Opened: t0, Closed: t0.Add(time.Hour), Summary: []byte(`{"x":1}`)}
					sessions = append(sessions, se)
					if err := tx.PutSession(se); err != nil {
						return err
					}
				}
				id, err := tx.NextExceptionID()
				if err != nil {
					return err
				}
				ex := &exceptions.Exception{ID: id, Sandbox: name, Patterns: []string{"/home/" + name + "/**"}, Reason: "r\x1b", Created: t0, Review: change.ReviewAfter, Limits: exceptions.DefaultLimits}
				excs = append(excs, ex)
				if err := tx.PutException(ex); err != nil {
					return err
				}
				rid, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: rid, Sandbox: name, Session: 1, Path: "/home/" + name + "/f\n\xff", Kind: change.KindAdd, Type: "file", Size: 5, Mode: 0o644,
					Mtime: t0, Digest: "sha256:00", Exception: id, Review: "after", Status: change.StatusPending, Created: t0}
				recs = append(recs, r)
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			_, err := tx.Append(time.Now(), "test", hostile[0], map[string]string{"path": hostile[2]})
			return err
		})
		s = reopen(t, s, dir)
		mustView(t, s, func(tx *Tx) error {
			if v, ok, err := tx.GetMeta("snapshotter"); err != nil || !ok || v != "overlayfs" {
				t.Errorf("meta: %q %v %v", v, ok, err)
			}
			if _, ok, _ := tx.GetMeta("nope"); ok {
				t.Error("missing meta found")
			}
			for i, name := range hostile {
				im, err := tx.GetImage(images[i].Name)
				check(t, err, im, images[i])
				sb, err := tx.GetSandbox(sandboxes[i].Name)
				check(t, err, sb, sandboxes[i])
				ss, err := tx.ListSessions(name)
				check(t, err, ss, sessions[2*i:2*i+2])
				se, err := tx.GetSession(name, 2)
				check(t, err, se, sessions[2*i+1])
				ex, err := tx.GetException(excs[i].ID)
				check(t, err, ex, excs[i])
				exs, err := tx.ListExceptions(name)
				check(t, err, exs, excs[i:i+1])
				r, err := tx.GetRecord(recs[i].ID)
				check(t, err, r, recs[i])
				h, err := tx.PathHistory(name, recs[i].Path)
				check(t, err, h, recs[i:i+1])
			}
			ims, err := tx.ListImages()
			if err != nil || len(ims) != len(hostile) {
				t.Fatalf("ListImages: %d %v", len(ims), err)
			}
			for i := 1; i < len(ims); i++ {
				if ims[i-1].Name >= ims[i].Name {
					t.Errorf("images not sorted: %q %q", ims[i-1].Name, ims[i].Name)
				}
			}
			sbs, err := tx.ListSandboxes()
			if err != nil || len(sbs) != len(hostile) {
				t.Fatalf("ListSandboxes: %d %v", len(sbs), err)
			}
			all, err := tx.ListExceptions("")
			check(t, err, all, excs)
			var n int
			if err := tx.ForEachRecord(context.Background(), "", func(r *Record) error { n++; return nil }); err != nil || n != len(hostile) {
				t.Errorf("ForEachRecord all: %d %v", n, err)
			}
			return nil
		})
		var evs []*Event
		if err := s.ForEachEvent(context.Background(), hostile[0], func(e *Event) error { evs = append(evs, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Data["path"] != hostile[2] || evs[0].Sandbox != hostile[0] || evs[0].Seq != 1 || evs[0].User == "" {
			t.Errorf("events: %+v", evs)
		}
		if err := s.ForEachEvent(context.Background(), "other", func(e *Event) error { t.Error("unexpected event"); return nil }); err != nil {
			t.Fatal(err)
		}
		// counters persist across reopen
		mustUpdate(t, s, func(tx *Tx) error {
			id, err := tx.NextExceptionID()
			if id != fmt.Sprintf("ex%d", len(hostile)+1) {
				t.Errorf("next exception id %q", id)
			}
			rid, _ := tx.NextRecordID()
			if rid != uint64(len(hostile)+1) {
				t.Errorf("next record id %d", rid)
			}
			return err
		})
	})
}

func check(t *testing.T, err error, got, want any) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestNotFoundAndDelete(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		mustUpdate(t, s, func(tx *Tx) error {
			if _, err := tx.GetSandbox("x\n"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `sandbox "x\n"`) {
				t.Errorf("GetSandbox: %v", err)
			}
			for _, err := range []error{
				func() error { _, err := tx.GetImage("x"); return err }(),
				func() error { _, err := tx.GetSession("x", 1); return err }(),
				func() error { _, err := tx.GetException("ex9"); return err }(),
				func() error { _, err := tx.GetException("bogus"); return err }(),
				func() error { _, err := tx.GetRecord(9); return err }(),
				tx.DeleteImage("x"), tx.DeleteSandbox("x"), tx.DeleteRecord(9),
			} {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("want ErrNotFound, got %v", err)
				}
			}
			if err := tx.PutImage(&Image{Name: "a"}); err != nil {
				return err
			}
			if err := tx.PutSandbox(&Sandbox{Name: "a"}); err != nil {
				return err
			}
			if err := tx.DeleteImage("a"); err != nil {
				return err
			}
			if err := tx.DeleteSandbox("a"); err != nil {
				return err
			}
			if _, err := tx.GetImage("a"); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted image: %v", err)
			}
			if err := tx.PutSandbox(&Sandbox{Name: "a\x00b"}); err == nil {
				t.Error("NUL name accepted")
			}
			return nil
		})
	})
}

func TestUpdateRollsBackOnError(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		boom := errors.New("boom")
		err := s.Update(func(tx *Tx) error {
			if err := tx.PutImage(&Image{Name: "a"}); err != nil {
				return err
			}
			_, err := tx.Append(time.Now(), "x", "", nil)
			if err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		mustView(t, s, func(tx *Tx) error {
			if _, err := tx.GetImage("a"); !errors.Is(err, ErrNotFound) {
				t.Errorf("rolled-back image present: %v", err)
			}
			return nil
		})
	})
}

func TestExceptionOrder(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		mustUpdate(t, s, func(tx *Tx) error {
			for i := 0; i < 12; i++ {
				id, err := tx.NextExceptionID()
				if err != nil {
					return err
				}
				if err := tx.PutException(&exceptions.Exception{ID: id, Sandbox: []string{"a", "b"}[i%2]}); err != nil {
					return err
				}
			}
			return nil
		})
		mustView(t, s, func(tx *Tx) error {
			all, err := tx.ListExceptions("")
			if err != nil {
				return err
			}
			var ids []string
			for _, e := range all {
				ids = append(ids, e.ID)
			}
			if strings.Join(ids, ",") != "ex1,ex2,ex3,ex4,ex5,ex6,ex7,ex8,ex9,ex10,ex11,ex12" {
				t.Errorf("order: %v", ids)
			}
			b, err := tx.ListExceptions("b")
			if err != nil || len(b) != 6 || b[5].ID != "ex12" || b[0].ID != "ex2" {
				t.Errorf("ListExceptions(b): %v %v", b, err)
			}
			return nil
		})
	})
}

func TestSchemaAndLock(t *testing.T) {
	s, dir := newStore(t)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if err := s.RawDB().Update(func(txn *badger.Txn) error { return txn.Set([]byte(keySchema), []byte(strconv.Itoa(SchemaVersion+1))) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: %v", err)
	}
	// The failed open released the directory.
	s2 := openStoreRaw(t, dir)
	s2.Close()
}

// openStoreRaw opens dir with plain badger to check it is not locked.
func openStoreRaw(t *testing.T, dir string) *badger.DB {
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestTooBig(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		big := strings.Repeat("x", 512<<10)
		err := s.Update(func(tx *Tx) error {
			for i := 0; i < 64; i++ {
				if err := tx.PutMeta(fmt.Sprint("k", i), big); err != nil {
					return err
				}
			}
			return nil
		})
		// badger refuses a transaction over about 10 MB; PostgreSQL has
		// no such limit and commits it.
		if want := map[string]error{"badger": ErrTooBig, "postgres": nil}[driverOf(t)]; !errors.Is(err, want) {
			t.Fatalf("want %v, got %v", want, err)
		}
		if _, err := s.GC(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSandboxNames: the names from the keys alone are ListSandboxes' names,
// in the same order, on both drivers.
func TestSandboxNames(t *testing.T) { forEachDriver(t, testSandboxNames) }

func testSandboxNames(t *testing.T) {
	s, _ := newStore(t)
	want := []string{"a", "b-1", "docs", "docs.2", "z_z"}
	mustUpdate(t, s, func(tx *Tx) error {
		for _, n := range []string{"docs.2", "a", "z_z", "docs", "b-1"} {
			if err := tx.PutSandbox(&Sandbox{Name: n, Image: "base", State: StateClosed}); err != nil {
				return err
			}
		}
		return tx.PutMeta("s", "not a sandbox") // a neighbouring key of another kind
	})
	mustView(t, s, func(tx *Tx) error {
		names, err := tx.SandboxNames()
		if err != nil {
			return err
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		var listed []string
		for _, sb := range sbs {
			listed = append(listed, sb.Name)
		}
		if !slices.Equal(names, want) || !slices.Equal(listed, want) {
			t.Errorf("SandboxNames %q, ListSandboxes %q, want %q", names, listed, want)
		}
		return nil
	})
}
