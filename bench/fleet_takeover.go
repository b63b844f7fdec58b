package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spillway/spillway/snapshot"
)

// fleetTakeover: a host dies and another takes its sandbox over, with the
// spillway command as a user runs it. Two roots (h1, h2) share one
// PostgreSQL ledger and one blob directory. Each run h1 runs `spillway
// fleet agent --ttl TTL` (a heartbeat every TTL/3) as a child process and
// opens a fresh sandbox, writes a document in it, and after a random
// phase of the heartbeat (TTL plus up to TTL/2 after the open, so only the
// agent keeps h1 live) h2's `spillway open` is refused naming h1; then the
// agent is SIGKILLed (the host dies: its sandbox stays mounted, nothing
// renews its liveness) and h2 runs `spillway open` every 50 ms until it
// succeeds. The figure is the time from the kill to that open's exit;
// the wait alone (to the start of the open that succeeded) and an
// uncontended open on h2 are reported beside it. After each run h1's late
// close must be fenced and its document recoverable with reason fenced,
// h2 closes, and no mount is left under either root.
func (b *bench) fleetTakeover(ctx context.Context) error {
	ttl := fleetSize(b.cfg, 2*time.Second, time.Second, time.Second) // the agent refuses a TTL under 1 s
	reps := fleetSize(b.cfg, 7, 3, 2)
	const retry = 50 * time.Millisecond
	beat := ttl / 3
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	bin, err := b.spillwayCLI()
	if err != nil {
		return err
	}
	blobs := "dir://" + filepath.Join(b.work, "fleet-takeover-blobs")
	h1 := newCLIHost(bin, "h1", filepath.Join(b.work, "fleet-takeover-h1"), url, blobs)
	h2 := newCLIHost(bin, "h2", filepath.Join(b.work, "fleet-takeover-h2"), url, blobs)
	defer unmountUnder(h1.root, h2.root) // a failed run's leftovers only
	src := filepath.Join(b.srcDir(), "src-takeover")
	if _, err := buildImage(src, imageSpec{Files: 20, Seed: 11}); err != nil {
		return err
	}
	for _, h := range []*cliHost{h1, h2} {
		if _, err := h.must(ctx, "image", "import", "img", src); err != nil {
			return err
		}
	}
	os.RemoveAll(src)
	var r takeoverRuns
	for rep := range reps {
		if err := r.run(ctx, h1, h2, fmt.Sprintf("t%d", rep), ttl, retry); err != nil {
			return fmt.Errorf("fleet-takeover run %d: %w", rep+1, err)
		}
		// An uncontended open on h2: a fresh sandbox, as the takeover's was.
		u := fmt.Sprintf("u%d", rep)
		if _, err := h2.must(ctx, "create", u, "--image", "img"); err != nil {
			return err
		}
		d, err := timed(func() error { _, err := h2.must(ctx, "open", u); return err })
		if err != nil {
			return err
		}
		if _, err := h2.must(ctx, "close", u); err != nil {
			return err
		}
		r.alone = append(r.alone, d)
	}
	for _, root := range []string{h1.root, h2.root} {
		if ms, err := snapshot.MountsUnder(root); err != nil || len(ms) > 0 {
			return fmt.Errorf("mounts left under %s: %v %v", root, ms, err)
		}
	}
	grp := fmt.Sprintf("fleet-takeover (CLI; TTL %s, heartbeat every %s, retry every %s)", ttl, fmtDur(beat), fmtDur(retry))
	b.add(grp, "host killed → other host's open granted", r.took)
	b.add(grp, "host killed → start of the open that succeeded (the wait)", r.wait)
	b.add(grp, "host killed → its liveness ran out (last heartbeat + TTL)", r.expired)
	var late []time.Duration
	for i := range r.took {
		late = append(late, r.took[i]-r.expired[i])
	}
	b.add(grp, "liveness ran out → other host's open granted (retries + the open)", late)
	b.add(grp, "the open that succeeded, its own process", r.granted)
	b.add(grp, "uncontended open on h2 (a fresh sandbox)", r.alone)
	if len(r.refused) > 0 {
		b.add(grp, "a refused open on h2 after the kill, its own process (a retry is this + 50 ms)", r.refused)
	}
	b.ratio(fmt.Sprintf("takeover, slowest of %d / (TTL + one heartbeat)", reps), maxDur(r.took), ttl+beat, 1)
	b.ratio(fmt.Sprintf("takeover, slowest of %d / (TTL + one heartbeat + uncontended open)", reps), maxDur(r.took), ttl+beat+median(r.alone), 1)
	b.logf("fleet-takeover: kill → open granted median %s, max %s; wait median %s, max %s; liveness ran out %s–%s after the kill; uncontended open %s; bound %s (+ open: %s); %d refused",
		fmtDur(median(r.took)), fmtDur(maxDur(r.took)), fmtDur(median(r.wait)), fmtDur(maxDur(r.wait)), fmtDur(minDur(r.expired)), fmtDur(maxDur(r.expired)),
		fmtDur(median(r.alone)), fmtDur(ttl+beat), fmtDur(ttl+beat+median(r.alone)), len(r.refused))
	return nil
}

// takeoverRuns collects the figures of fleetTakeover's runs.
type takeoverRuns struct {
	took, wait, granted, alone []time.Duration
	expired                    []time.Duration // kill → h1's last heartbeat + TTL
	refused                    []time.Duration // the refused opens after the kill, each its own process
}

var fencedSession = regexp.MustCompile(`--session (\d+)\)`)

// run is one takeover of sandbox sb from h1 to h2 (see fleetTakeover).
func (r *takeoverRuns) run(ctx context.Context, h1, h2 *cliHost, sb string, ttl, retry time.Duration) error {
	if _, err := h1.must(ctx, "create", sb, "--image", "img"); err != nil {
		return err
	}
	if _, err := h1.must(ctx, "exception", "add", sb, "/home/user/Documents/**", "--reason", "bench"); err != nil {
		return err
	}
	agent := h1.cmd(ctx, "fleet", "agent", "--ttl", ttl.String())
	var agentErr strings.Builder
	agent.Stderr = &agentErr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { agent.Process.Kill(); agent.Wait() }()
	if _, err := h1.must(ctx, "open", sb); err != nil {
		return err
	}
	opened := time.Now()
	const doc = "home/user/Documents/late.txt"
	if err := os.WriteFile(filepath.Join(h1.root, "mnt", sb, doc), []byte("written on h1 before it died"), 0o644); err != nil {
		return err
	}
	// Past the TTL of the open's own heartbeat, at a random phase of the
	// agent's: h1 is live only through the agent.
	time.Sleep(time.Until(opened.Add(ttl + time.Duration(rand.Int64N(int64(ttl/2))))))
	held := "sandbox " + sb + " is in use on host h1"
	if _, errs, err := h2.run(ctx, "open", sb); err == nil || !strings.Contains(errs, held) {
		return fmt.Errorf("h2's open while h1's agent runs: %v, want refused naming h1: %s%s", err, errs, agentErr.String())
	}
	if err := agent.Process.Kill(); err != nil {
		return err
	}
	killed := time.Now()
	agent.Wait()
	for {
		t0 := time.Now()
		_, errs, err := h2.run(ctx, "open", sb)
		if err == nil {
			r.took = append(r.took, time.Since(killed))
			r.wait = append(r.wait, t0.Sub(killed))
			r.granted = append(r.granted, time.Since(t0))
			break
		}
		if !strings.Contains(errs, held) {
			return fmt.Errorf("h2's open after the kill: %v: %s", err, errs)
		}
		r.refused = append(r.refused, time.Since(t0))
		if time.Since(killed) > 10*ttl+time.Minute {
			return fmt.Errorf("no takeover %s after the kill", time.Since(killed).Round(time.Second))
		}
		time.Sleep(retry)
	}
	// When h1's liveness ran out: its last heartbeat (the ledger's clock,
	// PostgreSQL's on this machine) plus the TTL.
	last, err := lastSeen(ctx, h2, "h1")
	if err != nil {
		return err
	}
	r.expired = append(r.expired, last.Add(ttl).Sub(killed))
	if _, err := os.Stat(filepath.Join(h2.root, "mnt", sb, doc)); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("h2 sees h1's unclosed document (%v)", err)
	}
	// h1 comes back: its close is fenced, its document recoverable.
	_, errs, err := h1.run(ctx, "close", sb)
	m := fencedSession.FindStringSubmatch(errs)
	if err == nil || !strings.Contains(errs, "fenced: host h1 lost the lease of sandbox "+sb) || m == nil {
		return fmt.Errorf("h1's close after the takeover: %v, want fenced: %s", err, errs)
	}
	ls, err := h1.must(ctx, "recover", "ls", sb, "--session", m[1])
	if err != nil {
		return err
	}
	if !strings.Contains(ls, "late.txt") || !strings.Contains(ls, "fenced") {
		return fmt.Errorf("h1's recover ls %s --session %s lacks late.txt with reason fenced:\n%s", sb, m[1], ls)
	}
	_, err = h2.must(ctx, "close", sb)
	return err
}

// lastSeen is host id's last heartbeat, as `spillway fleet hosts` on h
// reports it.
func lastSeen(ctx context.Context, h *cliHost, id string) (time.Time, error) {
	out, err := h.must(ctx, "fleet", "hosts", "--json")
	if err != nil {
		return time.Time{}, err
	}
	var hosts []struct {
		ID       string    `json:"id"`
		LastSeen time.Time `json:"last_seen"`
	}
	if err := json.Unmarshal([]byte(out), &hosts); err != nil {
		return time.Time{}, fmt.Errorf("fleet hosts --json: %w", err)
	}
	for _, x := range hosts {
		if x.ID == id {
			return x.LastSeen, nil
		}
	}
	return time.Time{}, fmt.Errorf("fleet hosts --json lists no host %s:\n%s", id, out)
}

// unmountUnder unmounts every mount under the roots, deepest first.
func unmountUnder(roots ...string) {
	for _, root := range roots {
		ms, _ := snapshot.MountsUnder(root)
		for i := len(ms) - 1; i >= 0; i-- {
			snapshot.Unmount(ms[i])
		}
	}
}

func minDur(s []time.Duration) time.Duration {
	if len(s) == 0 {
		return 0
	}
	m := s[0]
	for _, d := range s {
		m = min(m, d)
	}
	return m
}

func maxDur(s []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range s {
		m = max(m, d)
	}
	return m
}
