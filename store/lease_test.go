package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/internal/pgtest"
)

// fakeClock is a ledger clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func withClock(s *Store) *fakeClock {
	c := &fakeClock{time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}
	s.clock = c.now
	return c
}

// A lease goes to one live host at a time; the same host gets its own
// lease back; a host silent past its TTL loses it to the next host, with a
// new, larger token, and every write it tries with its old token is fenced.
func TestLeaseTakeoverAndFencing(t *testing.T) {
	s, _ := newStore(t)
	clock := withClock(s)
	var l1 *Lease
	mustUpdate(t, s, func(tx *Tx) error {
		if _, err := tx.Heartbeat("h1", 10*time.Second); err != nil {
			return err
		}
		var prev *Lease
		var err error
		l1, prev, err = tx.TakeLease("docs", "h1")
		if prev != nil {
			t.Errorf("first lease replaced %+v", prev)
		}
		return err
	})
	mustUpdate(t, s, func(tx *Tx) error {
		again, _, err := tx.TakeLease("docs", "h1")
		if err == nil && again.Token != l1.Token {
			t.Errorf("h1 got a new token %d for its own lease %d", again.Token, l1.Token)
		}
		return err
	})
	clock.advance(9 * time.Second)
	err := s.Update(func(tx *Tx) error {
		_, _, err := tx.TakeLease("docs", "h2")
		return err
	})
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "h1" || !errdefs.IsUnavailable(err) {
		t.Fatalf("h2 took a live host's lease: %v", err)
	}
	if got := held.Error(); got != "sandbox docs is in use on host h1 (last seen 9s ago)" {
		t.Errorf("message %q", got)
	}
	clock.advance(2 * time.Second) // h1 is 11 s silent: past its TTL
	var l2 *Lease
	mustUpdate(t, s, func(tx *Tx) error {
		var prev *Lease
		var err error
		l2, prev, err = tx.TakeLease("docs", "h2")
		if err == nil && (prev == nil || prev.Host != "h1") {
			t.Errorf("takeover did not report h1's lease: %+v", prev)
		}
		return err
	})
	if l2.Token <= l1.Token || l2.Host != "h2" {
		t.Fatalf("new lease %+v after %+v", l2, l1)
	}
	err = s.Update(func(tx *Tx) error { return tx.CheckLease("docs", "h1", l1.Token) })
	var fenced *FencedError
	if !errors.As(err, &fenced) || fenced.Holder != "h2" || !IsFenced(err) || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("h1's write with the old token: %v", err)
	}
	// h1 comes back: a heartbeat makes it live, but the lease stays h2's.
	mustUpdate(t, s, func(tx *Tx) error { _, err := tx.Heartbeat("h1", 10*time.Second); return err })
	if err := s.Update(func(tx *Tx) error { return tx.ReleaseLease("docs", "h1", l1.Token) }); !IsFenced(err) {
		t.Fatalf("h1 released h2's lease: %v", err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.ReleaseLease("docs", "h2", l2.Token) })
	mustUpdate(t, s, func(tx *Tx) error {
		l3, prev, err := tx.TakeLease("docs", "h1")
		if err == nil && (prev != nil || l3.Token <= l2.Token) {
			t.Errorf("after a release: %+v replaced %+v", l3, prev)
		}
		return err
	})
}

// Evicting a host frees its leases at once, whatever its heartbeat says,
// and only its own.
func TestEvictHost(t *testing.T) {
	s, _ := newStore(t)
	withClock(s)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, h := range []string{"h1", "h2"} {
			if _, err := tx.Heartbeat(h, time.Hour); err != nil {
				return err
			}
		}
		for sb, h := range map[string]string{"a": "h1", "b": "h1", "c": "h2"} {
			if _, _, err := tx.TakeLease(sb, h); err != nil {
				return err
			}
		}
		return nil
	})
	mustUpdate(t, s, func(tx *Tx) error {
		freed, err := tx.EvictHost("h1", "disk died")
		if err == nil && len(freed) != 2 {
			t.Errorf("freed %v", freed)
		}
		return err
	})
	mustUpdate(t, s, func(tx *Tx) error {
		if l, prev, err := tx.TakeLease("a", "h2"); err != nil || prev != nil || l.Host != "h2" {
			t.Errorf("a after the eviction: %+v %+v %v", l, prev, err)
		}
		if _, _, err := tx.TakeLease("c", "h3"); err == nil {
			t.Error("h3 took live h2's lease")
		}
		h, err := tx.GetHost("h1")
		if err == nil && (h.Live(tx.Now()) || h.EvictReason != "disk died") {
			t.Errorf("h1 after the eviction: %+v", h)
		}
		return err
	})
	if err := s.Update(func(tx *Tx) error { _, err := tx.EvictHost("nosuch", "x"); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("evict of an unknown host: %v", err)
	}
}

// A lease held by a host that never sent a heartbeat is free.
func TestLeaseOfUnknownHostIsFree(t *testing.T) {
	s, _ := newStore(t)
	withClock(s)
	mustUpdate(t, s, func(tx *Tx) error { _, _, err := tx.TakeLease("docs", "ghost"); return err })
	mustUpdate(t, s, func(tx *Tx) error {
		_, prev, err := tx.TakeLease("docs", "h1")
		if err == nil && (prev == nil || prev.Host != "ghost") {
			t.Errorf("prev %+v", prev)
		}
		return err
	})
}

// A heartbeat without a TTL keeps the one the agent set.
func TestHeartbeatKeepsTheTTL(t *testing.T) {
	s, _ := newStore(t)
	withClock(s)
	mustUpdate(t, s, func(tx *Tx) error {
		if h, err := tx.Heartbeat("h1", 0); err != nil || h.TTL != DefaultHostTTL {
			t.Errorf("new host: %+v %v", h, err)
		}
		if _, err := tx.Heartbeat("h1", 3*time.Second); err != nil {
			return err
		}
		h, err := tx.Heartbeat("h1", 0)
		if err == nil && h.TTL != 3*time.Second {
			t.Errorf("TTL %s after a heartbeat without one, want the agent's 3s", h.TTL)
		}
		return err
	})
}

// On both drivers, of many hosts racing for one free lease exactly one
// wins and the others are refused naming it (PostgreSQL: SERIALIZABLE
// transactions from separate connections).
func TestLeaseRace(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, where := newStore(t)
		stores := []*Store{s}
		if driverOf(t) == "postgres" {
			for i := 1; i < 4; i++ {
				o := openStore(t, where)
				t.Cleanup(func() { o.Close() })
				stores = append(stores, o)
			}
		}
		for round := 0; round < 20; round++ {
			sb := fmt.Sprintf("sb%d", round)
			var wg sync.WaitGroup
			var won atomic.Int32
			errs := make(chan error, 8)
			for h := 0; h < 8; h++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					host := fmt.Sprintf("h%d", h)
					err := stores[h%len(stores)].Update(func(tx *Tx) error {
						if _, err := tx.Heartbeat(host, time.Minute); err != nil {
							return err
						}
						_, _, err := tx.TakeLease(sb, host)
						return err
					})
					var held *HeldError
					switch {
					case err == nil:
						won.Add(1)
					case !errors.As(err, &held):
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if won.Load() != 1 {
				t.Fatalf("round %d: %d hosts hold the lease", round, won.Load())
			}
		}
	})
}

// On PostgreSQL the ledger's clock is the server's: a host silent past its
// TTL by the server's clock loses its lease.
func TestLeaseServerClock(t *testing.T) {
	s := openStore(t, pgtest.URL(t))
	t.Cleanup(func() { s.Close() })
	var first time.Time
	mustUpdate(t, s, func(tx *Tx) error {
		first = tx.Now()
		if _, err := tx.Heartbeat("h1", 3*time.Second); err != nil {
			return err
		}
		_, _, err := tx.TakeLease("docs", "h1")
		return err
	})
	if d := time.Since(first); d < -time.Minute || d > time.Minute {
		t.Fatalf("server clock %s is far from this host's", first)
	}
	if err := s.Update(func(tx *Tx) error { _, _, err := tx.TakeLease("docs", "h2"); return err }); err == nil {
		t.Fatal("h2 took a live lease")
	}
	time.Sleep(3300 * time.Millisecond)
	mustUpdate(t, s, func(tx *Tx) error {
		_, prev, err := tx.TakeLease("docs", "h2")
		if err == nil && (prev == nil || prev.Host != "h1") {
			t.Errorf("prev %+v", prev)
		}
		return err
	})
}

// A host is forgotten only when it is not live and holds no lease: an
// eviction first, then its row goes.
func TestForgetHost(t *testing.T) {
	s, _ := newStore(t)
	withClock(s)
	mustUpdate(t, s, func(tx *Tx) error {
		if _, err := tx.Heartbeat("h1", time.Hour); err != nil {
			return err
		}
		_, _, err := tx.TakeLease("a", "h1")
		return err
	})
	if err := s.Update(func(tx *Tx) error { return tx.ForgetHost("h1") }); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "is live") {
		t.Fatalf("forget a live host: %v", err)
	}
	mustUpdate(t, s, func(tx *Tx) error {
		// dead, but still holding its lease
		h, err := tx.GetHost("h1")
		if err != nil {
			return err
		}
		h.LastSeen = tx.Now().Add(-2 * time.Hour)
		return tx.put(key(pHost, "h1"), h)
	})
	if err := s.Update(func(tx *Tx) error { return tx.ForgetHost("h1") }); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "holds the lease of a") {
		t.Fatalf("forget a host holding a lease: %v", err)
	}
	mustUpdate(t, s, func(tx *Tx) error { _, err := tx.EvictHost("h1", "gone"); return err })
	mustUpdate(t, s, func(tx *Tx) error { return tx.ForgetHost("h1") })
	if err := s.View(func(tx *Tx) error { _, err := tx.GetHost("h1"); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("h1 after forget: %v", err)
	}
}
