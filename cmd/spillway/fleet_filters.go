package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// hostFilterFlag is --host of review ls and log: only what HOST wrote,
// what says which.
func hostFilterFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "host", Usage: "only what HOST wrote (a fleet sharing one ledger): " + what + ". A host the ledger does not know is an error"}
}

// filterValues refuses a scope flag given with an empty value (--host
// "$H" with H unset): it would scope nothing, and show everything.
func filterValues(c *cli.Context, flags ...string) error {
	for _, f := range flags {
		if c.IsSet(f) && c.String(f) == "" {
			return usageError("--%s is empty: give a name, or leave the flag out", f)
		}
	}
	return nil
}

// sandboxFilterFlag is --sandbox of review ls and log, the same as the
// SANDBOX argument.
func sandboxFilterFlag() cli.Flag {
	return &cli.StringFlag{Name: "sandbox", Usage: "only this sandbox (the same as the SANDBOX argument)"}
}

// sandboxFilter returns the sandbox the argument or --sandbox names; both
// must agree.
func sandboxFilter(c *cli.Context) (string, error) {
	if err := filterValues(c, "sandbox", "host"); err != nil {
		return "", err
	}
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
