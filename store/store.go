package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/spillway/spillway/internal/errclass"
)

// SchemaVersion is the layout version this package reads and writes.
// Version 2 encodes records compactly (record_codec.go); version 3's
// current-state index holds a copy of each record in effect
// (current_value.go). Open migrates a version 1 or 2 store (migrate.go).
const SchemaVersion = 3

// Store is Spillway's ledger: a badger database in a directory (Open) or
// a PostgreSQL database (OpenURL).
type Store struct {
	be  kvBackend
	db  *badger.DB // the badger driver's database; nil on PostgreSQL
	dir string     // the badger directory, or the PostgreSQL URL without its password
	mu  sync.Mutex // serialises this process's Updates, so they never conflict with each other
	// clock is the ledger's clock for badger (Tx.Now); nil: this host's,
	// in UTC. PostgreSQL transactions use the server's.
	clock func() time.Time
	// auditHost, when set, is the data "host" of every audit entry this
	// Store appends that names none (SetAuditHost).
	auditHost    string
	auditRoot    string      // the writer's state directory (SetAuditHost)
	auditChecked atomic.Bool // the host's row named auditRoot (checkAuditHost)
	// notice is told when a migration starts and ends (WithNotice).
	notice func(string)

	// Parking (park.go): a badger store closes its database between
	// ledger sections so that other processes may open it.
	opts   *badger.Options // the badger driver's options; nil on PostgreSQL
	gate   sync.RWMutex    // held shared by a transaction, exclusively to park or reopen
	parked bool
	enter  func() error // run before a parked store reopens (takes the ledger lock)
}

func (s *Store) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now().UTC()
}

// Open opens (creating if needed) the store in dir with synced writes. It
// fails with ErrLocked when another process holds the directory, with
// ErrNoSpace when its filesystem is full (after freeing the ballast), and
// refuses a store written by a newer schema.
func Open(dir string) (*Store, error) { return openCtx(context.Background(), dir) }

// openCtx is Open with ctx's notice (WithNotice).
func openCtx(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := makeRoom(dir); err != nil {
		return nil, err
	}
	keepBallast(dir)
	opts := badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).
		WithValueLogFileSize(64 << 20).WithMemTableSize(16 << 20).WithBlockCacheSize(blockCacheSize)
	db, err := openBadger(opts)
	if err != nil {
		return nil, translateOpen(dir, err)
	}
	s := &Store{db: db, dir: dir, be: &badgerBackend{db: db, dir: dir}, opts: &opts, notice: noticeOf(ctx)}
	from, err := s.checkSchema()
	if err == nil && (from < SchemaVersion || s.migrating()) {
		err = s.migrateLean(opts, from)
	}
	if err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// blockCacheSize is the badger block cache of a store (badger's default is
// 256 MiB). A spillway process is short-lived and reads most blocks once:
// a larger cache only costs fresh memory to fault in and fill. The full
// persisted ls of a 1,000,000-path state took 3.45 s with 256 MiB (376 MiB
// peak RSS), 2.43 s with 32 MiB (171 MiB), 2.23 s with 8 MiB (116 MiB).
const blockCacheSize = 32 << 20

// openBadger opens the badger database of opts.
func openBadger(opts badger.Options) (*badger.DB, error) {
	db, err := badger.Open(opts)
	if err != nil && (errors.Is(err, z.NewFile) || strings.Contains(err.Error(), z.NewFile.Error())) {
		// A process killed between creating a memtable or value-log file
		// and its first write leaves it empty, and badger's Open then fails
		// once with z.NewFile after sizing the file (badger issue #2207,
		// fixed upstream by skipping empty files). The file holds no data:
		// opening again succeeds and loses nothing.
		db, err = badger.Open(opts)
	}
	return db, err
}

// migrateLean migrates the store (from: its schema version) with the
// database reopened under migrationOptions, then reopens it with opts.
func (s *Store) migrateLean(opts badger.Options, from int) error {
	// Back up the old store's files with the database closed.
	if err := s.db.Close(); err != nil {
		return translate(err)
	}
	if from < SchemaVersion {
		if err := backupFiles(s.dir, from); err != nil {
			return fmt.Errorf("store %s: back up before migrating: %w", s.dir, err)
		}
		if err := hook("backup"); err != nil {
			return err
		}
	}
	if err := s.reopen(migrationOptions(opts)); err != nil {
		return err
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(migrationMemoryLimit))
	if err := s.migrate(from); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return translate(err)
	}
	return s.reopen(opts)
}

// migrationOptions are opts for the migration's own Open: it rewrites
// every record once, and badger's defaults (a 256 MiB block cache, five
// memtables, compaction tables twice as large at every level, each built
// in memory by up to 13 builders at once) then grow the Go heap with the
// store (2.2 GiB for 1,000,000 records). These keep it flat.
func migrationOptions(opts badger.Options) badger.Options {
	o := opts.WithBlockCacheSize(8 << 20).WithNumMemtables(2).WithMemTableSize(8 << 20).
		WithBaseTableSize(1 << 20).WithNumCompactors(2)
	o.TableSizeMultiplier = 1
	return o
}

// migrationMemoryLimit is the Go runtime's soft memory limit while a
// migration runs: decoding gob records makes about 10 KiB of short-lived
// garbage each, which the collector's default pacing lets pile up. At
// 192 MiB two runs of 1,000,000 records peaked at 225 and 264 MiB of heap
// (compaction's table builders hold 70–90 MiB of it): 160 MiB keeps a
// margin under issue 12's 256 MiB.
const migrationMemoryLimit = 160 << 20

// reopen opens the database of s again with opts.
func (s *Store) reopen(opts badger.Options) error {
	db, err := badger.Open(opts)
	if err != nil {
		return translateOpen(s.dir, err)
	}
	s.db, s.be = db, &badgerBackend{db: db, dir: s.dir}
	return nil
}

// checkSchema writes the schema version into a new store and checks it in an
// existing one; it returns the version found.
func (s *Store) checkSchema() (version int, err error) {
	version = SchemaVersion
	err = s.Update(func(tx *Tx) error {
		v, ok, err := tx.get([]byte(keySchema))
		if err != nil {
			return err
		}
		if !ok {
			nonEmpty := false
			if err := tx.scan(nil, false, func(_, _ []byte) error { nonEmpty = true; return ErrStop }); err != nil {
				return err
			}
			if nonEmpty {
				return fmt.Errorf("store %s: no schema version: not a spillway store", s.dir)
			}
			return tx.set([]byte(keySchema), []byte(strconv.Itoa(SchemaVersion)))
		}
		n, err := strconv.Atoi(string(v))
		switch {
		case err != nil || n < 1:
			return fmt.Errorf("store %s: bad schema version %q", s.dir, v)
		case n > SchemaVersion:
			return fmt.Errorf("store %s: schema version %d is newer than this spillway supports (%d); use a newer spillway: %w", s.dir, n, SchemaVersion, ErrNewerSchema)
		}
		version = n
		return nil
	})
	return version, err
}

// migrating says whether a migration was started and not finished.
func (s *Store) migrating() bool {
	var a, b bool
	s.View(func(tx *Tx) error {
		_, a, _ = tx.get([]byte(keyMigrating))
		_, b, _ = tx.get([]byte(keyCopying))
		return nil
	})
	return a || b
}

// Close closes the database.
func (s *Store) Close() error {
	s.gate.Lock()
	defer s.gate.Unlock()
	s.enter = nil // never reopened
	if s.parked {
		return nil
	}
	s.parked = true
	return translate(s.be.close())
}

// Update runs fn in one read-write transaction, committed only if fn
// returns nil. Updates of one Store are serialised; fn must not call Update
// itself. On PostgreSQL fn runs again after a serialization failure, so it
// must not leave effects outside tx that a second run repeats wrongly.
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.update(func(be kvBackend, f func(kvTx) error) error { return be.update(f) }, fn)
}

// update is Update in a transaction that run starts on the backend (read
// once the store is in use: a parked badger store reopens with a new one).
func (s *Store) update(run func(kvBackend, func(kvTx) error) error, fn func(tx *Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	done, err := s.use()
	if err != nil {
		return err
	}
	defer done()
	return translate(run(s.be, func(b kvTx) error {
		tx := &Tx{b: b, s: s} // a retried transaction starts afresh
		if err := fn(tx); err != nil {
			return err
		}
		return tx.settleCounts()
	}))
}

// View runs fn in one read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	done, err := s.use()
	if err != nil {
		return err
	}
	defer done()
	return translate(s.be.view(func(b kvTx) error {
		_, pg := b.(*pgTx)
		return fn(&Tx{b: b, s: s, batchReads: pg})
	}))
}

// GC runs badger's value-log GC until there is nothing left to rewrite and
// returns how many value-log files were rewritten. On PostgreSQL it does
// nothing: autovacuum reclaims the space.
func (s *Store) GC() (reclaimed int, err error) {
	if s.opts == nil {
		return 0, nil
	}
	done, err := s.use()
	if err != nil {
		return 0, err
	}
	defer done()
	for {
		err := s.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) {
			return reclaimed, nil
		}
		if err != nil {
			return reclaimed, fmt.Errorf("store: value-log gc: %w", translate(err))
		}
		reclaimed++
	}
}

// OpenURL opens the ledger that url names: "postgres://…" or
// "postgresql://…" a PostgreSQL database (created and migrated as
// needed), "badger:///PATH" the badger store in PATH, and "" the badger
// store in dir (what Open(dir) opens).
func OpenURL(ctx context.Context, url, dir string) (*Store, error) {
	switch {
	case url == "":
		return openCtx(ctx, dir)
	case strings.HasPrefix(url, "badger://"):
		p := strings.TrimPrefix(url, "badger://")
		if !strings.HasPrefix(p, "/") {
			return nil, errclass.Errorf(errdefs.ErrInvalidArgument, "store URL %q: want badger:///ABSOLUTE/PATH", url)
		}
		return openCtx(ctx, p)
	case isPGURL(url):
		return openPGStore(ctx, url, nil)
	}
	return nil, errclass.Errorf(errdefs.ErrInvalidArgument, "store URL %q: want postgres://…, badger:///PATH or nothing (the badger store in the state directory)", url)
}

// openPGStore opens the PostgreSQL store at url, migrating it as needed;
// pools, when not nil, keeps its connections (Pools).
func openPGStore(ctx context.Context, url string, pools *Pools) (*Store, error) {
	b, err := openPG(ctx, url, pools)
	if err != nil {
		return nil, err
	}
	s := &Store{be: b, dir: b.where(), notice: noticeOf(ctx)}
	if b.keysCurrent {
		return s, nil
	}
	from, err := s.checkSchema()
	if err == nil && (from < SchemaVersion || s.migrating()) {
		if migrationAllowed(ctx) {
			err = s.migrate(from)
		} else {
			err = migrationNeeded(b.where(), "ledger schema", from, SchemaVersion, s.migrating())
		}
	}
	if err != nil {
		b.close()
		return nil, err
	}
	return s, nil
}

// Driver names the store's driver: "badger" or "postgres".
// LedgerID is a shared ledger's random id, drawn in the transaction that
// created its schema: state directories record it, so that a command
// given another ledger's URL is told apart ("" for badger).
func (s *Store) LedgerID() string {
	if pb, ok := s.be.(*pgBackend); ok {
		return pb.ledgerID
	}
	return ""
}

// LedgerCreated says whether this open created the shared ledger's schema
// in an empty database.
func (s *Store) LedgerCreated() bool {
	pb, ok := s.be.(*pgBackend)
	return ok && pb.created
}

func (s *Store) Driver() string {
	if s.opts != nil {
		return "badger"
	}
	return "postgres"
}
