package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// maxHostTTL bounds fleet agent's --ttl: a host that dies holds its
// leases for up to its TTL, and past a day nobody waits for a lease, they
// evict the host (fleet evict).
const maxHostTTL = 24 * time.Hour

// fleetAgentCommand is `fleet agent`.
func fleetAgentCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "renew this host's liveness in the shared ledger every TTL/3 until stopped (a host without a live agent loses its leases to other hosts after TTL); exits 0 on SIGTERM or SIGINT",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "ttl", Usage: "how long this host counts as live after each heartbeat: a `DURATION` from 1s to 24h", Value: persist.DefaultHostTTL},
			&cli.BoolFlag{Name: "once", Usage: "send one heartbeat and exit (for a timer instead of a service)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("usage: spillway fleet agent [--ttl DURATION] [--once]")
			}
			o := fleetAgentOptions{TTL: c.Duration("ttl"), Once: c.Bool("once")}
			if o.TTL < time.Second || o.TTL > maxHostTTL {
				return usageError("--ttl must be from 1s to %s, not %s", shortDuration(maxHostTTL), o.TTL)
			}
			g := globals(c)
			if err := needSharedLedger(g, ": fleet agent keeps this host live in a shared ledger"); err != nil {
				return err
			}
			return runFleetAgent(c.Context, o, g, t)
		},
	}
}

// shortDuration is d as people write it: 24h, not 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.Replace(s, "m0s", "m", 1)
	return strings.Replace(s, "h0m", "h", 1)
}

// badgerLedger says whether g's ledger is the badger store of one host
// (no --store, or badger://), as store.OpenURL reads the URL.
func badgerLedger(g globalOptions) bool {
	return g.Store == "" || strings.HasPrefix(g.Store, "badger://")
}

// needSharedLedger refuses a command that only makes sense in a ledger
// shared by several hosts, as fleet init and fleet import do (what: what
// the command does there).
func needSharedLedger(g globalOptions, what string) error {
	if !badgerLedger(g) {
		return nil
	}
	return &persist.InputError{Input: "store", Problem: "is the badger store in --root" + what + ", give --store postgres://… (or SPILLWAY_STORE)"}
}

// ledgerName is g's ledger URL without its password.
func ledgerName(g globalOptions) string {
	u, err := url.Parse(g.Store)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

// fleetAgentOptions are the options of `fleet agent`.
type fleetAgentOptions struct {
	TTL  time.Duration // liveness after each heartbeat
	Once bool          // one heartbeat, then exit
}

// runFleetAgent opens the state directory for each heartbeat only, so the
// agent never holds it between two. A heartbeat needs the ledger alone;
// a PostgreSQL ledger's connection stays open between heartbeats, so
// that each costs the server one UPDATE, not a new connection.
//
// It says on stderr when it starts (after its first heartbeat; --once
// says nothing unless it fails, as a timer's job should), when a
// heartbeat fails (once for a run of the same error) and when the ledger
// answers again. A first heartbeat that fails for a reason no retry would
// cure (a refused connection, another host's --host-id) ends it; an
// unavailable ledger is waited for. A signal ends it with status 0, its
// normal end as a service (a service manager counts 130 as a failure).
func runFleetAgent(ctx context.Context, o fleetAgentOptions, g globalOptions, t *term) error {
	pools := persist.NewPools()
	defer pools.Close()
	eo := envOptions(g, t)
	eo.LedgerOnly, eo.Heartbeat, eo.Pools = true, true, pools
	var release func() // of ROOT/agent.lock, once the first heartbeat made the root
	defer func() {
		if release != nil {
			release()
		}
	}()
	var (
		started  bool
		failed   int    // heartbeats failed in a row
		lastErr  string // the last failure told
		downFrom time.Time
	)
	for {
		var host string
		beat := func(e *persist.Env) error {
			host = e.HostID()
			if release == nil && !o.Once {
				// before any heartbeat: a second agent's would set the
				// host's TTL to its own
				r, err := e.LockAgent()
				if err != nil {
					return err
				}
				release = r
			}
			return e.Heartbeat(o.TTL)
		}
		err := withEnvOptions(ctx, eo, beat)
		if errors.Is(err, persist.ErrHeartbeatNeedsLocks) {
			// a first heartbeat of this root: with its locks
			locked := eo
			locked.Heartbeat = false
			err = withEnvOptions(ctx, locked, beat)
		}
		if err == nil {
			switch {
			case !started && !o.Once:
				t.warnf("fleet agent: host %s live in %s, ttl %s: a heartbeat every %s", host, ledgerName(g), o.TTL, (o.TTL / 3).Round(time.Millisecond))
			case failed > 0:
				down := time.Since(downFrom).Round(time.Second)
				note := ""
				if down >= o.TTL {
					note = fmt.Sprintf("; as long as the ttl %s or longer: other hosts may have taken this host's leases", o.TTL)
				}
				t.warnf("fleet agent: the ledger answers again after %s (%s)%s", count(failed, "failed heartbeat"), down, note)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
			started, failed, lastErr = true, 0, ""
		case o.Once, !started && (errors.Is(err, persist.ErrLedgerRefused) || errdefs.IsInvalidArgument(err) || errors.Is(err, persist.ErrAgentRunning)):
			return err
		default:
			if failed == 0 {
				downFrom = time.Now()
			}
			failed++
			if msg := message(err); msg != lastErr {
				t.warnf("fleet agent: heartbeat failed, retrying every %s: %s", (o.TTL / 3).Round(time.Millisecond), msg)
				lastErr = msg
			}
		}
		if o.Once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.TTL / 3):
		}
	}
}
