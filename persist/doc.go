// Package persist runs the lifecycle of sandboxes: import, open, close and
// the persisted state that exceptions let through.
//
// A sandbox is created closed. Open lays the current generation of its
// persisted state over its image in a committed layer, prepares a fresh
// session root on top and mounts it. Close marks the session closing,
// unmounts the root, reads the changes from the root's own snapshot with the
// hostile-tree reader, keeps what an active exception lets through (content
// in the blob store, a record per change in the store), commits the new
// generation in one small transaction, and only then removes the session
// root and the old layer. A crash leaves the old or the new generation
// current; re-running close, or any command on the sandbox, finishes it.
//
// The persisted state of a sandbox is derived from its records: for each
// path, the newest record that is in effect (approved, or pending under
// review mode "after"; never rejected, refused or purged; never from a
// session whose close has not committed). The generation number names that
// state; it grows by one at every change.
package persist

// The files group by concept:
//   - environment: env.go (Env, the state directory, locks), errors.go,
//     names.go;
//   - lifecycle: image.go, sandbox.go, open.go, close.go, busy.go;
//   - classification at close: close_classify.go (the verdict of one
//     change), close_collect.go (the walk), close_commit.go (records and
//     the commit), close_summary.go, close_attention.go, manifest.go,
//     diff.go (the same classification while open);
//   - the persisted state: state.go, persisted.go, content.go, blobs*.go;
//   - review decisions: exception.go, review.go, review_decide.go,
//     review_diff.go;
//   - upkeep: check.go, check_state.go, gc.go.
