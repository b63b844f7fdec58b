package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgBackend is the PostgreSQL driver: the whole key space in one table,
// kv(k bytea PRIMARY KEY, v bytea NOT NULL), read and written with plain
// SQL (pgschema.go creates it). Read-write transactions are SERIALIZABLE
// and re-run on a serialization failure; read-only ones are REPEATABLE
// READ: one snapshot, and they commit nothing a conflict could spoil.
type pgBackend struct {
	pool *pgxpool.Pool
	name string // the URL without its password
	// snapPool serves the read transactions that import a writer's
	// snapshot (pgTx.before): a pool of their own, so that writers
	// waiting for a second connection never starve each other.
	snapPool *pgxpool.Pool
}

// pgRetries is how many times a transaction is run again after a
// serialization failure, a deadlock or a connection lost before commit.
const pgRetries = 20

// pgPage is the most rows one scan query reads; the first query of a scan
// reads fewer, since many scans stop at their first key.
const pgPage = 1024

func openPG(ctx context.Context, rawURL string) (*pgBackend, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: bad PostgreSQL URL: %w", err)
	}
	name := redactURL(rawURL)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w: %w", name, ErrUnavailable, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store %s: %w: %w", name, ErrUnavailable, err)
	}
	snapPool, err := pgxpool.NewWithConfig(ctx, cfg.Copy())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store %s: %w: %w", name, ErrUnavailable, err)
	}
	b := &pgBackend{pool: pool, name: name, snapPool: snapPool}
	if err := migratePG(ctx, pool); err != nil {
		b.close()
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	return b, nil
}

// redactURL returns u without its password.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "postgres://…"
	}
	return p.Redacted()
}

func (b *pgBackend) close() error  { b.pool.Close(); b.snapPool.Close(); return nil }
func (b *pgBackend) where() string { return b.name }

func (b *pgBackend) update(fn func(kvTx) error) error {
	return pgRetry(func() error { return b.once(pgx.TxOptions{IsoLevel: pgx.Serializable}, fn) })
}

// updateLocked runs fn at REPEATABLE READ after reading lock's row FOR
// SHARE, or FOR UPDATE when exclusive (Store.UpdateLeased and
// Store.UpdateLeaseTaker say why that is enough): it takes no predicate
// locks, and the lease it reads cannot change before it ends.
func (b *pgBackend) updateLocked(lock []byte, exclusive bool, fn func(kvTx) error) error {
	q := `SELECT v FROM kv WHERE k = $1 FOR SHARE`
	if exclusive {
		// Two takers that both held the row shared would deadlock when
		// each then wrote it.
		q = `SELECT v FROM kv WHERE k = $1 FOR UPDATE`
	}
	return pgRetry(func() error {
		return b.once(pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(t kvTx) error {
			pt := t.(*pgTx)
			var v []byte
			err := pt.tx.QueryRow(context.Background(), q, lock).Scan(&v)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				pt.remember(string(lock), nil)
			case err != nil:
				return pt.fail(err)
			default:
				pt.remember(string(lock), v)
			}
			return fn(t)
		})
	})
}

func (b *pgBackend) view(fn func(kvTx) error) error {
	return pgRetry(func() error {
		return b.once(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	})
}

// pgRetry runs once until it succeeds, fails for good, or has been retried
// pgRetries times, sleeping a growing, jittered pause between runs.
func pgRetry(once func() error) error {
	pause := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := once()
		if err == nil || !pgRetryable(err) {
			return err
		}
		if attempt == pgRetries {
			if isSerialization(err) {
				return fmt.Errorf("store: %w after %d attempts: %w", ErrConflict, attempt+1, err)
			}
			return err
		}
		time.Sleep(pause/2 + rand.N(pause))
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// pgCommitHook, when a test sets it, runs right before COMMIT is sent.
var pgCommitHook func()

// once runs fn in one transaction with opts.
func (b *pgBackend) once(opts pgx.TxOptions, fn func(kvTx) error) error {
	ctx := context.Background()
	tx, err := b.pool.BeginTx(ctx, opts)
	if err != nil {
		return pgErr(err)
	}
	defer tx.Rollback(ctx)
	t := &pgTx{tx: tx, b: b, iso: opts.IsoLevel}
	if err := fn(t); err != nil {
		if t.failed != nil && !errors.Is(err, t.failed) {
			// fn went on after a statement failed; what failed first
			// decides whether a retry may help.
			return fmt.Errorf("%w (then: %v)", t.failed, err)
		}
		return err
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if pgCommitHook != nil {
		pgCommitHook()
	}
	if err := tx.Commit(ctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && severity(pe) == "ERROR" {
			return err // the server answered and lives on: rolled back (e.g. 40001)
		}
		// No answer, or the session's end (FATAL, PANIC): the server may
		// have made the commit durable before it ended the session.
		return fmt.Errorf("store: %w: %w", ErrCommitUnknown, err)
	}
	return nil
}

// isSerialization says whether err is a serialization failure or deadlock.
func isSerialization(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// pgRetryable says whether running the transaction again is safe and may
// succeed: a serialization failure or a deadlock (nothing was written), or
// a connection lost before COMMIT was sent.
func pgRetryable(err error) bool {
	return isSerialization(err) || (errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrCommitUnknown))
}

// pgErr classes an error of a statement: one without a server's answer
// (connection refused, lost, timed out) or ending the session (FATAL,
// e.g. 57P01 when the server shuts down) is ErrUnavailable.
func pgErr(err error) error {
	var pe *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &pe) && severity(pe) != "FATAL" && severity(pe) != "PANIC":
		return err
	}
	return fmt.Errorf("store: %w: %w", ErrUnavailable, err)
}

// severity is pe's severity, not translated.
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}

// pgTx is one PostgreSQL transaction.
type pgTx struct {
	tx     pgx.Tx
	b      *pgBackend
	failed error // the first statement error: PostgreSQL aborts the transaction there
	// pending holds the writes not yet sent, the last per key (nil: a
	// delete); a get answers from it, a scan and the commit send it first.
	pending map[string][]byte
	// read holds what get read (nil: absent) and the writes sent: the
	// snapshot does not change, so a key is read once.
	read map[string][]byte
	iso  pgx.TxIsoLevel
	sent bool      // some writes were sent: the database no longer shows the snapshot alone
	at   time.Time // now(), once read
	// root is the transaction a view without the pending writes reads
	// through (before); nil for the transaction itself.
	root *pgTx
}

// pgFlushChunk is how many keys one statement of flush writes at most.
const pgFlushChunk = 4096

// fail records err, the error of a statement, classed by pgErr.
func (t *pgTx) fail(err error) error {
	if t.root != nil {
		return t.root.fail(err)
	}
	err = pgErr(err)
	if err != nil && t.failed == nil {
		t.failed = err
	}
	return err
}

// now is the server's clock: the start of the transaction (a retried
// transaction reads it again). If the query fails the transaction is
// failed and never commits; the host's clock stands in for its reads.
func (t *pgTx) now() time.Time {
	if !t.at.IsZero() {
		return t.at
	}
	var now time.Time
	if err := t.tx.QueryRow(context.Background(), `SELECT now()`).Scan(&now); err != nil {
		t.fail(err)
		return time.Now().UTC()
	}
	t.at = now.UTC()
	return t.at
}

// before reads what this transaction saw, without its own writes,
// whatever committed since: while none of its writes were sent, through
// this transaction without the pending ones (no round trip of its own);
// after, in a read-only transaction that imports this one's snapshot
// (pg_export_snapshot).
func (t *pgTx) before(fn func(kvTx) error) error {
	if !t.sent && t.root == nil {
		return fn(&pgTx{tx: t.tx, b: t.b, root: t})
	}
	ctx := context.Background()
	var snap string
	if err := t.tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snap); err != nil {
		return t.fail(err)
	}
	// A snapshot imports into a transaction of the same isolation only.
	rtx, err := t.b.snapPool.BeginTx(ctx, pgx.TxOptions{IsoLevel: t.iso, AccessMode: pgx.ReadOnly})
	if err != nil {
		return pgErr(err)
	}
	defer rtx.Rollback(ctx)
	// A snapshot id is hex digits and dashes; it cannot be a parameter.
	if _, err := rtx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(snap, "'", "")+"'"); err != nil {
		return pgErr(err)
	}
	return fn(&pgTx{tx: rtx, b: t.b})
}

func (t *pgTx) get(k []byte) ([]byte, bool, error) {
	if v, ok := t.pending[string(k)]; ok {
		return bytes.Clone(v), v != nil, nil
	}
	if v, ok := t.read[string(k)]; ok {
		return bytes.Clone(v), v != nil, nil
	}
	var v []byte
	err := t.tx.QueryRow(context.Background(), `SELECT v FROM kv WHERE k = $1`, k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		t.remember(string(k), nil)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, t.fail(err)
	}
	t.remember(string(k), v)
	return bytes.Clone(v), true, nil
}

// remember notes what the database holds at k for this transaction
// (nil: nothing).
func (t *pgTx) remember(k string, v []byte) {
	if t.read == nil {
		t.read = map[string][]byte{}
	}
	t.read[k] = v
}

func (t *pgTx) set(k, v []byte) error {
	if t.pending == nil {
		t.pending = map[string][]byte{}
	}
	t.pending[string(k)] = append([]byte{}, v...) // never nil: nil is a delete
	return nil
}

func (t *pgTx) del(k []byte) error {
	if t.pending == nil {
		t.pending = map[string][]byte{}
	}
	t.pending[string(k)] = nil
	return nil
}

// flush sends the pending writes, in key order (concurrent writers lock
// rows in one order): upserts through unnest, deletes through = ANY, a
// chunk of keys per statement.
func (t *pgTx) flush(ctx context.Context) error {
	if len(t.pending) == 0 {
		return nil
	}
	keys := make([]string, 0, len(t.pending))
	for k := range t.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sk, sv, dk [][]byte
	send := func(force bool) error {
		if len(sk) > 0 && (force || len(sk) == pgFlushChunk) {
			if _, err := t.tx.Exec(ctx, `INSERT INTO kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, sk, sv); err != nil {
				return t.fail(err)
			}
			sk, sv = sk[:0], sv[:0]
		}
		if len(dk) > 0 && (force || len(dk) == pgFlushChunk) {
			if _, err := t.tx.Exec(ctx, `DELETE FROM kv WHERE k = ANY($1::bytea[])`, dk); err != nil {
				return t.fail(err)
			}
			dk = dk[:0]
		}
		return nil
	}
	for _, k := range keys {
		if v := t.pending[k]; v != nil {
			sk, sv = append(sk, []byte(k)), append(sv, v)
		} else {
			dk = append(dk, []byte(k))
		}
		if err := send(false); err != nil {
			return err
		}
	}
	if err := send(true); err != nil {
		return err
	}
	t.sent = true
	for k, v := range t.pending {
		if _, ok := t.read[k]; ok {
			t.remember(k, v)
		}
	}
	clear(t.pending)
	return nil
}

// next draws from the counter's sequence (pgschema.go): no hot row for
// concurrent closes to conflict on; a rolled-back transaction leaves a gap.
func (t *pgTx) next(name string) (uint64, error) {
	seq, err := counterSequence(name)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := t.tx.QueryRow(context.Background(), `SELECT nextval($1::regclass)`, seq).Scan(&n); err != nil {
		return 0, t.fail(err)
	}
	return uint64(n), nil
}

// counterSequence names the sequence of a counter; only the counters the
// schema creates have one.
func counterSequence(name string) (string, error) {
	for _, c := range pgCounters {
		if c == name {
			return "spillway_ctr_" + name, nil
		}
	}
	return "", fmt.Errorf("store: no sequence for counter %q (add it to pgCounters and a schema migration)", strings.ToValidUTF8(name, "?"))
}
