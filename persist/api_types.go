package persist

import (
	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// The data types the CLI prints, so that it needs no package below persist.

// Record is a stored change of a persisted path (store.Record).
type Record = store.Record

// Event is an entry of the audit log (store.Event).
type Event = store.Event

// AuditProblem is the first bad entry of the audit log (store.AuditProblem).
type AuditProblem = store.AuditProblem

// Sandbox is a stored sandbox (store.Sandbox).
type Sandbox = store.Sandbox

// Image is a stored image (store.Image).
type Image = store.Image

// Host is a host sharing the ledger (store.Host).
type Host = store.Host

// Lease says which host may write a sandbox's session (store.Lease).
type Lease = store.Lease

// DefaultHostTTL is how long a host counts as live after a heartbeat.
const DefaultHostTTL = store.DefaultHostTTL

// Sandbox states (package store). Record kinds, statuses and review modes
// are internal/change's.
const (
	StateClosed  = store.StateClosed
	StateOpen    = store.StateOpen
	StateClosing = store.StateClosing
)

// Pools keeps a PostgreSQL ledger's connections open across the Envs a
// long-running process opens (store.Pools): set Options.Pools.
type Pools = store.Pools

// NewPools returns an empty Pools; its owner closes it.
func NewPools() *Pools { return store.NewPools() }

// ErrStop ends an iteration early without error.
var ErrStop = store.ErrStop

// Exception is a persistence rule (exceptions.Exception).
type Exception = exceptions.Exception

// Limits bound what an exception persists per session (exceptions.Limits).
type Limits = exceptions.Limits

// Finding is a risk lint found in a rule (exceptions.Finding).
type Finding = exceptions.Finding

// DefaultLimits are the limits of an exception that sets none.
func DefaultLimits() Limits { return exceptions.DefaultLimits }

// Lint flags the risky patterns of a rule (exceptions.Lint).
func Lint(x *Exception) []Finding { return exceptions.Lint(x) }

// Suggest gives advice on a rule that is not a risk (exceptions.Suggest).
func Suggest(x *Exception) []Finding { return exceptions.Suggest(x) }

// ImageSource is what an image is imported from (snapshot.Source).
type ImageSource = snapshot.Source

// ImportLimits bound what an image import writes (snapshot.Limits).
type ImportLimits = snapshot.Limits

// DefaultImportMaxFiles is the entry limit of an image import that sets
// none (snapshot.DefaultMaxFiles), lowered to 90% of the free inodes where
// fewer are free.
const DefaultImportMaxFiles = snapshot.DefaultMaxFiles

// LimitError reports an import past one of its limits (snapshot.LimitError).
type LimitError = snapshot.LimitError

// OverlayError reports that overlay mounts do not work under the state
// directory, with what would fix it (snapshot.OverlayError).
type OverlayError = snapshot.OverlayError

// What would make overlay mounts work (OverlayError.Fix).
const (
	FixPath       = snapshot.FixPath
	FixFilesystem = snapshot.FixFilesystem
	FixPrivilege  = snapshot.FixPrivilege
	FixKernel     = snapshot.FixKernel
)

// ErrLedgerRefused is the class of a ledger that refused the connection
// for good (wrong user or password, no such database): not worth a retry.
var ErrLedgerRefused = store.ErrRefused
