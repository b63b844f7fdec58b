package failpoint

// Names lists every failpoint with the step it follows. Each boundary of
// docs/crash-safety.md has one.
var Names = map[string]string{
	// close
	"close.marked-closing":    "the session is marked closing in the store",
	"close.unmounted":         "the root is unmounted",
	"close.records-cleared":   "staged records of an earlier try of this close are deleted",
	"close.parked":            "the close let go of the ledger to read the changes (each time, before a batch)",
	"close.blob-stored":       "one persisted file's blob is fsynced and renamed into place",
	"close.batch-staged":      "one batch of records is committed (not in effect yet)",
	"close.committed":         "the session is closed and generation G+1 current, with its audit entry",
	"close.recovery-moved":    "what close did not persist is moved into the recovery area (overlay: the upper directory renamed)",
	"close.root-removed":      "the session's root snapshot is removed",
	"close.cleaned":           "older layers and leftovers of the sandbox are removed",
	"close.retention-applied": "the sandbox's retention dropped what it no longer keeps of the recovery area",
	// recovery area
	"retention.session-removed": "one session of the recovery area is renamed into trash",
	"recover.batch":             "one batch of restored records (500 at most) and its new generation are committed",
	"recover.committed":         "restored records and their new generation are committed",
	// open
	"open.layer-prepared":  "the build snapshot of a persisted layer is prepared",
	"open.layer-written":   "the persisted state is written into the build snapshot and unmounted",
	"open.layer-committed": "the persisted layer is committed",
	"open.delta-prepared":  "the build snapshot of a delta layer is prepared on the last built layer",
	"open.delta-written":   "the changed paths are written into the delta's build snapshot and unmounted",
	"open.delta-committed": "the delta layer is committed (not yet recorded as the last built layer)",
	"open.root-prepared":   "the session root snapshot is prepared",
	"open.mounted":         "the session root is mounted",
	"open.committed":       "the sandbox is open in the store, with its audit entry",
	// image import and removal
	"import.parked":             "the import let go of the ledger to fill the image snapshot",
	"import.snapshot-committed": "the image snapshot is committed",
	"import.committed":          "the image is in the store, with its audit entry",
	"image-rm.committed":        "the image is gone from the store",
	// sandbox removal
	"rm.unmounted": "the root of a force-removed sandbox is unmounted",
	"rm.committed": "the sandbox is gone from the store, with its audit entry",
	"rm.pruned":    "a removed sandbox's snapshots and recovery sessions are gone; its records are not yet",
	// exception revoke --purge
	"purge.batch":     "one batch of purged records and its new generation are committed",
	"purge.committed": "purged records and the new generation are committed",
	// review decisions
	"review.committed": "one review decision and its new generation are committed",
	// store migration (store/migrate.go)
	"migrate.backup":   "the tar backup of the schema 1 or 2 store is written and renamed",
	"migrate.schema":   "the schema key says 3 and the migration markers are set",
	"migrate.batch":    "one batch of records is re-encoded, with the cursor moved",
	"migrate.index":    "one sandbox's current-state index holds copies of its records",
	"migrate.verified": "every record decodes as v2, every index value is a copy (the markers and backup still there)",
	// fleet import (store/import.go)
	"fleet-import.chunk": "one chunk of a fleet import is about to be written (each time): the chunks before it are committed",
	// gc
	"gc.blob-removed":     "one unreferenced blob is removed",
	"gc.snapshot-removed": "one stray snapshot is removed",
	"gc.committed":        "the gc audit entry is committed",
	"gc.squash-prepared":  "the build snapshot of a flat layer replacing a deep chain is prepared",
	"gc.squash-written":   "the state is written into the flat layer's build snapshot and unmounted",
	"gc.squash-committed": "the flat layer is committed (the chain is still the last built layer)",
	"gc.squash-switched":  "the flat layer is recorded as the last built layer (the old chain not yet removed)",
}
