package store

import "github.com/dgraph-io/badger/v4"

// RawDB returns the underlying badger database. It is for tests and fault
// injection only (e.g. altering, deleting or reordering audit entries).
func (s *Store) RawDB() *badger.DB { return s.db }

// AuditKey is the key of audit entry seq (for tests and fault injection).
func AuditKey(seq uint64) []byte { return key(pAudit, seq) }

// AuditHeadKey is the key of the audit head, whose value is seq (8 bytes,
// big-endian) ‖ sha256 (for tests and fault injection).
func AuditHeadKey() []byte { return []byte(keyHead) }

// EncodeEvent encodes an audit entry as stored (for tests and fault injection).
func EncodeEvent(e *Event) ([]byte, error) { return encode(e) }

// DecodeEvent decodes a stored audit entry (for tests and fault injection).
func DecodeEvent(b []byte) (*Event, error) { return decodeEvent(b) }
