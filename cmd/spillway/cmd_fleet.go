package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

func fleetCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "fleet",
		Usage: "hosts that share one ledger: their liveness and the sandbox leases they hold (docs/fleet.md)",
		Subcommands: []*cli.Command{
			fleetInitCommand(t),
			fleetImportCommand(t),
			{
				Name:      "hosts",
				Usage:     "list the hosts of the ledger: last heartbeat, live or not, the leases each holds",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("usage: spillway fleet hosts [--json]")
					}
					return runFleetHosts(c.Context, globals(c), t)
				},
			},
			{
				Name:  "agent",
				Usage: "renew this host's liveness every TTL/3 until interrupted (a host without a live agent loses its leases to other hosts after TTL)",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "ttl", Usage: "how long this host counts as live after each heartbeat", Value: persist.DefaultHostTTL},
					&cli.BoolFlag{Name: "once", Usage: "send one heartbeat and exit (for a timer instead of a service)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("usage: spillway fleet agent [--ttl DURATION] [--once]")
					}
					o := fleetAgentOptions{TTL: c.Duration("ttl"), Once: c.Bool("once")}
					if o.TTL < time.Second {
						return usageError("--ttl must be at least 1s, not %s", o.TTL)
					}
					return runFleetAgent(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "checkpoint",
				Usage:     "write the head of every sandbox's audit chain into the fleet chain (audit verify then catches a chain removed whole); run it from a timer",
				ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("usage: spillway fleet checkpoint")
					}
					return withEnv(c.Context, globals(c), t, func(e *persist.Env) error {
						seq, n, err := e.Checkpoint()
						if err == nil {
							fmt.Fprintf(t.out, "checkpoint %d: the heads of %d sandbox chains\n", seq, n)
						}
						return err
					})
				},
			},
			{
				Name:      "evict",
				Usage:     "free every lease of a dead host at once (audited); its sessions are fenced when it comes back",
				ArgsUsage: "HOST",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why the host is evicted (required, audited)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("usage: spillway fleet evict HOST --reason TEXT")
					}
					return runFleetEvict(c.Context, c.Args().First(), c.String("reason"), globals(c), t)
				},
			},
		},
	}
}

// hostJSON is one row of `fleet hosts --json`.
type hostJSON struct {
	ID          string    `json:"id"`
	This        bool      `json:"this"`
	Live        bool      `json:"live"`
	LastSeen    time.Time `json:"last_seen"`
	TTLSeconds  float64   `json:"ttl_seconds"`
	Evicted     *string   `json:"evicted,omitempty"` // the reason, when evicted
	Leases      []string  `json:"leases"`
	LedgerClock time.Time `json:"ledger_clock"`
}

func runFleetHosts(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		hosts, leases, now, err := e.FleetHosts()
		if err != nil {
			return err
		}
		held := map[string][]string{}
		for _, l := range leases {
			held[l.Host] = append(held[l.Host], l.Sandbox)
		}
		rows := make([]hostJSON, 0, len(hosts))
		for _, h := range hosts {
			r := hostJSON{ID: h.ID, This: h.ID == e.HostID(), Live: h.Live(now), LastSeen: h.LastSeen, TTLSeconds: h.TTL.Seconds(), Leases: held[h.ID], LedgerClock: now}
			if r.Leases == nil {
				r.Leases = []string{}
			}
			sort.Strings(r.Leases)
			if !h.Evicted.IsZero() {
				r.Evicted = &h.EvictReason
			}
			rows = append(rows, r)
		}
		if t.json {
			return t.printJSON(rows)
		}
		w := t.table()
		fmt.Fprintln(w, "HOST\tSTATE\tLAST SEEN\tLEASES")
		for _, r := range rows {
			state := "dead"
			switch {
			case r.Evicted != nil:
				state = "evicted"
			case r.Live:
				state = "live"
			}
			id := r.ID
			if r.This {
				id += " (this host)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s ago\t%s\n", id, state, now.Sub(r.LastSeen).Round(time.Second), strings.Join(r.Leases, " "))
		}
		return w.Flush()
	})
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
func runFleetAgent(ctx context.Context, o fleetAgentOptions, g globalOptions, t *term) error {
	pools := persist.NewPools()
	defer pools.Close()
	eo := envOptions(g, t)
	eo.LedgerOnly, eo.Pools = true, pools
	for {
		err := withEnvOptions(ctx, eo, func(e *persist.Env) error { return e.Heartbeat(o.TTL) })
		if err != nil {
			if o.Once || ctx.Err() != nil {
				return err
			}
			t.warnf("heartbeat: %v", err) // try again at the next tick
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

func runFleetEvict(ctx context.Context, host, reason string, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		freed, err := e.EvictHost(host, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(t.out, "evicted %s: freed %d leases", host, len(freed))
		if len(freed) > 0 {
			fmt.Fprintf(t.out, " (%s)", strings.Join(freed, " "))
		}
		fmt.Fprintln(t.out)
		return nil
	})
}
