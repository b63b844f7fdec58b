package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/spillway/spillway/internal/whoami"
)

// auditDomain prefixes every hashed audit entry.
const auditDomain = "spillway-audit-v1\x00"

// AuditProblem names the first bad audit entry and what is wrong with it.
type AuditProblem struct {
	Seq     uint64
	Message string
}

func (p *AuditProblem) String() string { return p.Message }

// Canonical returns the canonical encoding of e that its hash covers. All
// integers are big-endian; a "str" is a uint64 byte length followed by the
// bytes, exactly as stored (no UTF-8 normalisation):
//
//	uint64  Seq
//	int64   Time.UnixNano()
//	str     Type
//	str     Sandbox
//	str     User
//	uint64  number of Data pairs
//	        for each pair, keys sorted bytewise: str key, str value
//	[32]byte Prev
//
// Hash = sha256("spillway-audit-v1\x00" ‖ Canonical).
func (e *Event) Canonical() []byte {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	str(e.Type)
	str(e.Sandbox)
	str(e.User)
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.BigEndian.AppendUint64(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Data[k])
	}
	return append(b, e.Prev[:]...)
}

// ComputeHash returns the hash e should carry.
func (e *Event) ComputeHash() [32]byte {
	h := sha256.New()
	h.Write([]byte(auditDomain))
	h.Write(e.Canonical())
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// head returns the audit head (0 and zero hash when the log is empty).
func (tx *Tx) head() (uint64, [32]byte, bool, error) {
	var h [32]byte
	v, ok, err := tx.get([]byte(keyHead))
	if err != nil || !ok {
		return 0, h, ok, err
	}
	if len(v) != 40 {
		return 0, h, true, fmt.Errorf("store: cannot decode audit head: %d bytes", len(v))
	}
	copy(h[:], v[8:])
	return binary.BigEndian.Uint64(v), h, true, nil
}

// Append adds an audit entry made at now in this transaction, after the
// current head, and moves the head to it.
func (tx *Tx) Append(now time.Time, typ, sandbox string, data map[string]string) (*Event, error) {
	seq, prev, _, err := tx.head()
	if err != nil {
		return nil, err
	}
	e := &Event{
		Seq:     seq + 1,
		Time:    now.UTC(),
		Type:    typ,
		Sandbox: sandbox,
		User:    whoami.Name(),
		Data:    maps(data),
		Prev:    prev,
	}
	e.Hash = e.ComputeHash()
	if err := tx.put(AuditKey(e.Seq), e); err != nil {
		return nil, err
	}
	hv := binary.BigEndian.AppendUint64(nil, e.Seq)
	if err := tx.set([]byte(keyHead), append(hv, e.Hash[:]...)); err != nil {
		return nil, err
	}
	return e, nil
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ForEachEvent calls fn for every audit entry of a sandbox ("" = all),
// oldest first, streaming in one read transaction. fn may return ErrStop.
func (s *Store) ForEachEvent(ctx context.Context, sandbox string, fn func(*Event) error) error {
	return s.View(func(tx *Tx) error {
		return tx.scanCtx(ctx, []byte(pAudit), true, func(k, v []byte) error {
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("audit key %x: %w", k, err)
			}
			if sandbox != "" && e.Sandbox != sandbox {
				return nil
			}
			return fn(e)
		})
	})
}

// VerifyAudit recomputes every hash and link of the audit chain and checks
// the head against the last entry. It returns nil when the chain is intact,
// or the first bad entry.
func (s *Store) VerifyAudit(ctx context.Context) (*AuditProblem, error) {
	var problem *AuditProblem
	bad := func(seq uint64, format string, args ...any) error {
		problem = &AuditProblem{Seq: seq, Message: fmt.Sprintf("entry %d: ", seq) + fmt.Sprintf(format, args...)}
		return ErrStop
	}
	err := s.View(func(tx *Tx) error {
		headSeq, headHash, headOK, err := tx.head()
		if err != nil {
			return bad(headSeq+1, "audit head unreadable: %v", err)
		}
		var last uint64
		var prev [32]byte
		err = tx.scanCtx(ctx, []byte(pAudit), true, func(k, v []byte) error {
			want := last + 1
			seq, ok := tailUint64(k[len(pAudit):])
			if !ok || len(k) != len(pAudit)+8 {
				return bad(want, "malformed key %x", k)
			}
			if seq != want {
				return bad(want, "missing (next stored entry is %d)", seq)
			}
			if !headOK {
				return bad(seq, "the audit head is missing")
			}
			if seq > headSeq {
				return bad(seq, "beyond the audit head (head is at %d)", headSeq)
			}
			e, err := decodeEvent(v)
			if err != nil {
				return bad(seq, "%v", err)
			}
			switch {
			case e.Seq != seq:
				return bad(seq, "holds entry %d", e.Seq)
			case e.Prev != prev:
				return bad(seq, "link to entry %d is broken", last)
			case e.ComputeHash() != e.Hash:
				return bad(seq, "hash does not match its content")
			}
			last, prev = seq, e.Hash
			return nil
		})
		if err != nil || problem != nil {
			return err
		}
		switch {
		case last < headSeq:
			return bad(last+1, "missing (audit head is at %d)", headSeq)
		case headOK && headHash != prev:
			return bad(last, "audit head hash does not match this entry")
		}
		return nil
	})
	if problem != nil {
		return problem, nil
	}
	return nil, err
}
