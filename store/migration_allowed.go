package store

import (
	"context"
	"fmt"
)

type allowMigrationKey struct{}

// AllowMigration returns a context under which opening a shared ledger
// whose schema is older than this spillway's migrates it (`spillway fleet
// init`). Without it such an open fails with ErrMigrationNeeded; a
// ledger of the root's own (badger) is always migrated.
func AllowMigration(ctx context.Context) context.Context {
	return context.WithValue(ctx, allowMigrationKey{}, true)
}

func migrationAllowed(ctx context.Context) bool {
	v, _ := ctx.Value(allowMigrationKey{}).(bool)
	return v
}

// migrationNeeded is the refusal of an ordinary command to migrate a
// shared ledger (where: the store, "" when the caller names it).
func migrationNeeded(where, what string, from, to int, underWay bool) error {
	state := fmt.Sprintf("its %s is version %d, this spillway's is %d", what, from, to)
	if underWay {
		state = fmt.Sprintf("a migration of its %s to version %d was started and not finished", what, to)
	}
	if where != "" {
		where = "store " + where + ": "
	}
	return fmt.Errorf("%s%w: %s; once every host runs this spillway, run `spillway fleet init` on one of them to migrate it (a host still running an older spillway stops working from then on); nothing was changed", where, ErrMigrationNeeded, state)
}

type noticeKey struct{}

// WithNotice returns a context under which opening a store that needs a
// migration tells fn when the migration starts and when it ends (a large
// ledger takes minutes; before, it ran silently in whatever command came
// first).
func WithNotice(ctx context.Context, fn func(string)) context.Context {
	return context.WithValue(ctx, noticeKey{}, fn)
}

func noticeOf(ctx context.Context) func(string) {
	fn, _ := ctx.Value(noticeKey{}).(func(string))
	return fn
}
