package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spillway/spillway/store"
)

// fleetTakeover: host A holds a sandbox's lease and heartbeats every TTL/3
// (as `spillway fleet agent` does); it is killed at a random moment (its
// heartbeats stop, the lease stays); host B retries the open every 50 ms.
// The figure is the time from the kill to B's granted open, against the
// bound TTL + one heartbeat interval. Store lease API, one Store a host.
func (b *bench) fleetTakeover(ctx context.Context) error {
	ttl := fleetSize(b.cfg, 2*time.Second, 500*time.Millisecond, 300*time.Millisecond)
	reps := fleetSize(b.cfg, 7, 3, 2)
	const retry = 50 * time.Millisecond
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	sts, closeAll, err := fleetStores(ctx, url, 2)
	if err != nil {
		return err
	}
	defer closeAll()
	lg := &leaseLog{ttl: ttl, holder: map[string]heldBy{}, seen: map[string]time.Time{}, last: map[string]uint64{}}
	a := &simHost{id: "hA", st: sts[0], lg: lg, ttl: ttl, held: map[string]uint64{}}
	hb := &simHost{id: "hB", st: sts[1], lg: lg, ttl: ttl, held: map[string]uint64{}}
	beat := ttl / 3
	var took []time.Duration
	var refusals int
	for rep := range reps {
		sb := fmt.Sprintf("t%d", rep)
		a.ttl = ttl
		if err := a.open(sb); err != nil {
			return err
		}
		if _, ok := a.held[sb]; !ok {
			return fmt.Errorf("host A did not get the free lease of %s", sb)
		}
		stop := a.beatEvery(beat)
		time.Sleep(ttl/2 + time.Duration(rand.Int64N(int64(ttl)))) // a random phase of the heartbeat
		stop()
		killed := time.Now()
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := hb.st.Update(func(tx *store.Tx) error {
				if _, err := tx.Heartbeat(hb.id, ttl); err != nil {
					return err
				}
				_, _, err := tx.TakeLease(sb, hb.id)
				return err
			})
			var held *store.HeldError
			if errors.As(err, &held) {
				refusals++
				time.Sleep(retry)
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		took = append(took, time.Since(killed))
		delete(a.held, sb)
	}
	grp := fmt.Sprintf("fleet-takeover (TTL %s, heartbeat every %s, retry every %s)", ttl, fmtDur(beat), fmtDur(retry))
	b.add(grp, "host killed → other host's open granted", took)
	b.addValue(grp, "refused retries before it (all runs)", fmt.Sprint(refusals))
	b.ratio(fmt.Sprintf("takeover, slowest of %d / (TTL + one heartbeat)", reps), maxDur(took), ttl+beat, 1)
	b.logf("fleet-takeover: median %s, max %s, bound %s", fmtDur(median(took)), fmtDur(maxDur(took)), fmtDur(ttl+beat))
	return nil
}

// beatEvery renews the host's heartbeat every interval until the returned
// function is called (which waits for a heartbeat under way).
func (h *simHost) beatEvery(interval time.Duration) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			h.st.Update(func(tx *store.Tx) error {
				_, err := tx.Heartbeat(h.id, h.ttl)
				return err
			})
		}
	}()
	return func() { close(done); <-stopped }
}

func maxDur(s []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range s {
		m = max(m, d)
	}
	return m
}
