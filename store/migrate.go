package store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/failpoint"
)

// Migration from schema 1 re-encodes every record (gob to the v2 encoding
// of record_codec.go); migration from schema 2 rewrites the values of the
// current-state index that hold a bare record id into copies of their
// records (current_value.go). Nothing else changes: audit entries hash a
// canonical form of their fields, not their stored bytes, so the chain
// verifies before and after. The steps, each safe to interrupt:
//
//  1. backupName(from): a tar of the store's files, taken with the
//     database closed, written under a temporary name and renamed, unless
//     it exists (Open does this step);
//  2. one transaction: the schema key becomes SchemaVersion (an older
//     spillway now refuses the store with a clear message), keyMigrating
//     holds the id of the next record to convert (from schema 1) and
//     keyCopying says the index is to be rewritten;
//  3. batches of migrateBatchSize records, each converted, decoded again and
//     compared with the original before it is written, the cursor moved in
//     the same transaction;
//  4. the index of every sandbox rewritten in chunks (Store.CopyCurrent);
//  5. verification: every record decodes as v2 and a second pass over
//     the indexes finds nothing to copy; then the keys go and the backup
//     file is removed.
//
// A crash anywhere resumes at the next Open: records are read in both
// encodings and index values both as copies and as bare ids, so a
// half-converted store is consistent.
const (
	keyMigrating = "migrating"
	keyCopying   = "migrating-index"
)

// BackupName is the file in the store directory that keeps the store of
// schema from until its migration is verified.
func BackupName(from int) string { return fmt.Sprintf("migration-v%d.backup", from) }

// migrateBatchSize is how many records one migration transaction converts
// (a variable for tests).
var migrateBatchSize = 4000

// migrateHook, when set by a test, runs after each step ("backup",
// "schema", "batch", "verified") and may return an error to stop there as
// a crash would. Each step is also failpoint "migrate.STEP", where the
// crash tests kill the process for real (migrate_kill_test.go).
var migrateHook func(step string) error

func hook(step string) error {
	failpoint.Hit("migrate." + step)
	if migrateHook != nil {
		return migrateHook(step)
	}
	return nil
}

// migrate brings a store of schema from (1 or 2), or one whose migration
// was interrupted, to SchemaVersion.
func (s *Store) migrate(from int) error {
	start := time.Now()
	if s.notice != nil {
		if from < SchemaVersion {
			s.notice(fmt.Sprintf("migrating the ledger %s from schema %d to %d, once (a large ledger takes minutes; interrupted, the next command goes on)", s.dir, from, SchemaVersion))
		} else {
			s.notice(fmt.Sprintf("finishing the interrupted migration of the ledger %s to schema %d", s.dir, SchemaVersion))
		}
		defer func() {
			if !s.migrating() {
				s.notice(fmt.Sprintf("migrated the ledger %s to schema %d in %s", s.dir, SchemaVersion, time.Since(start).Round(time.Millisecond)))
			}
		}()
	}
	if from < SchemaVersion {
		err := s.Update(func(tx *Tx) error {
			if err := tx.set([]byte(keySchema), []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			if from == 1 {
				if err := tx.set([]byte(keyMigrating), []byte("0")); err != nil {
					return err
				}
			}
			return tx.set([]byte(keyCopying), []byte("1"))
		})
		if err != nil {
			return err
		}
		if err := hook("schema"); err != nil {
			return err
		}
	}
	for {
		done, err := s.migrateBatch()
		if err != nil {
			return fmt.Errorf("store %s: migrate records: %w", s.dir, err)
		}
		if done {
			break
		}
		if err := hook("batch"); err != nil {
			return err
		}
	}
	if err := s.copyIndexes(); err != nil {
		return fmt.Errorf("store %s: copy records into the current-state index: %w", s.dir, err)
	}
	if err := s.verifyRecords(); err != nil {
		return fmt.Errorf("store %s: migration not verified (the old store's backup is kept in %s): %w", s.dir, backupNames, err)
	}
	if err := hook("verified"); err != nil {
		return err
	}
	if err := s.Update(func(tx *Tx) error {
		return errors.Join(tx.del([]byte(keyMigrating)), tx.del([]byte(keyCopying)))
	}); err != nil {
		return err
	}
	if s.db == nil {
		return nil // PostgreSQL: no backup file (back up with pg_dump)
	}
	for from := 1; from < SchemaVersion; from++ {
		if err := os.Remove(filepath.Join(s.dir, BackupName(from))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// backupNames names the backup files in messages.
const backupNames = "migration-v*.backup"

// copyIndexes rewrites every sandbox's index values that hold a bare
// record id (the index of schema 2) as copies, when keyCopying says so.
func (s *Store) copyIndexes() error {
	var sbs []*Sandbox
	copying := false
	err := s.View(func(tx *Tx) error {
		_, ok, err := tx.get([]byte(keyCopying))
		if err != nil || !ok {
			return err
		}
		copying = true
		sbs, err = tx.ListSandboxes()
		return err
	})
	if err != nil || !copying {
		return err
	}
	ctx := context.Background()
	for _, sb := range sbs {
		if _, err := s.CopyCurrent(ctx, sb.Name); err != nil {
			return fmt.Errorf("%s: %w", sb.Name, err)
		}
		if err := hook("index"); err != nil {
			return err
		}
	}
	// Verified: a second pass finds nothing more to copy (a bare id whose
	// record is missing stays, for check to report).
	for _, sb := range sbs {
		if n, err := s.CopyCurrent(ctx, sb.Name); err != nil || n != 0 {
			return fmt.Errorf("%s: %d values still to copy after a full pass (%v)", sb.Name, n, err)
		}
	}
	return nil
}

// backupFiles writes the files of the store directory dir (closed) into
// one tar file, BackupName(from), unless it is there already (a resumed
// migration keeps the first). Restore by extracting it into an empty
// directory. badger's own Backup was tried: 5 s and 500 MiB of buffers
// for a 4 MiB store.
func backupFiles(dir string, from int) error {
	dest := filepath.Join(dir, BackupName(from))
	if _, err := os.Lstat(dest); err == nil {
		return nil
	}
	f, err := atomicfile.Create(dir, BackupName(from)+".tmp-")
	if err != nil {
		return err
	}
	defer f.Cleanup()
	tw := tar.NewWriter(f)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || n == ballastName || n == "LOCK" || strings.HasPrefix(n, "migration-v") {
			continue
		}
		if err := addFile(tw, filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Commit(dest, atomicfile.Replace)
}

// addFile appends the regular file p to tw (opened without following a
// symlink; the store directory holds none).
func addFile(tw *tar.Writer, p string) error {
	src, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}

// migrateBatch converts the next batch of gob records after the cursor and
// says whether none was left.
func (s *Store) migrateBatch() (done bool, err error) {
	err = s.Update(func(tx *Tx) error {
		v, ok, err := tx.get([]byte(keyMigrating))
		if err != nil || !ok {
			done = !ok
			return err
		}
		next, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("bad migration cursor %q", v)
		}
		type kv struct{ k, v []byte }
		var batch []kv
		var last uint64
		err = tx.scanFrom(context.Background(), []byte(pRec), key(pRec, next), true, func(k, v []byte) error {
			batch = append(batch, kv{append([]byte(nil), k...), append([]byte(nil), v...)}) // k and v are valid only during the call
			last, _ = tailUint64(k)
			if len(batch) == migrateBatchSize {
				return ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			done = true
			return nil
		}
		for _, x := range batch {
			if len(x.v) > 0 && x.v[0] == recordV2 {
				continue
			}
			old, err := decodeRecord(x.v)
			if err != nil {
				return fmt.Errorf("record key %x: %w", x.k, err)
			}
			nv, err := encodeRecord(old)
			if err != nil {
				return err
			}
			back, err := decodeRecordV2(nv[1:])
			if err != nil || !reflect.DeepEqual(old, back) {
				return fmt.Errorf("record %d does not survive the new encoding (%v)", old.ID, err)
			}
			if err := tx.set(x.k, nv); err != nil {
				return err
			}
		}
		return tx.set([]byte(keyMigrating), []byte(strconv.FormatUint(last+1, 10)))
	})
	return done, err
}

// verifyRecords checks that every record is in the v2 encoding and decodes.
func (s *Store) verifyRecords() error {
	return s.View(func(tx *Tx) error {
		return tx.scan([]byte(pRec), true, func(k, v []byte) error {
			if len(v) == 0 || v[0] != recordV2 {
				return fmt.Errorf("record key %x is still in the old encoding", k)
			}
			r, err := decodeRecordV2(v[1:])
			if err != nil {
				return err
			}
			if id, _ := tailUint64(k); id != r.ID || !bytes.Equal(k, key(pRec, r.ID)) {
				return fmt.Errorf("record key %x holds record %d", k, r.ID)
			}
			return nil
		})
	})
}
