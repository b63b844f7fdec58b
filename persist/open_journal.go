package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// The open-session journal is this host's own record of the sessions it
// opened and has not closed: ROOT/sessions/NAME holds the number of the
// session whose open committed here. The ledger says what a sandbox's
// state is, but a ledger several hosts share can be written by any of
// them, and its word ("closed", "open on another host") once made this
// host remove a root that held unsaved work: gc removed it as a stray,
// open and close cleaned it up as a leftover. A root the journal names is
// never removed without its changes kept first (fence: the recovery
// area), whatever the ledger says.
//
// Written after the open's commit, removed after the close's (or once a
// fence kept the changes): a crash between leaves the journal naming a
// session the ledger shows closed, which is fenced at the next cleanup,
// keeping what the close had not, and losing nothing.

func (e *Env) journalDir() string { return filepath.Join(e.root, "sessions") }

// noteOpen records that this host opened session n of sandbox.
func (e *Env) noteOpen(sandbox string, n uint64) error {
	if err := os.MkdirAll(e.journalDir(), 0o700); err != nil {
		return err
	}
	if err := writePrivate(e.journalDir(), sandbox, []byte(strconv.FormatUint(n, 10)+"\n")); err != nil {
		return fmt.Errorf("record the open of %s session %d: %w", sandbox, n, err)
	}
	return nil
}

// openHere returns the session of sandbox this host's journal names.
func (e *Env) openHere(sandbox string) (uint64, bool) {
	b, err := readPrivate(filepath.Join(e.journalDir(), sandbox))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil && n > 0
}

// noteClosed forgets this host's open session of sandbox.
func (e *Env) noteClosed(sandbox string) {
	os.Remove(filepath.Join(e.journalDir(), sandbox))
}

// openSessions returns every session the journal names, by sandbox.
func (e *Env) openSessions() map[string]uint64 {
	out := map[string]uint64{}
	ents, err := os.ReadDir(e.journalDir())
	if err != nil {
		return out
	}
	for _, ent := range ents {
		if ValidateName("sandbox", ent.Name()) != nil {
			continue // a temporary file of writePrivate
		}
		if n, ok := e.openHere(ent.Name()); ok {
			out[ent.Name()] = n
		}
	}
	return out
}

// keepUnclosed fences this host's open session of sb's sandbox when the
// ledger no longer shows it open or closing here (sb is the ledger's row):
// its changes go to the recovery area before anything removes the root.
// The caller goes on to remove what the ledger does not need.
func (e *Env) keepUnclosed(ctx context.Context, sb *store.Sandbox) error {
	n, ok := e.openHere(sb.Name)
	if !ok {
		return nil
	}
	if sb.State != store.StateClosed && sb.Session == n {
		return nil // the ledger agrees: this host's live session
	}
	if ok, err := e.snap.Exists(ctx, sessionKey(sb.Name, n)); err != nil {
		return err
	} else if !ok {
		e.noteClosed(sb.Name) // closed or fenced before: nothing to keep
		return nil
	}
	cause := errclass.Errorf(errdefs.ErrFailedPrecondition, "this host opened session %d of %s and did not close it, but the ledger shows the sandbox %s at session %d", n, sb.Name, sb.State, sb.Session)
	err := e.fence(ctx, sb.Name, n, cause)
	var fs *FencedSession
	if errors.As(err, &fs) {
		e.warnf("%v: its %s kept in this host's recovery area (spillway recover ls %s --session %d)", cause, plural(fs.Entries, "change"), sb.Name, n)
		return nil
	}
	return err
}
