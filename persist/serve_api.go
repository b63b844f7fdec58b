package persist

import (
	"context"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// The names below let `spillway serve` (package serve) use what persist
// returns without importing store or snapshot.

// Record is one change that met an exception at close (store.Record).
type Record = store.Record

// Sandbox is a sandbox as stored (store.Sandbox).
type Sandbox = store.Sandbox

// Event is one audit log entry (store.Event).
type Event = store.Event

// ImageSource says where an image is imported from (snapshot.Source).
type ImageSource = snapshot.Source

// ErrStop ends an iteration early without error.
var ErrStop = store.ErrStop

// Sandbox states, as stored.
const (
	StateOpen    = store.StateOpen
	StateClosed  = store.StateClosed
	StateClosing = store.StateClosing
)

// SetReviewer names who the review decisions made through e are recorded
// as deciding (Record.DecidedBy, and "reviewer" in the audit entry); ""
// (the default) is the OS user. The audit entry's user stays the OS user.
func (e *Env) SetReviewer(name string) { e.reviewer = name }

// Events calls fn for every audit entry of a sandbox ("" = all), oldest
// first; fn may return ErrStop.
func (e *Env) Events(ctx context.Context, sandbox string, fn func(*Event) error) error {
	return e.Store.ForEachEvent(ctx, sandbox, fn)
}

// VerifyAudit recomputes the audit hash chain as `spillway audit verify`
// does: "" when intact, else the first bad entry.
func (e *Env) VerifyAudit(ctx context.Context) (string, error) {
	p, err := e.Store.VerifyAudit(ctx)
	if err != nil || p == nil {
		return "", err
	}
	return p.Message, nil
}
