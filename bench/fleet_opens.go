package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/store"
)

// fleetOpens: simulated hosts race for the leases of a few sandboxes with
// random opens, closes, held leases and host deaths, through the store's
// lease API: the transactions persist's open (Heartbeat + TakeLease) and
// close (CheckLease + ReleaseLease) run, without mounts. An independent
// log checks every grant: no open may be granted while another host that
// heartbeated within its TTL (ledger clock) holds the lease, tokens only
// grow, and a host's write with a token that was taken over is refused.
func (b *bench) fleetOpens(ctx context.Context) error {
	const hosts, sandboxes = 4, 8
	attempts := fleetSize(b.cfg, 10000, 600, 200)
	ttl := fleetSize(b.cfg, time.Second, 500*time.Millisecond, 300*time.Millisecond)
	die := fleetSize(b.cfg, 1000, 150, 50)
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	sts, closeAll, err := fleetStores(ctx, url, hosts)
	if err != nil {
		return err
	}
	defer closeAll()
	lg := &leaseLog{ttl: ttl, holder: map[string]heldBy{}, seen: map[string]time.Time{}, last: map[string]uint64{}}
	var left atomic.Int64
	left.Store(int64(attempts))
	var wg sync.WaitGroup
	errs := make([]error, hosts)
	t0 := time.Now()
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &simHost{id: fmt.Sprintf("h%d", i+1), st: sts[i], lg: lg, ttl: ttl, held: map[string]uint64{}, rnd: rand.New(rand.NewPCG(uint64(i), 16))}
			errs[i] = h.run(ctx, &left, sandboxes, die)
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	grp := fmt.Sprintf("fleet-opens (%d hosts, %d sandboxes, TTL %s)", hosts, sandboxes, ttl)
	b.addValue(grp, "open attempts", fmt.Sprint(attempts))
	b.addValue(grp, "granted / refused (held by a live host)", fmt.Sprintf("%d / %d", lg.granted, lg.refused))
	b.addValue(grp, "takeovers from dead hosts / host deaths", fmt.Sprintf("%d / %d", lg.takeovers, lg.deaths))
	b.addValue(grp, "late closes fenced / late closes accepted (lease untouched)", fmt.Sprintf("%d / %d", lg.fenced, lg.lateOK))
	b.addValue(grp, "opens per second (attempts; granted)", fmt.Sprintf("%.0f; %.0f", float64(attempts)/wall.Seconds(), float64(lg.granted)/wall.Seconds()))
	b.addValue(grp, "double opens", fmt.Sprint(lg.doubles))
	b.addValue(grp, "fencing violations (token reused or not growing, taken-over write accepted)", fmt.Sprint(lg.violations))
	b.addValue(grp, "leases lost by a host that never stopped", fmt.Sprint(lg.lostLive))
	b.ratioValue(fmt.Sprintf("double opens in %d random concurrent opens across %d hosts", attempts, hosts), float64(lg.doubles+lg.violations), 0)
	for _, p := range lg.problems {
		b.note("fleet-opens: " + p)
	}
	b.logf("fleet-opens: %d attempts in %s: %d granted, %d double opens, %d violations", attempts, fmtDur(wall), lg.granted, lg.doubles, lg.violations)
	if lg.doubles+lg.violations > 0 {
		return fmt.Errorf("fleet-opens: %d double opens, %d fencing violations: %s", lg.doubles, lg.violations, strings.Join(lg.problems, "; "))
	}
	return nil
}

// heldBy is who the log believes holds a lease.
type heldBy struct {
	host  string
	token uint64
}

// leaseLog is the independent account of grants and heartbeats.
type leaseLog struct {
	mu     sync.Mutex
	ttl    time.Duration
	holder map[string]heldBy    // sandbox → the host granted it last and not released
	seen   map[string]time.Time // host → its last committed heartbeat (ledger clock)
	last   map[string]uint64    // sandbox → the last token granted

	granted, refused, takeovers, deaths, fenced, lateOK int
	doubles, violations, lostLive                       int
	problems                                            []string
}

func (lg *leaseLog) problem(format string, args ...any) {
	if len(lg.problems) < 5 {
		lg.problems = append(lg.problems, fmt.Sprintf(format, args...))
	}
}

// grant checks and records host's grant of sandbox with token at the
// ledger's time now.
func (lg *leaseLog) grant(sandbox, host string, token uint64, now time.Time) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.granted++
	lg.seen[host] = now // the grant's transaction heartbeat
	if cur, ok := lg.holder[sandbox]; ok && cur.host != host {
		if seen := lg.seen[cur.host]; now.Before(seen.Add(lg.ttl)) {
			lg.doubles++
			lg.problem("%s granted to %s (token %d) at %s while %s (token %d) was seen %s before", sandbox, host, token, now.Format(time.StampMilli), cur.host, cur.token, now.Sub(seen))
		} else {
			lg.takeovers++
		}
	}
	if token <= lg.last[sandbox] {
		lg.violations++
		prev := lg.holder[sandbox]
		lg.problem("%s: token %d granted to %s at %s after %d (held by %s: %v)", sandbox, token, host, now.Format(time.StampMicro), lg.last[sandbox], prev.host, prev.token)
	}
	lg.last[sandbox] = token
	lg.holder[sandbox] = heldBy{host, token}
}

// releasing forgets host's lease before its release commits (so that a
// grant that follows the commit never sees it) and says whether the token
// is still the last one granted.
func (lg *leaseLog) releasing(sandbox, host string, token uint64) bool {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if cur, ok := lg.holder[sandbox]; ok && cur.host == host && cur.token == token {
		delete(lg.holder, sandbox)
	}
	return lg.last[sandbox] == token
}

// isLast says whether token is the last one granted for sandbox.
func (lg *leaseLog) isLast(sandbox string, token uint64) bool {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.last[sandbox] == token
}

// released checks the outcome of a release: accepted only if the token
// was still the last one granted.
func (lg *leaseLog) released(sandbox string, token uint64, current, late bool, err error) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	switch {
	case err == nil && !current:
		lg.violations++
		lg.problem("%s: release with token %d accepted after token %d was granted", sandbox, token, lg.last[sandbox])
	case err == nil && late:
		lg.lateOK++
	case store.IsFenced(err) && current:
		lg.violations++
		lg.problem("%s: release with the current token %d fenced", sandbox, token)
	case store.IsFenced(err) && late:
		lg.fenced++
	case store.IsFenced(err):
		lg.lostLive++
		lg.problem("%s: a host that never stopped lost token %d (heartbeats late past the TTL?)", sandbox, token)
	}
}

func (lg *leaseLog) heartbeat(host string, now time.Time) {
	lg.mu.Lock()
	if now.After(lg.seen[host]) {
		lg.seen[host] = now
	}
	lg.mu.Unlock()
}

// simHost is one simulated host: its Store, its heartbeat, the leases it
// believes it holds.
type simHost struct {
	id   string
	st   *store.Store
	lg   *leaseLog
	ttl  time.Duration
	held map[string]uint64
	rnd  *rand.Rand
}

// run opens, closes and holds random sandboxes until the attempts run
// out; one operation in die makes the host die for TTL to 1.5 TTL, after
// which it closes what it held (fenced if another host took it over).
func (h *simHost) run(ctx context.Context, left *atomic.Int64, sandboxes, die int) error {
	stop := h.beat()
	defer func() { stop() }()
	for left.Load() > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		sb := fmt.Sprintf("s%d", h.rnd.IntN(sandboxes))
		if token, ok := h.held[sb]; ok {
			if h.rnd.IntN(10) < 7 {
				if err := h.release(sb, token, false); err != nil {
					return err
				}
			}
		} else if left.Add(-1) >= 0 {
			if err := h.open(sb); err != nil {
				return err
			}
		}
		if h.rnd.IntN(die) == 0 {
			stop()
			h.lg.mu.Lock()
			h.lg.deaths++
			h.lg.mu.Unlock()
			time.Sleep(h.ttl + time.Duration(h.rnd.Int64N(int64(h.ttl/2))))
			// Back: close what it held before heartbeating again, so no
			// heartbeat of the returning host races a takeover the log
			// would then count as a double open.
			for sb, token := range h.held {
				if err := h.release(sb, token, true); err != nil {
					return err
				}
			}
			stop = h.beat()
		}
	}
	for sb, token := range h.held {
		if err := h.release(sb, token, false); err != nil {
			return err
		}
	}
	return nil
}

// open takes sandbox's lease as persist's open does: the heartbeat and the
// lease in one transaction, in UpdateLeaseTaker.
func (h *simHost) open(sb string) error {
	var token uint64
	var now time.Time
	err := h.st.UpdateLeaseTaker(sb, func(tx *store.Tx) error {
		if _, err := tx.Heartbeat(h.id, h.ttl); err != nil {
			return err
		}
		l, _, err := tx.TakeLease(sb, h.id)
		if err != nil {
			return err
		}
		token, now = l.Token, tx.Now()
		return nil
	})
	var held *store.HeldError
	switch {
	case errors.As(err, &held):
		h.lg.mu.Lock()
		h.lg.refused++
		h.lg.mu.Unlock()
		return nil
	case err != nil:
		return fmt.Errorf("%s open %s: %w", h.id, sb, err)
	}
	h.lg.grant(sb, h.id, token, now)
	h.held[sb] = token
	return nil
}

// release gives the lease up as a close's commit does (CheckLease and
// ReleaseLease in one transaction, in UpdateLeased); late: after the host
// died.
func (h *simHost) release(sb string, token uint64, late bool) error {
	current := h.lg.releasing(sb, h.id, token)
	err := h.st.UpdateLeased(sb, h.id, token, func(tx *store.Tx) error { return tx.ReleaseLease(sb, h.id, token) })
	if err != nil && !store.IsFenced(err) {
		return fmt.Errorf("%s close %s: %w", h.id, sb, err)
	}
	if store.IsFenced(err) && current {
		// The grant that fenced it may have committed without being
		// logged yet: ask the ledger who holds the lease now.
		var l *store.Lease
		verr := h.st.View(func(tx *store.Tx) (err error) { l, err = tx.GetLease(sb); return })
		switch {
		case verr == nil && l.Token > token:
			current = false
		case errors.Is(verr, store.ErrNotFound):
			current = h.lg.isLast(sb, token) // the next holder logged its grant before releasing
		case verr != nil && !errors.Is(verr, store.ErrNotFound):
			return verr
		}
	}
	h.lg.released(sb, token, current, late, err)
	delete(h.held, sb)
	return nil
}

// beat renews the host's heartbeat every TTL/10 until the returned
// function is called (which waits for the last one to finish).
func (h *simHost) beat() func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(h.ttl / 10)
		defer t.Stop()
		for {
			var now time.Time
			err := h.st.Update(func(tx *store.Tx) error {
				_, err := tx.Heartbeat(h.id, h.ttl)
				now = tx.Now()
				return err
			})
			if err == nil {
				h.lg.heartbeat(h.id, now)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-stopped }) }
}
