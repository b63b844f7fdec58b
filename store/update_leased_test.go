package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestUpdateLeased: a write under the lease commits with the holder's
// token and is fenced (nothing written) with another; on PostgreSQL a
// takeover of the lease waits for a leased write under way, so the write
// never commits after the lease changed hands.
func TestUpdateLeased(t *testing.T) { forEachDriver(t, testUpdateLeased) }

func testUpdateLeased(t *testing.T) {
	s, where := newStore(t)
	var l *Lease
	mustUpdate(t, s, func(tx *Tx) error {
		if _, err := tx.Heartbeat("h1", time.Hour); err != nil {
			return err
		}
		var err error
		l, _, err = tx.TakeLease("docs", "h1")
		return err
	})
	if err := s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error { return tx.PutMeta("w", "1") }); err != nil {
		t.Fatal(err)
	}
	err := s.UpdateLeased("docs", "h1", l.Token+1, func(tx *Tx) error { return tx.PutMeta("w", "2") })
	if !IsFenced(err) {
		t.Fatalf("a write with a stale token: %v, want fenced", err)
	}
	if v := getMeta(t, s, "w"); v != "1" {
		t.Fatalf("meta w = %q after the fenced write, want 1", v)
	}
	if driverOf(t) != "postgres" {
		return
	}
	// A second process evicts h1 while h1's leased write is under way.
	other := openStore(t, where)
	defer other.Close()
	inside, evicted := make(chan struct{}), make(chan error, 1)
	go func() {
		<-inside
		evicted <- other.Update(func(tx *Tx) error { _, err := tx.EvictHost("h1", "test"); return err })
	}()
	first := true
	err = s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error {
		if first {
			first = false
			close(inside)
			time.Sleep(300 * time.Millisecond) // the eviction waits for the lease's row
			select {
			case err := <-evicted:
				t.Errorf("the eviction committed during a leased write: %v", err)
			default:
			}
		}
		return tx.PutMeta("w", "3")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-evicted; err != nil {
		t.Fatal(err)
	}
	err = s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error { return tx.PutMeta("w", "4") })
	if !IsFenced(err) || errors.Is(err, context.Canceled) {
		t.Fatalf("a write after the eviction: %v, want fenced", err)
	}
	if v := getMeta(t, s, "w"); v != "3" {
		t.Fatalf("meta w = %q, want 3", v)
	}
}

func getMeta(t *testing.T, s *Store, k string) string {
	t.Helper()
	var v string
	if err := s.View(func(tx *Tx) error {
		var err error
		v, _, err = tx.GetMeta(k)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUpdateLeaseTakerRace: hosts of their own Store race to take one
// sandbox's lease in UpdateLeaseTaker, over and over, the lease freed
// between rounds (no row: the takers insert it) or held by a dead host
// (a row to take over). Each round exactly one host gets it, with a token
// above every earlier one; the others are refused naming the winner.
func TestUpdateLeaseTakerRace(t *testing.T) { forEachDriver(t, testUpdateLeaseTakerRace) }

func testUpdateLeaseTakerRace(t *testing.T) {
	s, where := newStore(t)
	hosts := []*Store{s}
	if driverOf(t) == "postgres" {
		for range 3 {
			o := openStore(t, where)
			defer o.Close()
			hosts = append(hosts, o)
		}
	}
	var last uint64
	for round := range 12 {
		if round%2 == 1 {
			// The last winner dies: its lease stays, its heartbeat expires.
			mustUpdate(t, s, func(tx *Tx) error { _, err := tx.Heartbeat("dead", time.Millisecond); return err })
			mustUpdate(t, s, func(tx *Tx) error {
				return tx.put(key(pLease, "docs"), &Lease{Sandbox: "docs", Host: "dead", Token: last, Taken: tx.Now()})
			})
			time.Sleep(5 * time.Millisecond)
		} else {
			mustUpdate(t, s, func(tx *Tx) error { return tx.DropLease("docs") })
		}
		type result struct {
			host  string
			token uint64
			err   error
		}
		res := make(chan result, len(hosts))
		for i, h := range hosts {
			go func() {
				id := string(rune('a'+i)) + "host"
				var tok uint64
				err := h.UpdateLeaseTaker("docs", func(tx *Tx) error {
					if _, err := tx.Heartbeat(id, time.Hour); err != nil {
						return err
					}
					l, _, err := tx.TakeLease("docs", id)
					if err == nil {
						tok = l.Token
					}
					return err
				})
				res <- result{id, tok, err}
			}()
		}
		var winner string
		var refused []*HeldError
		for range hosts {
			r := <-res
			var held *HeldError
			switch {
			case r.err == nil && winner != "":
				t.Fatalf("round %d: both %s and %s took the lease", round, winner, r.host)
			case r.err == nil:
				winner = r.host
				if r.token <= last {
					t.Fatalf("round %d: token %d not above %d", round, r.token, last)
				}
				last = r.token
			case errors.As(r.err, &held):
				refused = append(refused, held)
			default:
				t.Fatalf("round %d: %s: %v", round, r.host, r.err)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: nobody took the lease", round)
		}
		for _, h := range refused {
			if h.Holder != winner {
				t.Fatalf("round %d: refused naming %s, winner %s", round, h.Holder, winner)
			}
		}
		mustView(t, s, func(tx *Tx) error {
			l, err := tx.GetLease("docs")
			if err == nil && (l.Host != winner || l.Token != last) {
				t.Errorf("round %d: lease %s/%d in the ledger, winner %s/%d", round, l.Host, l.Token, winner, last)
			}
			return err
		})
	}
}

// TestLeaseTokensGrowAcrossRelease: a take whose transaction began before
// another host's take and release of the same lease must not commit a
// token older than that host's. With the freed lease's row deleted it
// did: the first taker had locked no row, and its insert met none.
func TestLeaseTokensGrowAcrossRelease(t *testing.T) {
	where := pgtest.URL(t) // badger admits one process: no such race
	s := openStore(t, where)
	defer s.Close()
	other := openStore(t, where)
	defer other.Close()
	take := func(st *Store, host string, inside func()) (uint64, error) {
		var tok uint64
		first := true
		err := st.UpdateLeaseTaker("docs", func(tx *Tx) error {
			if _, err := tx.Heartbeat(host, time.Hour); err != nil {
				return err
			}
			l, _, err := tx.TakeLease("docs", host)
			if err != nil {
				return err
			}
			tok = l.Token
			if first && inside != nil {
				first = false
				inside()
			}
			return nil
		})
		return tok, err
	}
	// A lease taken and released once: its row is there, freed.
	tok, err := take(s, "h0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateLeased("docs", "h0", tok, func(tx *Tx) error { return tx.ReleaseLease("docs", "h0", tok) }); err != nil {
		t.Fatal(err)
	}
	// h1 draws its token, then h2 takes and releases the lease before h1
	// commits (or waits for h1, which is what must happen).
	var h2tok uint64
	h2done := make(chan error, 1)
	h1tok, err := take(s, "h1", func() {
		go func() {
			tk, err := take(other, "h2", nil)
			if err == nil {
				h2tok = tk
				err = other.UpdateLeased("docs", "h2", tk, func(tx *Tx) error { return tx.ReleaseLease("docs", "h2", tk) })
			}
			h2done <- err
		}()
		select {
		case err := <-h2done:
			h2done <- err
		case <-time.After(500 * time.Millisecond): // h2 waits for h1's lock
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	h2err := <-h2done
	var held *HeldError
	switch {
	case errors.As(h2err, &held) && held.Holder == "h1":
		// h2 waited for h1, then found h1's lease: the right outcome.
	case h2err == nil && h2tok > h1tok:
		t.Fatalf("h2 took and released the lease (token %d) inside h1's take, and h1 then committed the older token %d", h2tok, h1tok)
	case h2err == nil:
		// h2 came after h1's commit and h1's lease was released: not the race.
		t.Fatalf("h2 took the lease (token %d) while h1 held it (token %d)", h2tok, h1tok)
	default:
		t.Fatalf("h2: %v", h2err)
	}
	mustView(t, s, func(tx *Tx) error {
		l, err := tx.GetLease("docs")
		if err == nil && (l.Host != "h1" || l.Token != h1tok) {
			t.Errorf("lease %s/%d, want h1/%d", l.Host, l.Token, h1tok)
		}
		return err
	})
}
