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

	"github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spillway/spillway/internal/errclass"
)

// pgBackend is the PostgreSQL driver: the whole key space in one table,
// kv(k bytea PRIMARY KEY, v bytea NOT NULL), read and written with plain
// SQL (pgschema.go creates it). Read-write transactions are SERIALIZABLE
// and re-run on a serialization failure; read-only ones are REPEATABLE
// READ: one snapshot, and they commit nothing a conflict could spoil.
type pgBackend struct {
	pool *pgxpool.Pool
	name string // the URL without its password
	// ledgerID is the ledger's random id, drawn with its schema (SQL
	// schema 4): which ledger a database holds (Store.LedgerID).
	ledgerID string
	created  bool // this open created the schema: the database was empty
	// snapPool serves the read transactions that import a writer's
	// snapshot (pgTx.before): a pool of their own, so that writers
	// waiting for a second connection never starve each other.
	snapPool *pgxpool.Pool
	// keysCurrent: at open the keys and values were at SchemaVersion with
	// no migration under way (pgState).
	keysCurrent bool
	// kept: the pools belong to a Pools, which closes them.
	kept bool
}

// pgRetries is how many times a transaction is run again after a
// serialization failure, a deadlock or a connection lost before commit.
const pgRetries = 20

// pgPage is the most rows one scan query reads; the first query of a scan
// reads fewer, since many scans stop at their first key.
const pgPage = 1024

// openPG opens the PostgreSQL store at rawURL: its connections are kept
// in pools when pools is not nil (Pools), else the backend's own.
func openPG(ctx context.Context, rawURL string, pools *Pools) (*pgBackend, error) {
	name := redactURL(rawURL)
	newPools := func() (*pgPools, error) { return newPGPools(rawURL, name) }
	var pp *pgPools
	var err error
	if pools != nil {
		pp, err = pools.get(rawURL, newPools)
	} else {
		pp, err = newPools()
	}
	if err != nil {
		return nil, err
	}
	b := &pgBackend{pool: pp.pool, name: name, snapPool: pp.snapPool, kept: pools != nil}
	state, err := pgOpenState(ctx, b.pool) // also connects
	if err != nil && b.kept {
		// A kept connection may have died since its last use (the server
		// restarted): drop every kept one and try once more on a new one.
		b.pool.Reset()
		b.snapPool.Reset()
		state, err = pgOpenState(ctx, b.pool)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("store %s: %w", name, pgConnErr(err))
	}
	b.keysCurrent = state.keysCurrent
	if state.sqlCurrent {
		b.ledgerID = state.ledgerID
		return b, nil
	}
	created, err := migratePG(ctx, b.pool)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("store %s: %w", name, err)
	}
	b.created = created
	if err := b.pool.QueryRow(ctx, `SELECT ledger_id FROM spillway_schema`).Scan(&b.ledgerID); err != nil {
		b.close()
		return nil, fmt.Errorf("store %s: %w", name, pgErr(err))
	}
	return b, nil
}

// newPGPools makes the two pools of a backend for rawURL (name: without
// its password). They connect at first use.
func newPGPools(rawURL, name string) (*pgPools, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, errclass.Errorf(errdefs.ErrInvalidArgument, "store: bad PostgreSQL URL: %w", err)
	}
	_, jitSet := cfg.ConnConfig.RuntimeParams["jit"]
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		useByteaArrayCodec(c.TypeMap())
		if jitSet {
			return nil
		}
		return jitOff(ctx, c)
	}
	cfg.ConnConfig.Tracer = pgTestTracer
	// The pools may outlive the open that made them (Pools): no request's
	// context goes into them.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w: %w", name, ErrUnavailable, err)
	}
	snapPool, err := pgxpool.NewWithConfig(context.Background(), cfg.Copy())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store %s: %w: %w", name, ErrUnavailable, err)
	}
	return &pgPools{pool: pool, snapPool: snapPool}, nil
}

// jitOff turns JIT compilation off for a new connection. The ledger's
// statements are short, but a batched read's estimate can pass
// jit_above_cost, and the first JIT compilation in a connection loads
// LLVM: about 80 ms here, a whole `review ls SANDBOX` taking 215 ms
// instead of 100. A SET, not a startup parameter: PgBouncer refuses
// startup parameters it does not know. A server without the setting
// (its error) is left as it is; a URL that sets jit keeps its own.
func jitOff(ctx context.Context, c *pgx.Conn) error {
	_, err := c.Exec(ctx, `SET jit = off`, pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return nil
	}
	return err
}

// redactURL returns u without its password.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "postgres://…"
	}
	return p.Redacted()
}

// close closes the backend's pools, unless a Pools keeps them.
func (b *pgBackend) close() error {
	if !b.kept {
		b.pool.Close()
		b.snapPool.Close()
	}
	return nil
}

func (b *pgBackend) where() string { return b.name }

func (b *pgBackend) update(fn func(kvTx) error) error {
	return pgRetry(func() error { return b.once(pgx.TxOptions{IsoLevel: pgx.Serializable}, nil, fn) })
}

// updateLocked runs fn at REPEATABLE READ after reading l's row FOR
// SHARE, or FOR UPDATE when exclusive (Store.UpdateLeased and
// Store.UpdateLeaseTaker say why that is enough): it takes no predicate
// locks, and the lease it reads cannot change before it ends.
func (b *pgBackend) updateLocked(l txLock, fn func(kvTx) error) error {
	return pgRetry(func() error { return b.once(pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, &l, fn) })
}

func (b *pgBackend) view(fn func(kvTx) error) error {
	return pgRetry(func() error {
		return b.once(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, nil, fn)
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

// pgTestTracer, when a test sets it, traces the statements of the stores
// opened after (to count round trips).
var pgTestTracer pgx.QueryTracer

// pgCommitHook, when a test sets it, runs right before COMMIT is sent.
var pgCommitHook func()

// once runs fn in one transaction with opts on a connection of the pool.
// BEGIN goes in one round trip with the transaction's first reads (now(),
// and l's row and the rows it names when l is set: pgTx.begin), COMMIT in
// one with its last writes (pgTx.commit).
func (b *pgBackend) once(opts pgx.TxOptions, l *txLock, fn func(kvTx) error) error {
	ctx := context.Background()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return pgErr(err)
	}
	t := &pgTx{tx: conn, b: b, iso: opts.IsoLevel}
	defer func() {
		// A transaction left open (fn or a statement failed) is rolled
		// back; a connection that cannot is closed by Release.
		if pc := conn.Conn().PgConn(); !pc.IsClosed() && !pc.IsBusy() && pc.TxStatus() != 'I' {
			conn.Exec(ctx, "ROLLBACK")
		}
		conn.Release()
	}()
	if err := t.begin(ctx, opts, l); err != nil {
		return err
	}
	if err := fn(t); err != nil {
		if t.failed != nil && !errors.Is(err, t.failed) {
			// fn went on after a statement failed; what failed first
			// decides whether a retry may help.
			return fmt.Errorf("%w (then: %v)", t.failed, err)
		}
		return err
	}
	return t.commit(ctx)
}

// begin sends BEGIN, reads now(), and with l locks its row and reads the
// rows l names, in one round trip; what it reads is remembered.
func (t *pgTx) begin(ctx context.Context, opts pgx.TxOptions, l *txLock) error {
	batch := &pgx.Batch{}
	batch.Queue(beginSQL(opts))
	batch.Queue(`SELECT now()`)
	if l != nil {
		q := `SELECT v FROM kv WHERE k = $1 FOR SHARE`
		if l.exclusive {
			// Two takers that both held the row shared would deadlock
			// when each then wrote it.
			q = `SELECT v FROM kv WHERE k = $1 FOR UPDATE`
		}
		batch.Queue(q, l.key)
		if len(l.prefetch) > 0 {
			batch.Queue(`SELECT k, v FROM kv WHERE k = ANY($1::bytea[])`, l.prefetch)
		}
		for _, p := range l.lastOf {
			batch.Queue(`SELECT k, v FROM kv WHERE k >= $1 AND k < $2 ORDER BY k DESC LIMIT 1`, p, prefixEnd(p))
		}
		for _, name := range l.draw {
			seq, err := counterSequence(name)
			if err != nil {
				return err
			}
			batch.Queue(`SELECT nextval($1::regclass)`, seq)
		}
	}
	br := t.tx.SendBatch(ctx, batch)
	err := t.readBegin(br, l)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = t.fail(cerr)
	}
	return err
}

// readBegin reads the results of begin's batch.
func (t *pgTx) readBegin(br pgx.BatchResults, l *txLock) error {
	if _, err := br.Exec(); err != nil {
		return t.fail(err)
	}
	var now time.Time
	if err := br.QueryRow().Scan(&now); err != nil {
		return t.fail(err)
	}
	t.at = now.UTC()
	if l == nil {
		return nil
	}
	var v []byte
	switch err := br.QueryRow().Scan(&v); {
	case errors.Is(err, pgx.ErrNoRows):
		t.remember(string(l.key), nil)
	case err != nil:
		return t.fail(err)
	default:
		t.remember(string(l.key), v)
	}
	if len(l.prefetch) > 0 {
		for _, k := range l.prefetch {
			t.remember(string(k), nil)
		}
		if err := t.readRows(br); err != nil {
			return err
		}
	}
	for range l.lastOf {
		if err := t.readRows(br); err != nil {
			return err
		}
	}
	for _, name := range l.draw {
		var n int64
		if err := br.QueryRow().Scan(&n); err != nil {
			return t.fail(err)
		}
		if t.drawn == nil {
			t.drawn = map[string][]uint64{}
		}
		t.drawn[name] = append(t.drawn[name], uint64(n))
	}
	return nil
}

// readRows remembers the rows (k, v) of the batch's next result.
func (t *pgTx) readRows(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return t.fail(err)
	}
	return t.rememberRows(rows)
}

// rememberRows remembers the rows (k, v) of a result.
func (t *pgTx) rememberRows(rows pgx.Rows) error {
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return t.fail(err)
		}
		t.remember(string(k), v)
	}
	if err := rows.Err(); err != nil {
		return t.fail(err)
	}
	return nil
}

// beginSQL is the BEGIN statement of opts.
func beginSQL(opts pgx.TxOptions) string {
	q := "BEGIN ISOLATION LEVEL " + strings.ToUpper(string(opts.IsoLevel))
	if opts.AccessMode != "" {
		q += " " + strings.ToUpper(string(opts.AccessMode))
	}
	return q
}

// commit sends the pending writes and COMMIT in one round trip. Past the
// point where COMMIT may have reached the server, a lost connection is
// ErrCommitUnknown: the server may have made the commit durable.
func (t *pgTx) commit(ctx context.Context) error {
	batch := &pgx.Batch{}
	writes := t.queueFlush(batch)
	batch.Queue("COMMIT")
	if pgCommitHook != nil {
		pgCommitHook()
	}
	br := t.tx.SendBatch(ctx, batch)
	err := t.readCommit(br, writes)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && severity(pe) == "ERROR" {
		// The server answered and lives on: a write or COMMIT failed,
		// and what followed was skipped: rolled back (e.g. 40001).
		return t.fail(err)
	}
	if pgconn.SafeToRetry(err) {
		return t.fail(err) // nothing was sent
	}
	// No answer, or the session's end (FATAL, PANIC).
	return fmt.Errorf("store: %w: %w", ErrCommitUnknown, err)
}

// readCommit reads the results of commit's batch: writes statements and
// COMMIT.
func (t *pgTx) readCommit(br pgx.BatchResults, writes int) error {
	for range writes {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		// COMMIT of a transaction that had failed answers ROLLBACK.
		return fmt.Errorf("store: the transaction was rolled back at COMMIT (%s)", tag)
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

// pgErr classes an error of a statement: a connection the server refused
// for good (refusedCode) is ErrRefused; one without a server's answer
// (connection refused, lost, timed out) or ending the session (FATAL,
// e.g. 57P01 when the server shuts down) is ErrUnavailable.
func pgErr(err error) error {
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrNewerSchema), errors.Is(err, ErrMigrationNeeded): // no retry helps
		return err
	case errors.As(err, &ce), errors.As(err, &pe) && refusedCode(pe.Code) && severity(pe) == "FATAL":
		return fmt.Errorf("store: %w", pgConnErr(err))
	case errors.As(err, &pe) && (pe.Code == "42P05" || pe.Code == "26000") && strings.Contains(pe.Message, "stmtcache_"):
		// The statements pgx prepared on its connection went missing or
		// appeared twice: its server connection changed between
		// transactions, as behind a pooler in transaction mode.
		return fmt.Errorf("%w (behind a connection pooler in transaction mode, such as PgBouncer's pool_mode = transaction, add default_query_exec_mode=exec to the store URL; docs/fleet.md)", err)
	case errors.As(err, &pe) && severity(pe) != "FATAL" && severity(pe) != "PANIC":
		return err
	}
	return fmt.Errorf("store: %w: %w", ErrUnavailable, err)
}

// refusedCode says whether a server's answer to a connection is one that
// no retry cures: invalid authorization (class 28: a wrong password, no
// pg_hba.conf entry), no such database, or no right to connect.
func refusedCode(code string) bool {
	return strings.HasPrefix(code, "28") || code == "3D000" || code == "42501"
}

// pgConnErr classes the error of a connection attempt, in one line: the
// server's refusal (refusedCode) as ErrRefused, with its message; any
// other failure as ErrUnavailable, with each address's failure once
// (pgx's own message takes a line per attempt, and tries each address
// twice under sslmode=prefer).
func pgConnErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && refusedCode(pe.Code) {
		return &connError{class: ErrRefused, detail: pe.Message + " (SQLSTATE " + pe.Code + ")", err: err}
	}
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return &connError{class: ErrUnavailable, detail: oneLine(err.Error()), err: err}
	}
	var parts []string
	seen := map[string]bool{}
	var add func(error)
	add = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(e)
			}
			return
		}
		if m := oneLine(e.Error()); !seen[m] {
			seen[m] = true
			parts = append(parts, m)
		}
	}
	if inner := errors.Unwrap(ce); inner != nil {
		add(inner)
	} else {
		add(ce)
	}
	return &connError{class: ErrUnavailable, detail: strings.Join(parts, "; "), err: err}
}

// oneLine is s with its line breaks and the tabs after them as "; ".
func oneLine(s string) string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return strings.Join(f, "; ")
}

// connError is a failed connection attempt, said as its class and a
// one-line detail; it matches its class and the driver's error.
type connError struct {
	class  error // ErrRefused or ErrUnavailable
	detail string
	err    error
}

func (e *connError) Error() string   { return e.class.Error() + ": " + e.detail }
func (e *connError) Unwrap() []error { return []error{e.class, e.err} }

// severity is pe's severity, not translated.
func severity(pe *pgconn.PgError) string {
	if pe.SeverityUnlocalized != "" {
		return pe.SeverityUnlocalized
	}
	return pe.Severity
}

// pgQuerier is what a pgTx sends its statements through: the pool's
// connection its BEGIN was sent on, or a pgx.Tx (before's snapshot reads).
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pgTx is one PostgreSQL transaction.
type pgTx struct {
	tx     pgQuerier
	b      *pgBackend
	failed error // the first statement error: PostgreSQL aborts the transaction there
	// pending holds the writes not yet sent, the last per key (nil: a
	// delete); a get answers from it, a scan and the commit send it first.
	pending map[string][]byte
	// created holds the pending keys create wrote and nothing else has
	// since: they are sent with a plain INSERT, not an upsert.
	created map[string]bool
	// read holds what get read (nil: absent) and the writes sent: the
	// snapshot does not change, so a key is read once.
	read map[string][]byte
	iso  pgx.TxIsoLevel
	sent bool // some writes were sent: the database no longer shows the snapshot alone
	// hold keeps the pending writes from being sent while a view of
	// before reads through this transaction (it would see them).
	hold bool
	at   time.Time // the server's now() of the transaction (begin)
	// root is the transaction a view without the pending writes reads
	// through (before); nil for the transaction itself.
	root *pgTx
	// drawn holds counter values begin drew that next has not handed out.
	drawn map[string][]uint64
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

// now is the server's clock: the start of the transaction, read by begin
// (a retried transaction reads it again); before's views share it.
func (t *pgTx) now() time.Time { return t.at }

// before reads what this transaction saw, without its own writes,
// whatever committed since: while none of its writes were sent, through
// this transaction without the pending ones (no round trip of its own);
// after, in a read-only transaction that imports this one's snapshot
// (pg_export_snapshot).
func (t *pgTx) before(fn func(kvTx) error) error {
	if !t.sent && t.root == nil {
		t.hold = true
		defer func() { t.hold = false }()
		return fn(&pgTx{tx: t.tx, b: t.b, root: t, at: t.at})
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
	return fn(&pgTx{tx: rtx, b: t.b, at: t.at})
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
	if v == nil {
		v = []byte{} // nil is a delete
	}
	t.pending[string(k)] = v // kept, not copied (kvTx.set)
	delete(t.created, string(k))
	return nil
}

func (t *pgTx) create(k, v []byte) error {
	_, pending := t.pending[string(k)]
	if sent, ok := t.read[string(k)]; pending || ok && sent != nil {
		return t.set(k, v) // written in this transaction already
	}
	if err := t.set(k, v); err != nil {
		return err
	}
	if t.created == nil {
		t.created = map[string]bool{}
	}
	t.created[string(k)] = true
	return nil
}

func (t *pgTx) del(k []byte) error {
	if t.pending == nil {
		t.pending = map[string][]byte{}
	}
	t.pending[string(k)] = nil
	delete(t.created, string(k))
	return nil
}

// flush sends the pending writes (writeStatements), in the transaction.
func (t *pgTx) flush(ctx context.Context) error {
	for _, st := range t.writeStatements() {
		if _, err := t.tx.Exec(ctx, st.sql, st.args...); err != nil {
			return t.fail(err)
		}
	}
	t.sent = true
	for k, v := range t.pending {
		if _, ok := t.read[k]; ok {
			t.remember(k, v)
		}
	}
	clear(t.pending)
	clear(t.created)
	return nil
}

// queueFlush queues the pending writes' statements in batch and returns
// how many it queued.
func (t *pgTx) queueFlush(batch *pgx.Batch) int {
	sts := t.writeStatements()
	for _, st := range sts {
		batch.Queue(st.sql, st.args...)
	}
	return len(sts)
}

// pgStatement is one statement and its arguments.
type pgStatement struct {
	sql  string
	args []any
}

// writeStatements are the statements that write the pending writes:
// upserts through unnest and deletes through = ANY in key order
// (concurrent writers lock rows in one order), a chunk of keys per
// statement; the keys create wrote go in plain INSERTs, unsorted (sorting
// a close's 400 of them was 4 % of its client CPU). Most hold ids this
// transaction drew; the others (current-state versions read as absent)
// are a sandbox's, which its lease keeps to one writer, and two writers
// without it that insert the same keys in other orders deadlock, which
// PostgreSQL breaks and the driver retries.
func (t *pgTx) writeStatements() []pgStatement {
	if len(t.pending) == 0 {
		return nil
	}
	keys := make([]string, 0, len(t.pending))
	var created []string
	for k := range t.pending {
		if t.created[k] {
			created = append(created, k)
		} else {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = append(created, keys...)
	var out []pgStatement
	nc, ns := min(len(created), pgFlushChunk), min(len(keys)-len(created), pgFlushChunk)
	ck, cv := make([][]byte, 0, nc), make([][]byte, 0, nc)
	var sk, sv, dk [][]byte
	if ns > 0 {
		sk, sv, dk = make([][]byte, 0, ns), make([][]byte, 0, ns), make([][]byte, 0, ns)
	}
	send := func(force bool) {
		if len(ck) > 0 && (force || len(ck) == pgFlushChunk) {
			out = append(out, pgStatement{`INSERT INTO kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])`, []any{ck, cv}})
			ck, cv = nil, nil
		}
		if len(sk) > 0 && (force || len(sk) == pgFlushChunk) {
			out = append(out, pgStatement{`INSERT INTO kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, []any{sk, sv}})
			sk, sv = nil, nil
		}
		if len(dk) > 0 && (force || len(dk) == pgFlushChunk) {
			out = append(out, pgStatement{`DELETE FROM kv WHERE k = ANY($1::bytea[])`, []any{dk}})
			dk = nil
		}
	}
	for _, k := range keys {
		if v := t.pending[k]; t.created[k] {
			ck, cv = append(ck, []byte(k)), append(cv, v)
		} else if v != nil {
			sk, sv = append(sk, []byte(k)), append(sv, v)
		} else {
			dk = append(dk, []byte(k))
		}
		send(false)
	}
	send(true)
	return out
}

// next draws from the counter's sequence (pgschema.go): no hot row for
// concurrent closes to conflict on; a rolled-back transaction leaves a gap.
func (t *pgTx) next(name string) (uint64, error) {
	if d := t.drawn[name]; len(d) > 0 {
		t.drawn[name] = d[1:]
		return d[0], nil
	}
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
