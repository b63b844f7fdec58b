package store

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// chainState is what VerifyAudit knows of one chain while it reads.
type chainState struct {
	last     uint64   // ChainSeq of its last entry read
	prev     [32]byte // hash of that entry
	firstSeq uint64   // global Seq of its first entry read
	lastSeq  uint64   // global Seq of its last entry read
}

// chainHeadValue is a head as stored.
type chainHeadValue struct {
	seq  uint64
	hash [32]byte
}

// claim is a head a checkpoint entry recorded.
type claim struct {
	hash [32]byte
	at   uint64 // the checkpoint's Seq
}

// chainName names a chain in messages.
func chainName(chain string) string {
	if chain == "" {
		return "the fleet chain"
	}
	return "the chain of " + strconv.Quote(chain)
}

// VerifyAudit recomputes every hash and link of every audit chain, checks
// each head against its chain's last entry and every checkpoint against
// the chains. It returns nil when all is intact, or the first bad entry.
func (s *Store) VerifyAudit(ctx context.Context) (*AuditProblem, error) {
	var problem *AuditProblem
	bad := func(seq uint64, format string, args ...any) error {
		problem = &AuditProblem{Seq: seq, Message: fmt.Sprintf("entry %d: ", seq) + fmt.Sprintf(format, args...)}
		return ErrStop
	}
	err := s.View(func(tx *Tx) error {
		heads, err := readHeads(tx)
		if err != nil {
			return bad(1, "audit head unreadable: %v", err)
		}
		claims, err := readClaims(ctx, tx)
		if err != nil {
			return err
		}
		chains := map[string]*chainState{}
		var legacyLast uint64 // the single chain of older stores: Seq 1, 2, …
		chained := false
		err = tx.scanCtx(ctx, []byte(pAudit), true, func(k, v []byte) error {
			seq, ok := tailUint64(k[len(pAudit):])
			if !ok || len(k) != len(pAudit)+8 {
				return bad(legacyLast+1, "malformed key %x", k)
			}
			e, err := decodeEvent(v)
			if err != nil {
				return bad(seq, "%v", err)
			}
			if e.Seq != seq {
				return bad(seq, "holds entry %d", e.Seq)
			}
			chain := e.Sandbox
			cseq := e.ChainSeq
			if e.V < eventChained {
				switch {
				case chained:
					return bad(seq, "an entry without a chain after chained ones")
				case seq != legacyLast+1:
					return bad(legacyLast+1, "missing (next stored entry is %d)", seq)
				}
				chain, cseq, legacyLast = "", seq, seq
			} else {
				chained = true
			}
			c := chains[chain]
			if c == nil {
				c = &chainState{firstSeq: seq}
				chains[chain] = c
			}
			h, hasHead := heads[chain]
			switch {
			case !hasHead:
				return bad(seq, "the audit head of %s is missing", chainName(chain))
			case cseq > h.seq:
				return bad(seq, "beyond the audit head of %s (head is at its entry %d)", chainName(chain), h.seq)
			case cseq != c.last+1 && e.V < eventChained:
				return bad(seq, "missing (next stored entry is %d)", seq)
			case cseq != c.last+1:
				return bad(seq, "missing before it: entry %d of %s (this is its entry %d)", c.last+1, chainName(chain), cseq)
			case e.Prev != c.prev && c.last == 0:
				return bad(seq, "first entry of %s links to an entry that is not there", chainName(chain))
			case e.Prev != c.prev:
				return bad(seq, "link to entry %d is broken", c.lastSeq)
			case e.ComputeHash() != e.Hash:
				return bad(seq, "hash does not match its content")
			}
			if cl, ok := claims[chain][cseq]; ok && cl.hash != e.Hash {
				return bad(seq, "differs from what checkpoint %d recorded for entry %d of %s", cl.at, cseq, chainName(chain))
			}
			c.last, c.prev, c.lastSeq = cseq, e.Hash, seq
			return nil
		})
		if err != nil || problem != nil {
			return err
		}
		for _, chain := range sortedChains(heads) {
			h := heads[chain]
			c := chains[chain]
			switch {
			case c == nil:
				return bad(1, "missing: %s has no entry but its head is at its entry %d", chainName(chain), h.seq)
			case c.last < h.seq:
				return bad(c.lastSeq+1, "missing (audit head of %s is at its entry %d, the last stored is %d)", chainName(chain), h.seq, c.last)
			case h.hash != c.prev:
				return bad(c.lastSeq, "audit head hash of %s does not match this entry", chainName(chain))
			}
		}
		for _, chain := range sortedChains(claims) {
			for cseq, cl := range claims[chain] {
				if c := chains[chain]; c == nil || c.last < cseq {
					return bad(cl.at, "checkpoint names entry %d of %s, which is gone", cseq, chainName(chain))
				}
			}
		}
		return nil
	})
	if problem != nil {
		return problem, nil
	}
	return nil, err
}

// readHeads returns every chain's head.
func readHeads(tx *Tx) (map[string]chainHeadValue, error) {
	heads := map[string]chainHeadValue{}
	decodeHead := func(chain string, v []byte) error {
		if len(v) != 40 {
			return fmt.Errorf("head of %s: %d bytes", chainName(chain), len(v))
		}
		var h chainHeadValue
		h.seq = binary.BigEndian.Uint64(v)
		copy(h.hash[:], v[8:])
		heads[chain] = h
		return nil
	}
	v, ok, err := tx.get([]byte(keyHead))
	if err != nil {
		return nil, err
	}
	if ok {
		if err := decodeHead("", v); err != nil {
			return nil, err
		}
	}
	err = tx.scan([]byte(pAuditHead), true, func(k, v []byte) error {
		return decodeHead(strings.TrimSuffix(string(k[len(pAuditHead):]), "\x00"), v)
	})
	return heads, err
}

// readClaims returns the heads every checkpoint entry recorded, by chain
// and ChainSeq. A checkpoint that cannot be read is reported by the main
// pass (its hash), so it is skipped here.
func readClaims(ctx context.Context, tx *Tx) (map[string]map[uint64]claim, error) {
	claims := map[string]map[uint64]claim{}
	err := tx.scanCtx(ctx, []byte(pAudit), true, func(_, v []byte) error {
		e, err := decodeEvent(v)
		if err != nil || e.Type != CheckpointType || e.Sandbox != "" || e.V < eventChained {
			return nil
		}
		for k, val := range e.Data {
			chain, ok := strings.CutPrefix(k, "head:")
			if !ok {
				continue
			}
			n, hx, ok := strings.Cut(val, ":")
			seq, err := strconv.ParseUint(n, 10, 64)
			var h [32]byte
			if !ok || err != nil || len(hx) != 64 {
				continue
			}
			if b, err := hex.DecodeString(hx); err != nil {
				continue
			} else {
				copy(h[:], b)
			}
			if claims[chain] == nil {
				claims[chain] = map[uint64]claim{}
			}
			claims[chain][seq] = claim{hash: h, at: e.Seq}
		}
		return nil
	})
	return claims, err
}

// sortedChains returns the keys of m in order, for stable messages.
func sortedChains[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
