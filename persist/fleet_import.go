package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/store"
)

// FleetImportOptions are the options of `fleet import`.
type FleetImportOptions struct {
	FromRoot   string // a single-host state directory: its badger store in store/, its blobs in blobs/
	SourceHost string // the host its sessions ran on ("": its host-id file, else this host)
	Chunk      int    // writes per transaction (0: store.DefaultImportChunk)
	Log        func(format string, args ...any)
}

// FleetImport brings a single-host root into this Env's shared ledger
// (store.Import): the source is locked, its audit chains verified, its
// blobs copied into this Env's blob directory (each rehashed) and synced
// before the first ledger write, then its ledger copied in chunks and a
// bridging entry appended to the fleet chain.
func (e *Env) FleetImport(ctx context.Context, o FleetImportOptions) (*store.ImportResult, error) {
	if e.store.Driver() != "postgres" {
		return nil, &InputError{Input: "store", Problem: "is the badger store in --root: fleet import copies into a shared ledger, give --store postgres://… (or SPILLWAY_STORE)"}
	}
	dir, err := filepath.Abs(o.FromRoot)
	if err != nil {
		return nil, err
	}
	if dir == e.root {
		return nil, &InputError{Input: "from-root", Problem: "is this host's own state directory: name the single-host root to import"}
	}
	if fi, err := os.Stat(filepath.Join(dir, "store")); err != nil || !fi.IsDir() {
		if _, err := os.Stat(filepath.Join(dir, hostIDFile)); err == nil {
			return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s is the state directory of a host on a shared ledger (no ledger of its own in it): its sandboxes are in that ledger already; fleet import takes a single-host root", dir)}
		}
		return nil, &InputError{Input: "from-root", Problem: fmt.Sprintf("%s is not a spillway state directory (no store/ in it)", dir)}
	}
	l, err := lock.Acquire(ctx, filepath.Join(dir, "lock"), "fleet import", DefaultLockTimeout, nil)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	defer l.Release()
	src, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		return nil, fmt.Errorf("open the store of %s: %w", dir, err)
	}
	defer src.Close()
	host := o.SourceHost
	if host == "" {
		b, err := readPrivate(filepath.Join(dir, hostIDFile))
		host = strings.TrimSpace(string(b))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if host == "" {
		host = e.hostID
	}
	from := &Blobs{dir: filepath.Join(dir, "blobs")}
	return store.Import(ctx, src, e.store, store.ImportOptions{
		Source: dir, SourceHost: host, Host: e.hostID, Chunk: o.Chunk, Log: o.Log,
		CopyBlob: func(digest string) error { return e.copyBlobFrom(from, digest) },
		Synced:   e.blobs.Sync,
	})
}

// copyBlobFrom copies a blob into e's blob store unless it is there,
// checking that its content hashes to its digest.
func (e *Env) copyBlobFrom(from *Blobs, digest string) error {
	p, err := e.blobs.Path(digest)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	f, err := from.Open(digest)
	if err != nil {
		return err
	}
	defer f.Close()
	got, _, err := e.blobs.Put(f)
	if err != nil {
		return err
	}
	if got != digest {
		return fmt.Errorf("blob %s of the source is corrupt (its content hashes to %s): nothing imported", digest, got)
	}
	return nil
}
