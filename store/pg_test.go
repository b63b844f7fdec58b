package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spillway/spillway/internal/pgtest"
)

// pgStore opens a new PostgreSQL store, and returns its URL too.
func pgStore(t *testing.T) (*Store, string) {
	t.Helper()
	u := pgtest.URL(t)
	s, err := OpenURL(context.Background(), u, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

// terminate ends the server process of the connection that runs tx's
// statements, as a crash or a network failure would, and returns once it
// is gone.
func terminate(t *testing.T, u string, tx *Tx) {
	t.Helper()
	var pid uint32
	if err := tx.b.(*pgTx).tx.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := terminatePID(u, pid); err != nil {
		t.Fatal(err)
	}
}

// terminatePID ends server process pid and waits until it is gone, so
// its connection's next statement always finds it dead.
func terminatePID(u string, pid uint32) error {
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var gone bool
	if err := c.QueryRow(context.Background(), `SELECT pg_terminate_backend($1, 5000)`, pid).Scan(&gone); err != nil || !gone {
		return fmt.Errorf("pg_terminate_backend(%d): %v %v", pid, gone, err)
	}
	return nil
}

// TestPGConcurrentIncrements: processes (here Stores, each with its own
// connections) updating one key at once all get in: a serialization
// failure re-runs the whole transaction, so no increment is lost.
func TestPGConcurrentIncrements(t *testing.T) {
	_, u := pgStore(t)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		s, err := OpenURL(context.Background(), u, "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(func(tx *Tx) error {
					v, _, err := tx.GetMeta("n")
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(v)
					return tx.PutMeta("n", strconv.Itoa(n+1))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := OpenURL(context.Background(), u, "")
	defer s.Close()
	s.View(func(tx *Tx) error {
		if v, _, err := tx.GetMeta("n"); err != nil || v != strconv.Itoa(writers*each) {
			t.Errorf("n = %q (%v), want %d", v, err, writers*each)
		}
		return nil
	})
}

// TestPGCountersHaveNoHotRow: concurrent transactions drawing record ids
// never conflict on the counter (a sequence) and never share an id.
func TestPGCountersHaveNoHotRow(t *testing.T) {
	s, u := pgStore(t)
	s2, err := OpenURL(context.Background(), u, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// Two transactions open at once, each drawing ids and writing a key
	// of its own: under SERIALIZABLE a counter row would make one fail.
	started, release := make(chan struct{}), make(chan struct{})
	var ids [2][]uint64
	var wg sync.WaitGroup
	for i, st := range []*Store{s, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs := 0
			err := st.Update(func(tx *Tx) error {
				runs++
				ids[i] = ids[i][:0]
				for j := 0; j < 3; j++ {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					ids[i] = append(ids[i], id)
				}
				if runs == 1 {
					started <- struct{}{}
					<-release
				}
				return tx.PutMeta("w"+strconv.Itoa(i), "x")
			})
			if err != nil || runs != 1 {
				t.Errorf("writer %d: %v after %d runs", i, err, runs)
			}
		}()
	}
	<-started
	<-started
	close(release)
	wg.Wait()
	seen := map[uint64]bool{}
	for _, l := range ids {
		for _, id := range l {
			if seen[id] || id == 0 {
				t.Errorf("id %d twice: %v", id, ids)
			}
			seen[id] = true
		}
	}
}

// TestPGConnectionLostBeforeCommit: a connection lost in the middle of a
// transaction wrote nothing, so the transaction runs again on another.
func TestPGConnectionLostBeforeCommit(t *testing.T) {
	s, u := pgStore(t)
	runs := 0
	err := s.Update(func(tx *Tx) error {
		runs++
		if err := tx.PutMeta("k", "v"); err != nil {
			return err
		}
		if runs == 1 {
			terminate(t, u, tx)
		}
		_, _, err := tx.GetMeta("other")
		return err
	})
	if err != nil || runs != 2 {
		t.Fatalf("Update: %v after %d runs, want success after 2", err, runs)
	}
	mustView(t, s, func(tx *Tx) error {
		if v, ok, err := tx.GetMeta("k"); v != "v" || !ok || err != nil {
			t.Errorf("k = %q %v %v", v, ok, err)
		}
		return nil
	})
}

// TestPGConnectionLostDuringCommit: when the connection goes while COMMIT
// runs, the store does not guess: ErrCommitUnknown, not retried; the
// caller reads the state again (here: not committed, the server died
// first). A deferred trigger keeps the COMMIT running for two seconds,
// and the server process is ended half a second after the batch with
// the writes and COMMIT goes out: its statements are prepared and sent
// by then, so the loss always falls in the COMMIT.
func TestPGConnectionLostDuringCommit(t *testing.T) {
	s, u := pgStore(t)
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), `CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT OR UPDATE ON kv DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit()`); err != nil {
		t.Fatal(err)
	}
	runs := 0
	var victim *Tx
	var wg sync.WaitGroup
	pgCommitHook = func() {
		var pid uint32
		if err := victim.b.(*pgTx).tx.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Error(err)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(500 * time.Millisecond)
			if err := terminatePID(u, pid); err != nil {
				t.Error(err)
			}
		}()
	}
	defer func() { pgCommitHook = nil }()
	err = s.Update(func(tx *Tx) error {
		runs++
		victim = tx
		return tx.PutMeta("k", "v")
	})
	pgCommitHook = nil
	wg.Wait()
	if !errors.Is(err, ErrCommitUnknown) || !errdefs.IsUnknown(err) || runs != 1 {
		t.Fatalf("Update: %v after %d runs, want ErrCommitUnknown after 1", err, runs)
	}
	mustView(t, s, func(tx *Tx) error {
		if _, ok, err := tx.GetMeta("k"); ok || err != nil {
			t.Errorf("k present (%v) after a commit the server never finished", err)
		}
		return nil
	})
}

// TestPGSchemaVersions: the SQL schema is recorded; a database of a newer
// spillway is refused; opening twice at once creates it once.
func TestPGSchemaVersions(t *testing.T) {
	u := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenURL(context.Background(), u, "")
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent first opens: %v", err)
		}
	}
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var v int
	if err := c.QueryRow(context.Background(), `SELECT version FROM spillway_schema`).Scan(&v); err != nil || v != PGSchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", v, err, PGSchemaVersion)
	}
	if _, err := c.Exec(context.Background(), `UPDATE spillway_schema SET version = $1`, PGSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenURL(context.Background(), u, ""); err == nil || !strings.Contains(err.Error(), "newer than this spillway") {
		t.Fatalf("newer SQL schema: %v", err)
	}
}

// TestOpenURLForms: "" and badger:///PATH open badger; other URLs are
// refused; a PostgreSQL server that cannot be reached is ErrUnavailable.
func TestOpenURLForms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenURL(ctx, "", dir)
	if err != nil || s.Driver() != "badger" {
		t.Fatalf("empty URL: %v", err)
	}
	s.Close()
	other := t.TempDir()
	s, err = OpenURL(ctx, "badger://"+other, dir)
	if err != nil || s.Driver() != "badger" || s.dir != other {
		t.Fatalf("badger URL: %v", err)
	}
	s.Close()
	for _, u := range []string{"badger://relative", "mysql://x", "/abs/path"} {
		if _, err := OpenURL(ctx, u, dir); err == nil || !strings.Contains(err.Error(), "store URL") {
			t.Errorf("%s: %v", u, err)
		}
	}
	_, err = OpenURL(ctx, "postgres://nobody:secret@/x?host="+t.TempDir()+"&connect_timeout=2", "")
	if !errors.Is(err, ErrUnavailable) || !errdefs.IsUnavailable(err) || strings.Contains(err.Error(), "secret") {
		t.Errorf("unreachable server: %v", err)
	}
}

// countingQuerier counts the round trips sent through it.
type countingQuerier struct {
	pgQuerier
	n int
}

func (c *countingQuerier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n++
	return c.pgQuerier.Exec(ctx, sql, args...)
}

func (c *countingQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n++
	return c.pgQuerier.Query(ctx, sql, args...)
}

func (c *countingQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n++
	return c.pgQuerier.QueryRow(ctx, sql, args...)
}

func (c *countingQuerier) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	c.n++
	return c.pgQuerier.SendBatch(ctx, b)
}

// TestPGLeasedRoundTrips: a session's write finds what it reads (its
// sandbox, its last session, its audit chain's head, the server's clock)
// in the round trip that began it and locked the lease, and sends its
// writes with COMMIT: past BEGIN's round trip, a commit that appends an
// audit entry makes two in UpdateLeased (the entry's number, then writes
// and COMMIT) and one in UpdateLeasedAudited, which draws the number with
// the lock.
func TestPGLeasedRoundTrips(t *testing.T) {
	s, _ := pgStore(t)
	var token uint64
	mustUpdate(t, s, func(tx *Tx) error {
		return tx.PutSandbox(&Sandbox{Name: "docs", Image: "base", Created: tx.Now(), State: StateClosed})
	})
	if err := s.UpdateLeaseTaker("docs", func(tx *Tx) error {
		if _, err := tx.Heartbeat("h1", time.Minute); err != nil {
			return err
		}
		l, _, err := tx.TakeLease("docs", "h1")
		token = l.Token
		return err
	}); err != nil {
		t.Fatal(err)
	}
	open := func(tx *Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb.Session++
		sb.State = StateOpen
		if err := tx.PutSession(&Session{Sandbox: "docs", N: sb.Session, State: StateOpen, Opened: tx.Now(), Host: "h1", Token: token}); err != nil {
			return err
		}
		return tx.PutSandbox(sb)
	}
	if err := s.UpdateLeased("docs", "h1", token, open); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		update func(string, string, uint64, func(*Tx) error) error
		want   int
	}{{"UpdateLeased", s.UpdateLeased, 2}, {"UpdateLeasedAudited", s.UpdateLeasedAudited, 1}} {
		var cq *countingQuerier
		err := c.update("docs", "h1", token, func(tx *Tx) error {
			pt := tx.b.(*pgTx)
			cq = &countingQuerier{pgQuerier: pt.tx}
			pt.tx = cq
			sb, err := tx.GetSandbox("docs")
			if err != nil {
				return err
			}
			ses, err := tx.GetSession("docs", sb.Session)
			if err != nil {
				return err
			}
			ses.State = StateClosing
			if err := tx.PutSession(ses); err != nil {
				return err
			}
			_, err = tx.Append(tx.Now(), "sandbox.close", "docs", nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if cq.n != c.want {
			t.Errorf("%s: a commit made %d round trips past BEGIN's, want %d", c.name, cq.n, c.want)
		}
	}
	mustView(t, s, func(tx *Tx) error {
		if ses, err := tx.GetSession("docs", 1); err != nil || ses.State != StateClosing {
			t.Errorf("session 1: %+v %v, want closing", ses, err)
		}
		return nil
	})
	var seqs []uint64
	err := s.ForEachEvent(context.Background(), "docs", func(e *Event) error {
		if e.Type == "sandbox.close" {
			seqs = append(seqs, e.Seq)
		}
		return nil
	})
	if err != nil || len(seqs) != 2 || seqs[1] <= seqs[0] {
		t.Errorf("audit entries %v (%v), want two, numbered in order", seqs, err)
	}
}
