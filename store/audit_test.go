package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

// tamperChain is the one sandbox of history(t, n, 1): its chain is the
// whole log, in order.
const tamperChain = "sb0\n\xff"

// history writes n audit entries, each in its own Update beside a change,
// about chains sandboxes in turn.
func history(t *testing.T, n, chains int) *Store {
	t.Helper()
	s, _ := newStore(t)
	for i := 1; i <= n; i++ {
		mustUpdate(t, s, func(tx *Tx) error {
			name := fmt.Sprintf("sb%d\n\xff", i%chains)
			if err := tx.PutSandbox(&Sandbox{Name: name}); err != nil {
				return err
			}
			e, err := tx.Append(time.Now(), "sandbox.create", name, map[string]string{"i": fmt.Sprint(i), "path": "/x\x1b"})
			if err == nil && e.Seq != uint64(i) {
				t.Fatalf("seq %d, want %d", e.Seq, i)
			}
			return err
		})
	}
	return s
}

func raw(t *testing.T, s *Store, fn func(txn *Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, txn *Tx, k []byte) []byte {
	t.Helper()
	v, ok, err := txn.get(k)
	if err != nil || !ok {
		t.Fatal(k, ok, err)
	}
	return v
}

func rawEvent(t *testing.T, txn *Tx, seq uint64) *Event {
	t.Helper()
	e, err := DecodeEvent(rawGet(t, txn, AuditKey(seq)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func rawPutEvent(t *testing.T, txn *Tx, seq uint64, e *Event) {
	t.Helper()
	b, err := EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.set(AuditKey(seq), b); err != nil {
		t.Fatal(err)
	}
}

func setHead(t *testing.T, txn *Tx, seq uint64, h [32]byte) {
	t.Helper()
	v := append(AuditKey(seq)[len(pAudit):], h[:]...)
	if err := txn.set(AuditChainHeadKey(tamperChain), v); err != nil {
		t.Fatal(err)
	}
}

func TestAuditIntact(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s := history(t, 20, 3)
		if p, err := s.VerifyAudit(context.Background()); err != nil || p != nil {
			t.Fatalf("intact chain: %v %v", p, err)
		}
		var n int
		prev := map[string][32]byte{}
		last := map[string]uint64{}
		if err := s.ForEachEvent(context.Background(), "", func(e *Event) error {
			n++
			if e.Prev != prev[e.Sandbox] || e.ChainSeq != last[e.Sandbox]+1 || e.Seq != uint64(n) || e.Data["path"] != "/x\x1b" || e.Time.Location().String() != "UTC" {
				t.Errorf("entry %d: %+v", n, e)
			}
			prev[e.Sandbox], last[e.Sandbox] = e.Hash, e.ChainSeq
			return nil
		}); err != nil || n != 20 || len(prev) != 3 {
			t.Fatal(n, err)
		}
		empty, _ := newStore(t)
		if p, err := empty.VerifyAudit(context.Background()); err != nil || p != nil {
			t.Fatalf("empty chain: %v %v", p, err)
		}
	})
}

func TestAuditTamper(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		const n = 10
		cases := []struct {
			name    string
			tamper  func(t *testing.T, txn *Tx)
			seq     uint64
			message string
		}{
			{"alter data", func(t *testing.T, txn *Tx) {
				e := rawEvent(t, txn, 5)
				e.Data["i"] = "666"
				rawPutEvent(t, txn, 5, e)
			}, 5, "hash does not match"},
			{"alter and rehash", func(t *testing.T, txn *Tx) {
				e := rawEvent(t, txn, 5)
				e.User = "mallory"
				e.Hash = e.ComputeHash()
				rawPutEvent(t, txn, 5, e)
			}, 6, "link to entry 5 is broken"},
			{"alter raw bytes", func(t *testing.T, txn *Tx) {
				// one byte of the content (the type name), not of gob's type info
				v := rawGet(t, txn, AuditKey(4))
				i := strings.Index(string(v), "sandbox.create")
				v[i+3] ^= 0x20
				txn.set(AuditKey(4), v)
			}, 4, "hash does not match"},
			{"delete middle", func(t *testing.T, txn *Tx) {
				txn.del(AuditKey(4))
			}, 5, "missing before it: entry 4 of the chain of"},
			{"swap", func(t *testing.T, txn *Tx) {
				a, b := rawGet(t, txn, AuditKey(3)), rawGet(t, txn, AuditKey(7))
				txn.set(AuditKey(3), b)
				txn.set(AuditKey(7), a)
			}, 3, "holds entry 7"},
			{"swap renumbered", func(t *testing.T, txn *Tx) {
				a, b := rawEvent(t, txn, 3), rawEvent(t, txn, 7)
				a.Seq, b.Seq = 7, 3
				rawPutEvent(t, txn, 3, b)
				rawPutEvent(t, txn, 7, a)
			}, 3, "missing before it: entry 3"},
			{"insert", func(t *testing.T, txn *Tx) {
				// a forged but self-consistent entry at 6, later entries shifted up
				for seq := uint64(n); seq >= 6; seq-- {
					txn.set(AuditKey(seq+1), rawGet(t, txn, AuditKey(seq)))
				}
				prev := rawEvent(t, txn, 5)
				f := &Event{V: 2, Seq: 6, ChainSeq: 6, Sandbox: tamperChain, Time: prev.Time, Type: "forged", Prev: prev.Hash}
				f.Hash = f.ComputeHash()
				rawPutEvent(t, txn, 6, f)
				setHead(t, txn, n+1, rawEvent(t, txn, n).Hash)
			}, 7, "holds entry 6"},
			{"append beyond head", func(t *testing.T, txn *Tx) {
				last := rawEvent(t, txn, n)
				f := &Event{V: 2, Seq: n + 1, ChainSeq: n + 1, Sandbox: tamperChain, Time: last.Time, Type: "forged", Prev: last.Hash}
				f.Hash = f.ComputeHash()
				rawPutEvent(t, txn, n+1, f)
			}, n + 1, "beyond the audit head"},
			{"delete tail", func(t *testing.T, txn *Tx) {
				txn.del(AuditKey(n))
			}, n, "missing"},
			{"head rollback", func(t *testing.T, txn *Tx) {
				setHead(t, txn, n-1, rawEvent(t, txn, n-1).Hash)
			}, n, "beyond the audit head"},
			{"head hash", func(t *testing.T, txn *Tx) {
				setHead(t, txn, n, rawEvent(t, txn, n-1).Hash)
			}, n, "head hash"},
			{"head deleted", func(t *testing.T, txn *Tx) {
				txn.del(AuditChainHeadKey(tamperChain))
			}, 1, "the audit head of the chain of \"sb0\\n\\xff\" is missing"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s := history(t, n, 1)
				raw(t, s, func(txn *Tx) error { c.tamper(t, txn); return nil })
				p, err := s.VerifyAudit(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if p == nil {
					t.Fatal("tampering not detected")
				}
				if p.Seq != c.seq || !strings.Contains(p.Message, c.message) || !strings.HasPrefix(p.Message, fmt.Sprintf("entry %d: ", c.seq)) {
					t.Errorf("got %d %q, want %d %q", p.Seq, p.Message, c.seq, c.message)
				}
				t.Log(p.Message)
			})
		}
	})
}

func TestAppendTakesCallersTime(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		at := time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("x", 3600))
		mustUpdate(t, s, func(tx *Tx) error {
			_, err := tx.Append(at, "gc", "", nil)
			return err
		})
		var e *Event
		raw(t, s, func(txn *Tx) error { e = rawEvent(t, txn, 1); return nil })
		if !e.Time.Equal(at) || e.Time.Location() != time.UTC {
			t.Fatalf("audit time %v, want %v in UTC", e.Time, at)
		}
	})
}

// Chains per sandbox: an entry removed from one chain among interleaved
// ones is caught at that chain's next entry; a chain removed whole with its
// head is caught once a checkpoint has recorded its head, as is a chain
// cut back to an earlier entry with its head moved back.
func TestAuditChains(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		verify := func(s *Store) *AuditProblem {
			t.Helper()
			p, err := s.VerifyAudit(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		// 12 entries over sb0, sb1, sb2 (entry i is about sb(i%3)).
		s := history(t, 12, 3)
		raw(t, s, func(txn *Tx) error { return txn.del(AuditKey(5)) }) // sb2's 2nd
		if p := verify(s); p == nil || p.Seq != 8 || !strings.Contains(p.Message, "missing before it: entry 2 of the chain of \"sb2\\n\\xff\"") {
			t.Fatalf("entry of one chain removed: %+v", p)
		}

		removeChain := func(s *Store, name string) {
			raw(t, s, func(txn *Tx) error {
				for seq := uint64(1); seq <= 12; seq++ {
					if v, ok, _ := txn.get(AuditKey(seq)); ok {
						if e, _ := DecodeEvent(v); e != nil && e.Sandbox == name {
							txn.del(AuditKey(seq))
						}
					}
				}
				return txn.del(AuditChainHeadKey(name))
			})
		}
		s = history(t, 12, 3)
		removeChain(s, "sb1\n\xff")
		if p := verify(s); p != nil {
			t.Fatalf("a chain removed whole before any checkpoint: %+v (expected to pass: nothing recorded it)", p)
		}

		s = history(t, 12, 3)
		var cp *Event
		mustUpdate(t, s, func(tx *Tx) (err error) { cp, err = tx.Checkpoint(time.Now()); return })
		if cp.Sandbox != "" || cp.Data["chains"] != "3" || cp.Data["head:sb1\n\xff"] == "" {
			t.Fatalf("checkpoint %+v", cp)
		}
		if p := verify(s); p != nil {
			t.Fatalf("intact after a checkpoint: %+v", p)
		}
		removeChain(s, "sb1\n\xff")
		if p := verify(s); p == nil || p.Seq != cp.Seq || !strings.Contains(p.Message, "checkpoint names entry 4 of the chain of \"sb1\\n\\xff\", which is gone") {
			t.Fatalf("a chain removed after a checkpoint: %+v", p)
		}

		// cut sb0's chain back to its 2nd entry, head moved back with it
		s = history(t, 12, 3)
		mustUpdate(t, s, func(tx *Tx) (err error) { _, err = tx.Checkpoint(time.Now()); return })
		raw(t, s, func(txn *Tx) error {
			second := rawEvent(t, txn, 6)
			for _, seq := range []uint64{9, 12} {
				txn.del(AuditKey(seq))
			}
			return txn.set(AuditChainHeadKey("sb0\n\xff"), append(binary.BigEndian.AppendUint64(nil, 2), second.Hash[:]...))
		})
		if p := verify(s); p == nil || !strings.Contains(p.Message, "checkpoint names entry 4 of the chain of \"sb0\\n\\xff\"") {
			t.Fatalf("a chain cut back after a checkpoint: %+v", p)
		}

		// a forged checkpoint is caught by its hash
		s = history(t, 6, 3)
		mustUpdate(t, s, func(tx *Tx) (err error) { cp, err = tx.Checkpoint(time.Now()); return })
		raw(t, s, func(txn *Tx) error {
			e := rawEvent(t, txn, cp.Seq)
			e.Data["head:sb0\n\xff"] = "9:" + strings.Repeat("00", 32)
			rawPutEvent(t, txn, cp.Seq, e)
			return nil
		})
		if p := verify(s); p == nil || p.Seq != cp.Seq {
			t.Fatalf("forged checkpoint: %+v", p)
		}
	})
}

// A store written before chains per sandbox (the schema 1 fixture: one
// chain) verifies after new, chained entries are appended: its single
// chain goes on as the fleet chain, and entry numbers keep growing.
func TestAuditLegacyChainContinues(t *testing.T) {
	dir := copyFixture(t)
	s := openStore(t, dir)
	t.Cleanup(func() { s.Close() })
	var legacy uint64
	s.ForEachEvent(context.Background(), "", func(e *Event) error {
		if e.V != 0 {
			t.Fatalf("fixture entry %d is chained", e.Seq)
		}
		legacy = e.Seq
		return nil
	})
	if legacy == 0 {
		t.Fatal("fixture has no audit entries")
	}
	var a, b *Event
	mustUpdate(t, s, func(tx *Tx) (err error) {
		if a, err = tx.Append(time.Now(), "gc", "", nil); err != nil {
			return err
		}
		b, err = tx.Append(time.Now(), "sandbox.open", "docs", nil)
		return err
	})
	if a.Seq != legacy+1 || a.ChainSeq != legacy+1 || b.Seq != legacy+2 || b.ChainSeq == 0 {
		t.Fatalf("after %d legacy entries: %+v, %+v", legacy, a, b)
	}
	if p, err := s.VerifyAudit(context.Background()); err != nil || p != nil {
		t.Fatalf("legacy chain and new chains: %+v %v", p, err)
	}
	// removing the last legacy entry is caught as before
	raw(t, s, func(txn *Tx) error { return txn.del(AuditKey(legacy - 1)) })
	if p, _ := s.VerifyAudit(context.Background()); p == nil || p.Seq != legacy-1 || !strings.Contains(p.Message, "missing") {
		t.Fatalf("legacy entry removed: %+v", p)
	}
}
