package store

// UpdateLeased is Update for a write of a sandbox's session by the holder
// of its lease: it fails with a FencedError unless host holds sandbox's
// lease with token, checked in the transaction, as CheckLease does.
// persist runs every write of a session in it: the open's commit, the
// close's mark-closing, staged batches and commit (which releases the
// lease).
//
// On PostgreSQL the transaction runs at REPEATABLE READ, not SERIALIZABLE,
// with the lease's row read FOR SHARE first, so that it takes no predicate
// locks: SERIALIZABLE locks B-tree pages, and the pages of kv hold the
// keys of every sandbox side by side, so closes of different sandboxes
// aborted each other (docs/fleet.md, "Concurrent closes"). It stays
// correct for the writes fn may make, those of the lease's holder alone:
// keys no other session writes, and read-modify-writes of keys others
// write too (the sandbox's row, its counters, its audit chain's head,
// to which every change of a sandbox by anyone appends), which
// REPEATABLE READ refuses with a
// serialization failure, run again like any, when another transaction
// wrote the key since this one's snapshot. The lease cannot change under
// it: a lease changed since the snapshot fails the FOR SHARE read, and
// one taken over or released later waits for this transaction to end.
func (s *Store) UpdateLeased(sandbox, host string, token uint64, fn func(tx *Tx) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	return s.updateLeased(leaseLock(sandbox, false), sandbox, host, token, fn)
}

// UpdateLeasedAudited is UpdateLeased for a write that appends an audit
// entry (the commit of an open or of a close): on PostgreSQL the entry's
// number is drawn in the round trip that locks the lease, one round trip
// less. A number drawn and not used leaves a gap, as a rolled-back
// transaction does.
func (s *Store) UpdateLeasedAudited(sandbox, host string, token uint64, fn func(tx *Tx) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	lock := leaseLock(sandbox, false)
	lock.draw = []string{"audit"}
	return s.updateLeased(lock, sandbox, host, token, fn)
}

// updateLeased runs fn under lock once CheckLease passed in the same
// transaction.
func (s *Store) updateLeased(lock txLock, sandbox, host string, token uint64, fn func(tx *Tx) error) error {
	return s.update(func(be kvBackend, f func(kvTx) error) error { return be.updateLocked(lock, f) }, func(tx *Tx) error {
		if err := tx.CheckLease(sandbox, host, token); err != nil {
			return err
		}
		return fn(tx)
	})
}

// UpdateLeaseTaker is Update for the transaction that takes sandbox's
// lease (persist's takeLease: this host's heartbeat, TakeLease, and the
// abandonment of a session a dead host left open).
//
// On PostgreSQL it runs at REPEATABLE READ with the lease's row read FOR
// UPDATE first, for the reason UpdateLeased gives. It stays correct for
// what such a transaction reads and writes: the lease row is locked (a
// taker that finds none inserts it, and of two such inserts the second
// fails with a serialization failure and is run again); this host's
// heartbeat, the sandbox, its session and its audit chain's head are read
// and written back, which REPEATABLE READ refuses when another
// transaction wrote them since the snapshot. The one row it reads and does
// not write, the holder's heartbeat, may be renewed after the snapshot:
// the take then orders before that heartbeat, which SERIALIZABLE allows
// as well, and the old holder's later writes are fenced by the token.
func (s *Store) UpdateLeaseTaker(sandbox string, fn func(tx *Tx) error) error {
	if err := checkName("sandbox", sandbox); err != nil {
		return err
	}
	lock := leaseLock(sandbox, true)
	return s.update(func(be kvBackend, f func(kvTx) error) error { return be.updateLocked(lock, f) }, fn)
}

// leaseLock locks sandbox's lease and reads along what a session's
// writes read: the sandbox, its audit chain's head, its pending count and
// its last session.
func leaseLock(sandbox string, exclusive bool) txLock {
	return txLock{
		key:       key(pLease, sandbox),
		exclusive: exclusive,
		prefetch:  [][]byte{key(pSandbox, sandbox), headKey(sandbox), key(pPending, sandbox)},
		lastOf:    [][]byte{key(pSession, sandbox)},
	}
}
