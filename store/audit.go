package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/whoami"
)

// The audit log is a set of hash chains, one per sandbox and one for
// entries about no sandbox (image imports, gc, evictions, checkpoints:
// the fleet chain), so that closes of different sandboxes never write the
// same key (issue 16: a single head cut concurrent closes on PostgreSQL
// from ~1,100/s to ~600/s). Every entry also has a global Seq, its key,
// for the log's order; Seqs only grow but may have gaps (PostgreSQL's
// sequences). Each chain's head, ChainSeq ‖ hash, is its own key:
//
//	a:SEQ          entry
//	ah             head of the fleet chain (and of the single chain of
//	               stores written before chains per sandbox)
//	aH:SANDBOX     head of a sandbox's chain
//
// Entries written before chains per sandbox (V 0) stay one contiguous
// chain, verified as before; the fleet chain continues it. A chain that
// vanishes whole with its head is caught by `spillway fleet checkpoint`,
// which writes every head into the fleet chain.
const (
	auditDomain   = "spillway-audit-v1\x00"
	auditDomainV2 = "spillway-audit-v2\x00"
	pAuditHead    = "aH:"
	// CheckpointType is the type of a checkpoint entry; its data has
	// "head:SANDBOX" = "CHAINSEQ:HEXHASH" for every sandbox chain.
	CheckpointType = "fleet.checkpoint"
	eventChained   = 2
)

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
//	uint64  ChainSeq (chained entries only, V 2)
//	int64   Time.UnixNano()
//	str     Type
//	str     Sandbox
//	str     User
//	uint64  number of Data pairs
//	        for each pair, keys sorted bytewise: str key, str value
//	[32]byte Prev
//
// Hash = sha256("spillway-audit-v1\x00" ‖ Canonical) for V 0 and
// sha256("spillway-audit-v2\x00" ‖ Canonical) for V 2.
func (e *Event) Canonical() []byte {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	if e.V >= eventChained {
		b = binary.BigEndian.AppendUint64(b, e.ChainSeq)
	}
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
	if e.V >= eventChained {
		h.Write([]byte(auditDomainV2))
	} else {
		h.Write([]byte(auditDomain))
	}
	h.Write(e.Canonical())
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// headKey is the key of a chain's head ("": the fleet chain).
func headKey(chain string) []byte {
	if chain == "" {
		return []byte(keyHead)
	}
	return key(pAuditHead, chain)
}

// chainHead returns a chain's head (0 and the zero hash when it is empty).
func (tx *Tx) chainHead(chain string) (uint64, [32]byte, bool, error) {
	var h [32]byte
	v, ok, err := tx.get(headKey(chain))
	if err != nil || !ok {
		return 0, h, ok, err
	}
	if len(v) != 40 {
		return 0, h, true, fmt.Errorf("store: cannot decode audit head: %d bytes", len(v))
	}
	copy(h[:], v[8:])
	return binary.BigEndian.Uint64(v), h, true, nil
}

// nextAuditSeq draws the next global entry number. On badger the counter
// starts after the single chain of an older store (on PostgreSQL the SQL
// migration sets its sequence so).
func (tx *Tx) nextAuditSeq() (uint64, error) {
	if tx.s.Driver() == "badger" {
		if _, ok, err := tx.get([]byte(pCounter + "audit")); err != nil {
			return 0, err
		} else if !ok {
			seq, _, _, err := tx.chainHead("")
			if err != nil {
				return 0, err
			}
			if err := tx.set([]byte(pCounter+"audit"), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return 0, err
			}
		}
	}
	return tx.next("audit")
}

// Append adds an audit entry made at now in this transaction to the chain
// of its sandbox ("": the fleet chain), after that chain's head, and
// moves the head to it.
func (tx *Tx) Append(now time.Time, typ, sandbox string, data map[string]string) (*Event, error) {
	cseq, prev, _, err := tx.chainHead(sandbox)
	if err != nil {
		return nil, err
	}
	seq, err := tx.nextAuditSeq()
	if err != nil {
		return nil, err
	}
	e := &Event{
		V:        eventChained,
		ChainSeq: cseq + 1,
		Seq:      seq,
		Time:     now.UTC(),
		Type:     typ,
		Sandbox:  sandbox,
		User:     whoami.Name(),
		Data:     maps(data),
		Prev:     prev,
	}
	if tx.s.auditHost != "" {
		if err := tx.checkAuditHost(); err != nil {
			return nil, err
		}
	}
	if _, named := e.Data["host"]; tx.s.auditHost != "" && !named {
		e.Data["host"] = tx.s.auditHost
	}
	e.Hash = e.ComputeHash()
	v, err := encode(e)
	if err != nil {
		return nil, err
	}
	// The number is fresh from the counter: no entry can be overwritten.
	if err := tx.create(AuditKey(e.Seq), v); err != nil {
		return nil, err
	}
	hv := binary.BigEndian.AppendUint64(nil, e.ChainSeq)
	if err := tx.set(headKey(sandbox), append(hv, e.Hash[:]...)); err != nil {
		return nil, err
	}
	return e, nil
}

// SetAuditHost makes every audit entry this Store appends from now on name
// host, the host that writes it, as its data "host" unless the entry names
// one itself: a ledger shared by several hosts tells who wrote what. The
// data is part of the entry's hash like any other.
//
// root is the writer's state directory id: an entry is refused
// (HostIDTakenError) while the ledger's row of host names another,
// not evicted, directory. Two roots given one host id would otherwise
// write under each other's name; the directory that lost the id to
// another after an eviction may still read (its recovery area holds
// fenced work) but not write as that host.
func (s *Store) SetAuditHost(host, root string) { s.auditHost, s.auditRoot = host, root }

// checkAuditHost refuses an entry this Store would audit as auditHost
// when the host's row names another state directory than auditRoot.
// One check a Store (a command) suffices: the row changes hands only by
// an eviction and another directory's heartbeat.
func (tx *Tx) checkAuditHost() error {
	if tx.s.auditRoot == "" || tx.s.auditChecked.Load() {
		return nil
	}
	h, err := tx.GetHost(tx.s.auditHost)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if h.HeldByOther(tx.s.auditRoot) {
		return &HostIDTakenError{Host: h.ID, LastSeen: h.LastSeen, Now: tx.Now()}
	}
	tx.s.auditChecked.Store(true)
	return nil
}

// Checkpoint appends to the fleet chain an entry naming the head of every
// sandbox chain, so that a chain later removed whole, head and all, is
// caught by VerifyAudit. It returns the entry.
func (tx *Tx) Checkpoint(now time.Time) (*Event, error) {
	data := map[string]string{}
	err := tx.scan([]byte(pAuditHead), true, func(k, v []byte) error {
		if len(v) != 40 {
			return fmt.Errorf("store: audit head %q: %d bytes", k, len(v))
		}
		data["head:"+strings.TrimSuffix(string(k[len(pAuditHead):]), "\x00")] = fmt.Sprintf("%d:%x", binary.BigEndian.Uint64(v), v[8:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	data["chains"] = fmt.Sprint(len(data))
	return tx.Append(now, CheckpointType, "", data)
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
	return s.ForEachEventAfter(ctx, sandbox, 0, fn)
}

// ForEachEventAfter is ForEachEvent from the first entry numbered above
// after (0: from the first): a page deep in the log reads from its own
// entries on, not every one before them.
func (s *Store) ForEachEventAfter(ctx context.Context, sandbox string, after uint64, fn func(*Event) error) error {
	from, ok := keyAfter([]byte(pAudit), after)
	if !ok {
		return nil
	}
	return s.View(func(tx *Tx) error {
		return tx.scanFrom(ctx, []byte(pAudit), from, true, func(k, v []byte) error {
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("audit key %x: %w", k, err)
			}
			seq, ok := tailUint64(k)
			if !ok || len(k) != len(pAudit)+8 {
				return fmt.Errorf("store: malformed audit key %x", k)
			}
			// The key's number, which orders the log and its pages: an
			// entry that says another (a row spillway never writes) would
			// send a reader's next page back to it. VerifyAudit reports it.
			e.Seq = seq
			if sandbox != "" && e.Sandbox != sandbox {
				return nil
			}
			return fn(e)
		})
	})
}
