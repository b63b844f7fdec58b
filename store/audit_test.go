package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// history writes n audit entries, each in its own Update beside a change.
func history(t *testing.T, n int) *Store {
	t.Helper()
	s, _ := newStore(t)
	for i := 1; i <= n; i++ {
		mustUpdate(t, s, func(tx *Tx) error {
			name := fmt.Sprintf("sb%d\n\xff", i%3)
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
	if err := txn.set(AuditHeadKey(), v); err != nil {
		t.Fatal(err)
	}
}

func TestAuditIntact(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s := history(t, 20)
		if p, err := s.VerifyAudit(context.Background()); err != nil || p != nil {
			t.Fatalf("intact chain: %v %v", p, err)
		}
		var n int
		var prev [32]byte
		if err := s.ForEachEvent(context.Background(), "", func(e *Event) error {
			n++
			if e.Prev != prev || e.Seq != uint64(n) || e.Data["path"] != "/x\x1b" || e.Time.Location().String() != "UTC" {
				t.Errorf("entry %d: %+v", n, e)
			}
			prev = e.Hash
			return nil
		}); err != nil || n != 20 {
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
			}, 4, "missing"},
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
			}, 3, "link"},
			{"insert", func(t *testing.T, txn *Tx) {
				// a forged but self-consistent entry at 6, later entries shifted up
				for seq := uint64(n); seq >= 6; seq-- {
					txn.set(AuditKey(seq+1), rawGet(t, txn, AuditKey(seq)))
				}
				prev := rawEvent(t, txn, 5)
				f := &Event{Seq: 6, Time: prev.Time, Type: "forged", Prev: prev.Hash}
				f.Hash = f.ComputeHash()
				rawPutEvent(t, txn, 6, f)
				setHead(t, txn, n+1, rawEvent(t, txn, n).Hash)
			}, 7, "holds entry 6"},
			{"append beyond head", func(t *testing.T, txn *Tx) {
				last := rawEvent(t, txn, n)
				f := &Event{Seq: n + 1, Time: last.Time, Type: "forged", Prev: last.Hash}
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
				txn.del(AuditHeadKey())
			}, 1, "head is missing"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				s := history(t, n)
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
