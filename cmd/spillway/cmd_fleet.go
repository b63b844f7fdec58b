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
			fleetAgentCommand(t),
			{
				Name:      "checkpoint",
				Usage:     "write the head of every sandbox's audit chain into the fleet chain (audit verify then catches a chain removed whole); run it from a timer",
				ArgsUsage: " ",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return usageError("usage: spillway fleet checkpoint [--json]")
					}
					return runFleetCheckpoint(c.Context, globals(c), t)
				},
			},
			{
				Name:      "evict",
				Usage:     "free every lease of a dead host at once (audited); its sessions are fenced when it comes back",
				ArgsUsage: "HOST",
				Flags: []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why the host is evicted (required, audited)"},
					&cli.BoolFlag{Name: "force", Usage: "evict a host that looks live (last seen within its TTL): its open sessions are fenced"}, jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("usage: spillway fleet evict HOST --reason TEXT [--force] [--json]")
					}
					return runFleetEvict(c.Context, c.Args().First(), c.String("reason"), c.Bool("force"), globals(c), t)
				},
			},
			{
				Name:      "forget",
				Usage:     "remove a host that is gone for good (or an id given by mistake) from fleet hosts; it must be dead or evicted and hold no lease (audited)",
				ArgsUsage: "HOST",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "why the host is forgotten (required, audited)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("usage: spillway fleet forget HOST --reason TEXT")
					}
					host := c.Args().First()
					return withEnv(c.Context, globals(c), t, func(e *persist.Env) error {
						if err := e.ForgetHost(host, c.String("reason")); err != nil {
							return err
						}
						fmt.Fprintf(t.out, "forgot host %s\n", host)
						return nil
					})
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
	Evicted     *string   `json:"evicted,omitempty"`   // the reason, when evicted
	EvictedAt   time.Time `json:"evicted_at,omitzero"` // when, by the ledger's clock
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
			r := hostJSON{ID: h.ID, This: e.OwnsHostRow(h), Live: h.Live(now), LastSeen: h.LastSeen, TTLSeconds: h.TTL.Seconds(), Leases: held[h.ID], LedgerClock: now}
			if r.Leases == nil {
				r.Leases = []string{}
			}
			sort.Strings(r.Leases)
			if !h.Evicted.IsZero() {
				r.Evicted, r.EvictedAt = &h.EvictReason, h.Evicted
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
			switch {
			case r.This:
				id += " (this host)"
			case r.ID == e.HostID():
				id += " (this id, another state directory)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s ago\t%s\n", id, state, now.Sub(r.LastSeen).Round(time.Second), strings.Join(r.Leases, " "))
		}
		return w.Flush()
	})
}

// checkpointJSON is `fleet checkpoint --json`.
type checkpointJSON struct {
	Seq    uint64 `json:"seq"`    // the checkpoint's audit entry
	Chains int    `json:"chains"` // the sandbox chains whose heads it holds
}

func runFleetCheckpoint(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		seq, n, err := e.Checkpoint()
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(checkpointJSON{Seq: seq, Chains: n})
		}
		fmt.Fprintf(t.out, "checkpoint %d: the heads of %s\n", seq, count(n, "sandbox chain"))
		return nil
	})
}

// evictJSON is `fleet evict --json`.
type evictJSON struct {
	Host   string   `json:"host"`
	Reason string   `json:"reason"`
	Leases []string `json:"leases"` // the sandboxes whose leases it freed
}

func runFleetEvict(ctx context.Context, host, reason string, force bool, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		freed, err := e.EvictHost(host, reason, force)
		if err != nil {
			return err
		}
		sort.Strings(freed)
		if t.json {
			if freed == nil {
				freed = []string{}
			}
			return t.printJSON(evictJSON{Host: host, Reason: reason, Leases: freed})
		}
		fmt.Fprintf(t.out, "evicted %s: freed %s", host, count(len(freed), "lease"))
		if len(freed) > 0 {
			fmt.Fprintf(t.out, " (%s)", strings.Join(freed, " "))
		}
		fmt.Fprintln(t.out)
		return nil
	})
}
