package persist

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spillway/spillway/store"
)

// FleetInitReport says what `fleet init` found and did.
type FleetInitReport struct {
	Driver        string `json:"driver"`         // "postgres"
	SQLSchema     int    `json:"sql_schema"`     // store.PGSchemaVersion
	LedgerSchema  int    `json:"ledger_schema"`  // store.SchemaVersion
	Host          string `json:"host"`           // this host, recorded in the ledger
	Hosts         int    `json:"hosts"`          // hosts the ledger knows, this one included
	Blobs         string `json:"blobs"`          // the blob directory
	BlobsShared   bool   `json:"blobs_shared"`   // --blobs names it (not the root's own)
	BlobsWritable bool   `json:"blobs_writable"` // a file was written and removed there
}

// FleetInit prepares a shared ledger: opening the Env already created or
// migrated its schema; FleetInit records this host (a heartbeat) and
// checks the blob directory is writable. Running it again changes
// nothing but the heartbeat. Without --blobs it warns (Options.Warn) that
// the blobs stay in this root, where other hosts cannot read them.
func (e *Env) FleetInit() (*FleetInitReport, error) {
	if e.store.Driver() != "postgres" {
		return nil, &InputError{Input: "store", Problem: "is the badger store in --root, which needs no init (it is created at first use): fleet init prepares a shared ledger, give --store postgres://… (or SPILLWAY_STORE)"}
	}
	if err := e.Heartbeat(e.hostTTL); err != nil {
		return nil, err
	}
	// A root made before blobs-dir or ledger-id were recorded records
	// them now.
	if err := e.recordBlobsDir(); err != nil {
		return nil, err
	}
	if err := e.recordLedgerIDAtInit(); err != nil {
		return nil, err
	}
	r := &FleetInitReport{Driver: e.store.Driver(), SQLSchema: store.PGSchemaVersion, LedgerSchema: store.SchemaVersion, Host: e.hostID, Blobs: e.blobs.dir, BlobsShared: e.blobsShared}
	err := e.store.View(func(tx *store.Tx) error {
		hosts, err := tx.ListHosts()
		r.Hosts = len(hosts)
		return err
	})
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(e.blobs.dir, "tmp"), fleetInitTempPrefix)
	if err != nil {
		return nil, fmt.Errorf("the blob directory %s is not writable: %w", e.blobs.dir, err)
	}
	name := f.Name()
	_, werr := f.WriteString("spillway fleet init\n")
	cerr := f.Close()
	rerr := os.Remove(name)
	for _, err := range []error{werr, cerr, rerr} {
		if err != nil {
			return nil, fmt.Errorf("the blob directory %s is not writable: %w", e.blobs.dir, err)
		}
	}
	r.BlobsWritable = true
	if !e.blobsShared {
		// Legitimate for a single host on PostgreSQL, so a warning: but
		// a close on this host keeps its blobs where no other host reads.
		e.warnf("%s", localBlobsWarning(e.blobs.dir))
	}
	return r, nil
}

// localBlobsWarning says what a shared ledger with a host's own blob
// directory means.
func localBlobsWarning(dir string) string {
	return fmt.Sprintf("warning: the blobs are not shared: they stay in this host's %s, so other hosts of the ledger will not be able to open the sandboxes this host closes (blob … is missing from the content store); give every host the same --blobs dir:///shared/path (or SPILLWAY_BLOBS), a directory they all mount", dir)
}

// AllowLedgerMigration returns a context under which OpenEnv migrates a
// shared ledger whose schema is older than this spillway's (fleet init);
// without it such a ledger is refused (store.ErrMigrationNeeded).
func AllowLedgerMigration(ctx context.Context) context.Context { return store.AllowMigration(ctx) }
