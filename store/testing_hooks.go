package store

import (
	"bytes"
	"encoding/gob"
	"strconv"

	"github.com/dgraph-io/badger/v4"
)

// RawDB returns the underlying badger database (nil on PostgreSQL). It is
// for tests and fault injection only (e.g. altering, deleting or
// reordering audit entries).
func (s *Store) RawDB() *badger.DB { return s.db }

// AuditKey is the key of audit entry seq (for tests and fault injection).
func AuditKey(seq uint64) []byte { return key(pAudit, seq) }

// AuditHeadKey is the key of the head of the fleet chain (the single chain
// of older stores), whose value is its ChainSeq (8 bytes, big-endian) ‖
// sha256 (for tests and fault injection).
func AuditHeadKey() []byte { return []byte(keyHead) }

// AuditChainHeadKey is the key of the head of a sandbox's audit chain ("":
// the fleet chain), valued as AuditHeadKey's (for tests and fault
// injection).
func AuditChainHeadKey(sandbox string) []byte { return headKey(sandbox) }

// EncodeEvent encodes an audit entry as stored (for tests and fault injection).
func EncodeEvent(e *Event) ([]byte, error) { return encode(e) }

// DecodeEvent decodes a stored audit entry (for tests and fault injection).
func DecodeEvent(b []byte) (*Event, error) { return decodeEvent(b) }

// DowngradeRecordsForBench rewrites every record in the schema 1 (gob)
// encoding and sets the schema to 1, so that the next Open migrates the
// store: for the migration benchmark only.
func (s *Store) DowngradeRecordsForBench() error {
	var keys [][]byte
	if err := s.View(func(tx *Tx) error {
		return tx.scan([]byte(pRec), false, func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		})
	}); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 2000)
		err := s.Update(func(tx *Tx) error {
			for _, k := range keys[:n] {
				v, _, err := tx.get(k)
				if err != nil {
					return err
				}
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				var buf bytes.Buffer
				buf.WriteByte(encVersion)
				if err := gob.NewEncoder(&buf).Encode(r); err != nil {
					return err
				}
				if err := tx.set(k, buf.Bytes()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return s.Update(func(tx *Tx) error { return tx.set([]byte(keySchema), []byte("1")) })
}

// SetSchemaForTest writes v as the store's schema version, so tests can
// make a store look as an older spillway left it (the next Open migrates
// it). For tests only.
func (s *Store) SetSchemaForTest(v int) error {
	return s.Update(func(tx *Tx) error { return tx.set([]byte(keySchema), []byte(strconv.Itoa(v))) })
}

// StageBlindForBench writes the rows StageRecords writes for recs, new
// records of sandbox under ids it draws (each record, its index entries,
// its current-state version at gen, its change-log entry, and the path's
// version at stale deleted when stale > 0), without reading anything
// first and without the state counters (cn:): what the writes alone cost. For
// the fleet-closes benchmark's bound only; the ledger it leaves is not
// consistent (no counters, change-log entries naming no earlier record).
func (tx *Tx) StageBlindForBench(sandbox string, gen uint64, recs []*Record, stale uint64) error {
	ids, err := tx.nextN("record", len(recs))
	if err != nil {
		return err
	}
	for i, r := range recs {
		r.ID = ids[i]
		if err := tx.putNewRecord(r); err != nil {
			return err
		}
		if err := tx.blindVersion(sandbox, r, gen, stale); err != nil {
			return err
		}
	}
	return nil
}

// blindVersion writes r's current-state version at gen and its change-log
// entry, and deletes the path's version at stale when stale > 0, reading
// nothing (the blind stages of the bench).
func (tx *Tx) blindVersion(sandbox string, r *Record, gen, stale uint64) error {
	val, err := copyValue(r)
	if err != nil {
		return err
	}
	// set, not create: a close run again after its commit failed stages
	// at the same generation
	if err := tx.set(currentKey(sandbox, r.Path, gen), val); err != nil {
		return err
	}
	if err := tx.set(changeKey(sandbox, gen, r.Path), nil); err != nil {
		return err
	}
	if stale > 0 {
		return tx.del(currentKey(sandbox, r.Path, stale))
	}
	return nil
}
