package store

import "context"

// kvBackend is the key-value engine under a Store: badger (badger.go) or
// PostgreSQL (pg.go). Every typed method of Tx is built on kvTx alone.
type kvBackend interface {
	// update runs fn in one read-write transaction, committed only if fn
	// returns nil. A driver may run fn more than once (PostgreSQL retries
	// a serialization failure), so fn must have no effect outside tx
	// that a second run would repeat wrongly.
	update(fn func(kvTx) error) error
	// updateLocked is update for a transaction that writes only keys of
	// the holder of the lease at l.key (Store.UpdateLeased), or that
	// takes that lease (Store.UpdateLeaseTaker, exclusive): the driver
	// may run it at a weaker isolation with that key's row locked, shared
	// or, when exclusive, for update.
	updateLocked(l txLock, fn func(kvTx) error) error
	// view runs fn in one read-only transaction that sees one snapshot.
	view(fn func(kvTx) error) error
	close() error
	// where names the database in messages (a directory, or a URL
	// without its password).
	where() string
}

// txLock is the row updateLocked locks, and the rows the transaction is
// known to read, which a driver may read in the round trip that locks it.
type txLock struct {
	key       []byte
	exclusive bool
	prefetch  [][]byte // keys read along
	lastOf    [][]byte // prefixes whose last key is read along
	draw      []string // counters the transaction draws one value of (next)
}

// kvTx is one transaction of a backend.
type kvTx interface {
	// get returns the value at k, or ok=false when it is absent.
	get(k []byte) (v []byte, ok bool, err error)
	// set writes v at k. The driver may keep v until the transaction
	// ends (badger's Txn.Set does): the caller leaves it as it is.
	set(k, v []byte) error
	// create is set for a key nobody can have written: it holds an id
	// this transaction drew (next, nextN). A driver may write it with a
	// plain insert, which fails the transaction if the key exists.
	create(k, v []byte) error
	del(k []byte) error
	// scan calls fn in key order for every key with prefix that is not
	// before from (nil: from the start of prefix); with values it also
	// passes the value. k and v are valid only during the call. An error
	// from fn ends the scan and is returned as is.
	scan(ctx context.Context, prefix, from []byte, values bool, fn func(k, v []byte) error) error
	// scanRanges is scan over several ranges, each up to its limit, in
	// one round trip where the driver can: fn gets the number of the
	// range with each key, range after range, each in key order.
	scanRanges(ctx context.Context, rs []keyRange, values bool, fn func(i int, k, v []byte) error) error
	// next increments the named counter and returns its new value. Values
	// only grow; a driver may leave gaps (PostgreSQL's sequences do).
	next(name string) (uint64, error)
	// nextN is next n times, in one round trip where the driver can.
	nextN(name string, n int) ([]uint64, error)
	// readAhead reads the keys in as few round trips as the driver can,
	// so that get answers them without one; a driver whose reads cost no
	// round trip does nothing.
	readAhead(keys [][]byte) error
	// before runs fn in a read-only view of the ledger as this
	// transaction found it: without its own writes, and without anything
	// committed since it began (current_counts.go diffs the two).
	before(fn func(kvTx) error) error
}

// prefixEnd returns the first key after every key with prefix, or nil
// when there is none (an empty prefix, or one of only 0xff bytes).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
