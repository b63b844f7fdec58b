package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spillway/spillway/store"
)

// A shared ledger has a random id, drawn in the transaction that creates
// its schema (store.LedgerID), which a state directory records in
// ledgerIDFile at its first use of it. A later command whose --store
// names another ledger (a mistyped database, another fleet's) is refused:
// against a ledger that does not know this host's sandboxes, gc would
// free every blob of the shared blob directory, and other commands would
// show and write a fleet that is not this host's.
const ledgerIDFile = "ledger-id"

// checkLedger refuses a shared ledger that is not the one this state
// directory recorded, and a new root given a host id another live state
// directory uses in it. A root with no ledger recorded records this one
// when it is new, or when the ledger knows it (its host row names this
// root); fleet init records it in any case (recordLedgerIDAtInit).
func (e *Env) checkLedger() error {
	var host *store.Host
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		host, err = tx.GetHost(e.hostID)
		if errors.Is(err, store.ErrNotFound) {
			host, err = nil, nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if host != nil && host.HeldByOther(e.rootID) && slices.Contains(e.idsWritten, rootIDFile) {
		// A new root given a live host's id: refused before it records
		// anything (its files are taken back). A root that had the id
		// before it was taken over may still read; every write it would
		// audit as that host is refused (store.SetAuditHost).
		return &store.HostIDTakenError{Host: e.hostID, LastSeen: host.LastSeen, Now: e.Now()}
	}
	have := e.store.LedgerID()
	file := filepath.Join(e.root, ledgerIDFile)
	b, err := readPrivate(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		known := host != nil && host.Root == e.rootID
		if slices.Contains(e.idsWritten, rootIDFile) || known {
			return e.recordLedgerID(have)
		}
		return nil // a root made before ledger ids: recorded at its next fleet init
	case err != nil:
		return err
	}
	want := strings.TrimSpace(string(b))
	if want == have {
		e.ledgerID = want
		return nil
	}
	this := "ledger " + have
	if e.store.LedgerCreated() {
		this = "an empty database, where this command just created a new ledger (" + have + "; drop that database if the name was a mistake)"
	}
	return &InputError{Input: "store", Problem: fmt.Sprintf("names %s, but the state directory %s uses ledger %s (recorded in %s at its first use): give that ledger's --store (or SPILLWAY_STORE); a root is used with one ledger",
		this, e.root, want, file)}
}

// recordLedgerID records the ledger's id in the root.
func (e *Env) recordLedgerID(id string) error {
	if id == "" {
		return nil // not a shared ledger
	}
	if err := writePrivate(e.root, ledgerIDFile, []byte(id+"\n")); err != nil {
		return fmt.Errorf("record the ledger's id: %w", err)
	}
	e.ledgerID = id
	e.idsWritten = append(e.idsWritten, ledgerIDFile)
	return nil
}

// recordLedgerIDAtInit is fleet init's: a root made before ledger ids
// records the ledger its admin names.
func (e *Env) recordLedgerIDAtInit() error {
	if _, err := os.Lstat(filepath.Join(e.root, ledgerIDFile)); err == nil {
		return nil
	}
	return e.recordLedgerID(e.store.LedgerID())
}
