package store

// UpdateLeased is Update for a write of a sandbox's session by the holder
// of its lease: it fails with a FencedError unless host holds sandbox's
// lease with token, checked in the transaction, as CheckLease does.
//
// On PostgreSQL the transaction runs at REPEATABLE READ, not SERIALIZABLE,
// with the lease's row read FOR SHARE first, so that it takes no predicate
// locks: SERIALIZABLE locks B-tree pages, and the pages of kv hold the
// keys of every sandbox side by side, so closes of different sandboxes
// aborted each other (docs/fleet.md, "Concurrent closes"). It stays
// correct for the writes fn may make, those of the lease's holder alone:
// keys no other session writes, and read-modify-writes of keys others
// write too (a sandbox's counters), which REPEATABLE READ refuses with a
// serialization failure, run again like any, when another transaction
// wrote the key since this one's snapshot. The lease cannot change under
// it: a lease changed since the snapshot fails the FOR SHARE read, and
// one taken over or released later waits for this transaction to end.
func (s *Store) UpdateLeased(sandbox, host string, token uint64, fn func(tx *Tx) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	lock := key(pLease, sandbox)
	return s.update(func(be kvBackend, f func(kvTx) error) error { return be.updateLocked(lock, f) }, func(tx *Tx) error {
		if err := tx.CheckLease(sandbox, host, token); err != nil {
			return err
		}
		return fn(tx)
	})
}
