package persist

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spillway/spillway/store"
)

// A shared ledger has a random id (the meta value metaLedgerID), which a
// state directory records in ledgerIDFile at its first use of it. A later
// command whose --store names another ledger (a mistyped database name, a
// shell with another SPILLWAY_STORE) is refused: against a ledger that
// does not know this host's sandboxes, gc would free every blob of the
// shared blob directory, and other commands would show and write a fleet
// that is not this host's.
const (
	ledgerIDFile = "ledger-id"
	metaLedgerID = "ledger-id"
)

// checkLedger refuses a shared ledger that is not the one this state
// directory recorded, and a host id another live state directory uses in
// it (a second root given the same --host-id writes nothing under it,
// not only its opens). A root with no ledger recorded records this one
// when it is new, or when the ledger knows it (its host row names this
// root); fleet init records it in any case (recordLedgerID).
func (e *Env) checkLedger() error {
	var have string
	var host *store.Host
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		if have, _, err = tx.GetMeta(metaLedgerID); err != nil {
			return err
		}
		host, err = tx.GetHost(e.hostID)
		if errors.Is(err, store.ErrNotFound) {
			host, err = nil, nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if host != nil && host.Root != "" && host.Root != e.rootID && host.Evicted.IsZero() {
		return &store.HostIDTakenError{Host: e.hostID, LastSeen: host.LastSeen, Now: e.Now()}
	}
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
	this := "a ledger without an id: one this state directory never used (a new, empty database?)"
	if have != "" {
		this = "ledger " + have
	}
	return &InputError{Input: "store", Problem: fmt.Sprintf("names %s, but the state directory %s uses ledger %s (recorded in %s at its first use): give that ledger's --store (or SPILLWAY_STORE); a root is used with one ledger",
		this, e.root, want, file)}
}

// recordLedgerID records the ledger's id in the root (have: the id read
// already, "" when the ledger has none yet: one is drawn and stored).
func (e *Env) recordLedgerID(have string) error {
	if have == "" {
		err := e.store.Update(func(tx *store.Tx) error {
			v, _, err := tx.GetMeta(metaLedgerID)
			if err != nil || v != "" {
				have = v
				return err
			}
			b := make([]byte, 16)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			have = hex.EncodeToString(b)
			return tx.PutMeta(metaLedgerID, have)
		})
		if err != nil {
			return fmt.Errorf("record the ledger's id: %w", err)
		}
	}
	if err := writePrivate(e.root, ledgerIDFile, []byte(have+"\n")); err != nil {
		return fmt.Errorf("record the ledger's id: %w", err)
	}
	e.ledgerID = have
	e.idsWritten = append(e.idsWritten, ledgerIDFile)
	return nil
}

// recordLedgerIDAtInit is fleet init's: a root made before ledger ids
// records the ledger its admin names.
func (e *Env) recordLedgerIDAtInit() error {
	if _, err := os.Lstat(filepath.Join(e.root, ledgerIDFile)); err == nil {
		return nil
	}
	var have string
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		have, _, err = tx.GetMeta(metaLedgerID)
		return err
	}); err != nil {
		return err
	}
	return e.recordLedgerID(have)
}
