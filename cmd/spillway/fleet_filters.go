package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// hostFilterFlag is --host of review ls and log.
func hostFilterFlag() cli.Flag {
	return &cli.StringFlag{Name: "host", Usage: "only what HOST wrote: records of its closes, audit entries of its sessions (a fleet sharing one ledger)"}
}

// sandboxFilterFlag is --sandbox of review ls and log, the same as the
// SANDBOX argument.
func sandboxFilterFlag() cli.Flag {
	return &cli.StringFlag{Name: "sandbox", Usage: "only this sandbox (the same as the SANDBOX argument)"}
}

// sandboxFilter returns the sandbox the argument or --sandbox names; both
// must agree.
func sandboxFilter(c *cli.Context) (string, error) {
	arg, flag := c.Args().First(), c.String("sandbox")
	if arg != "" && flag != "" && arg != flag {
		return "", usageError("the SANDBOX argument (%s) and --sandbox (%s) differ: give one", arg, flag)
	}
	if arg != "" {
		return arg, nil
	}
	return flag, nil
}

// reviewEachOn is e.ReviewEach keeping only the records host wrote ("":
// all).
func reviewEachOn(e *persist.Env, host string) func(ctx context.Context, sandbox string, after uint64, fn func(*persist.Record) error) error {
	if host == "" {
		return e.ReviewEach
	}
	hosts := e.HostOf()
	return func(ctx context.Context, sandbox string, after uint64, fn func(*persist.Record) error) error {
		return e.ReviewEach(ctx, sandbox, after, func(r *persist.Record) error {
			if h, err := hosts.Record(r); err != nil || h != host {
				return err
			}
			return fn(r)
		})
	}
}
